"""Redis (the Celery broker) stopped, paused or absent: the proxy keeps serving.

The proxy path never touches Redis: authentication, routing and request logs use the
in-process caches and PostgreSQL only. So with a gateway process configured with a private
Redis, stopping it (SIGKILL) or pausing it (SIGSTOP) under load changes nothing for model calls:
every call answers 200, latency stays low and every call has its log row. `/healthz` stays up;
`/readyz` reports the broker down (503) within its own timeout, which is the documented
degradation (README, "Fault behaviour"). A gateway also starts with Redis unreachable.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.faults.conftest import (
    GatewayLauncher,
    Load,
    PgCluster,
    PgTemplate,
    RedisServer,
    api,
    chat,
    logged_tags,
    percentile,
    statuses,
)
from tests.processes import free_port, http_get, wait_until

pytestmark = pytest.mark.slow

OUTAGE_SECONDS = 3.0
# The fake answers at once (p99 is ~10-50 ms here); anything waiting on the fault (a blocked
# event loop, a send to a stuck broker or a locked table) takes seconds. Half a second leaves
# room for a busy shared 2-core machine running the rest of the suite.
P99_LIMIT_SECONDS = 0.5
READYZ_LIMIT_SECONDS = 10.0  # the broker probe gives up on its own (health.py, settings.py)


def readyz(port: int) -> tuple[int, dict[str, object], float]:
    started = time.monotonic()
    status, body = http_get(port, "/readyz", timeout=READYZ_LIMIT_SECONDS + 5)
    return status, json.loads(body), time.monotonic() - started


@pytest.mark.timeout(90)
@pytest.mark.parametrize("fault", ["stopped", "paused"])
def test_proxy_keeps_serving_while_redis_is_stopped_or_paused(
    fault: str,
    pg_template: PgTemplate,
    pg_cluster: PgCluster,
    redis_server: RedisServer,
    gateways: GatewayLauncher,
) -> None:
    gw = gateways.start_ready(pg_cluster.url, redis_url=redis_server.url)
    member = pg_template.token("member")
    assert chat(gw.port, member) == 200
    assert readyz(gw.port)[:2] == (
        200,
        {"status": "ok", "checks": {"database": True, "broker": True}},
    )

    with Load(gw.port, member) as load:
        load.wait_for_calls(15)
        before = len(load.snapshot())
        redis_server.pause() if fault == "paused" else redis_server.stop()
        time.sleep(OUTAGE_SECONDS)  # the outage itself: the load runs meanwhile
        health = http_get(gw.port, "/healthz", timeout=5)[0]
        ready_status, ready_body, ready_seconds = readyz(gw.port)
        during = load.snapshot()[before:]
    calls = load.stop()

    assert statuses(calls) == {200: len(calls)}
    assert len(during) >= 10, "the load stalled while Redis was away"
    assert percentile([c.seconds for c in during], 0.99) < P99_LIMIT_SECONDS
    assert health == 200
    assert (ready_status, ready_body["checks"]) == (503, {"database": True, "broker": False})
    assert ready_seconds < READYZ_LIMIT_SECONDS
    tags = {call.tag for call in calls}
    wait_until(lambda: tags <= logged_tags(pg_cluster), 15, "a log row for every call")


@pytest.mark.timeout(90)
def test_gateway_starts_and_serves_with_redis_down(
    pg_template: PgTemplate, pg_cluster: PgCluster, gateways: GatewayLauncher
) -> None:
    nobody = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there

    # EMAIL_HOST set: inviting someone queues the invitation mail on the (absent) broker.
    gw = gateways.start_ready(pg_cluster.url, redis_url=nobody, EMAIL_HOST="127.0.0.1")

    assert http_get(gw.port, "/healthz")[0] == 200
    assert chat(gw.port, pg_template.token("member")) == 200
    status, body, seconds = readyz(gw.port)
    assert (status, body["checks"]) == (503, {"database": True, "broker": False})
    assert seconds < READYZ_LIMIT_SECONDS
    # The change stands and says so, although its mail could not be queued (README).
    invited, _ = api(
        gw.port, pg_template.token("operator"), "POST", "/api/v1/users",
        {"email": "invited-while-redis-is-down@example.com"},
    )  # fmt: skip
    assert invited == 201
    found, users = api(gw.port, pg_template.token("operator"), "GET", "/api/v1/users")
    assert found == 200
    assert "invited-while-redis-is-down@example.com" in json.dumps(users)
