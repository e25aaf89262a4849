"""Revocation reaches every gateway process within the stated bound, whatever Redis does.

Two gateway web processes (uvicorn, as `gateway serve` runs them) share a private PostgreSQL
and a private Redis (their Celery broker). Both are warmed: every victim token has made a
successful model call through each, so each process holds the decision in memory. Then, through
the REST API of the first process, an operator (tenant admin) revokes a member's PAT, revokes
another tenant admin's PAT (admins are not exempt), deactivates a user, retires a virtual
account's token (regenerate with grace 0) and removes a team's grant on a provider account.
Every victim must be refused by both processes within `REVOCATION_BOUND_SECONDS` of the API
call being sent (proxy/auth.py: poll interval + one query, stated bound 2 s), stay refused, and
untouched tokens keep working. The second run pauses Redis (SIGSTOP) through all of it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from tests.faults.conftest import (
    MODEL,
    SIDE_MODEL,
    GatewayLauncher,
    GatewayProcess,
    PgCluster,
    PgTemplate,
    RedisServer,
    api,
    chat,
    side_account_manifest,
)

pytestmark = pytest.mark.slow

REVOCATION_BOUND_SECONDS = 2.0  # proxy/auth.py and the README's architecture section
OBSERVE_SECONDS = 10.0  # keep watching past the bound, to report how late a refusal came
# The API answers even with Redis paused: task sends give up after ~6 s (settings.py).
API_TIMEOUT = 15.0
UNAUTHORIZED = frozenset({401})
NO_ACCESS = frozenset({403})


@dataclass(frozen=True)
class Revocation:
    """One way to take access away, through the REST API, and what the victim then gets."""

    name: str
    victim: str  # the seed's token name
    model: str
    method: str
    path: str
    body: Any
    refused: frozenset[int]


def revocations(template: PgTemplate) -> list[Revocation]:
    pats, users = template.seed["pat_ids"], template.seed["user_ids"]
    side_without_grant = yaml.safe_load(side_account_manifest(template.fake_url, with_grant=False))
    return [
        Revocation(
            "member PAT revoked",
            "pat_victim",
            MODEL,
            "DELETE",
            f"/api/v1/personal-access-tokens/{pats['pat_victim']}",
            None,
            UNAUTHORIZED,
        ),
        Revocation(
            "tenant admin PAT revoked",
            "admin",
            MODEL,
            "DELETE",
            f"/api/v1/personal-access-tokens/{pats['admin']}",
            None,
            UNAUTHORIZED,
        ),
        Revocation(
            "user deactivated",
            "deactivated",
            MODEL,
            "PATCH",
            f"/api/v1/users/{users['deactivated']}",
            {"is_active": False},
            UNAUTHORIZED,
        ),
        Revocation(
            "virtual account token retired",
            "va",
            MODEL,
            "POST",
            "/api/v1/virtual-accounts/fault-bot/regenerate-token",
            {"grace_period_days": 0},
            UNAUTHORIZED,
        ),
        Revocation(
            "team grant removed",
            "side",
            SIDE_MODEL,
            "PUT",
            "/api/v1/apply",
            {"manifest": side_without_grant},
            NO_ACCESS,
        ),
    ]


def revoke_and_watch(
    template: PgTemplate, via: GatewayProcess, watched: list[GatewayProcess], rev: Revocation
) -> dict[int, float | None]:
    """Send the revocation; seconds until each process refused the victim (None: never)."""
    answer: dict[str, tuple[int, Any]] = {}

    def send() -> None:
        try:
            answer["api"] = api(
                via.port, template.token("operator"), rev.method, rev.path, rev.body, API_TIMEOUT
            )
        except OSError as exc:  # a hung API is a failure of its own, reported below
            answer["api"] = (0, repr(exc))

    token = template.token(rev.victim)
    sender = threading.Thread(target=send, daemon=True)
    started = time.monotonic()
    sender.start()
    refused: dict[int, float | None] = {gw.port: None for gw in watched}
    seen: set[int] = set()
    while time.monotonic() - started < OBSERVE_SECONDS and None in refused.values():
        for gw in watched:
            if refused[gw.port] is None:
                status = chat(gw.port, token, model=rev.model)
                seen.add(status)
                if status in rev.refused:
                    refused[gw.port] = time.monotonic() - started
        time.sleep(0.02)
    sender.join(timeout=API_TIMEOUT + 5)
    assert 200 <= answer["api"][0] < 300, (rev.name, answer["api"])
    assert seen <= {200} | rev.refused, f"{rev.name}: unexpected statuses {seen}"
    for gw in watched:  # refused for good: no process brings the old decision back
        assert {chat(gw.port, token, model=rev.model) for _ in range(3)} <= rev.refused, rev.name
    return refused


@pytest.mark.timeout(90)
@pytest.mark.parametrize("redis_state", ["running", "paused"])
def test_every_revocation_reaches_every_gateway_process_within_the_bound(
    redis_state: str,
    pg_template: PgTemplate,
    pg_cluster: PgCluster,
    redis_server: RedisServer,
    gateways: GatewayLauncher,
) -> None:
    first, second = gateways.start_many_ready(2, pg_cluster.url, redis_url=redis_server.url)
    plan = revocations(pg_template)
    for gw in (first, second):  # warm: each process caches every victim's decision
        for rev in plan:
            assert chat(gw.port, pg_template.token(rev.victim), model=rev.model) == 200, rev.name

    if redis_state == "paused":
        redis_server.pause()
    late = {}
    for rev in plan:
        refused = revoke_and_watch(pg_template, first, [first, second], rev)
        for port, seconds in refused.items():
            if seconds is None or seconds > REVOCATION_BOUND_SECONDS:
                late[f"{rev.name} on :{port}"] = seconds
    untouched = [chat(gw.port, pg_template.token("member")) for gw in (first, second)]
    redis_server.resume()

    assert late == {}, f"refused later than {REVOCATION_BOUND_SECONDS}s (None: never): {late}"
    assert untouched == [200, 200]
