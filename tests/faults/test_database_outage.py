"""A database outage under load never turns into 401, never lets a stranger in, and heals alone.

A gateway web process runs on a private PostgreSQL cluster under a light steady load (three
clients with a warmed member token). The database then goes away, either stopped
(`pg_ctl stop -m immediate`) or with every connection slot held by other sessions and the
gateway's own sessions evicted. While it is away: the warmed token gets 200 or 503, never 401;
a valid token the process never saw ("cold") gets 503, not 401; an unknown token gets 503,
never 200. Within `RECOVERY_SECONDS` of the database returning, without restarting the
gateway, the cold token gets 200 and an unknown one 401; a revocation is then enforced within
the stated bound again, and every answered call has its request-log row (spooled meanwhile).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tests.faults.conftest import (
    GatewayLauncher,
    GatewayProcess,
    Load,
    PgCluster,
    PgTemplate,
    api,
    chat,
    statuses,
    wait_for_rows,
)
from tests.processes import wait_until

pytestmark = pytest.mark.slow

OUTAGE_SECONDS = 3.0  # how long the database stays away, under load
RECOVERY_SECONDS = 5.0  # the bound, from the database answering again
REVOCATION_BOUND_SECONDS = 2.0  # proxy/auth.py
EXHAUSTED_MAX_CONNECTIONS = 12


def unknown_token() -> str:
    return f"gw_pat_{secrets.token_hex(16)}"  # a fresh one each time: never in a cache


def recovered(gw: GatewayProcess, template: PgTemplate) -> bool:
    return (chat(gw.port, template.token("cold")), chat(gw.port, unknown_token())) == (200, 401)


class SlotHolder:
    """Holds every connection slot of a cluster (superusers' reserved ones too)."""

    def __init__(self, cluster: PgCluster) -> None:
        self.cluster = cluster
        self.held: list[psycopg.Connection[tuple[Any, ...]]] = []

    def _grab_all(self) -> None:
        while True:
            try:
                self.held.append(self.cluster.connect())
            except psycopg.OperationalError:
                return

    def exhaust(self, timeout: float = 20.0) -> None:
        """Take every free slot, then evict the other sessions until none is left."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._grab_all()
            assert self.held, "could not open a single connection"
            mine = [conn.info.backend_pid for conn in self.held]
            others = (
                self.held[0]
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE backend_type = 'client backend' AND pid <> ALL(%s)",
                    (mine,),
                )
                .fetchall()
            )
            if not others:
                return
        raise AssertionError("other sessions kept taking the freed slots")

    def release(self) -> None:
        for conn in self.held:
            conn.close()
        self.held.clear()


def outage(kind: str, cluster: PgCluster) -> tuple[Callable[[], None], Callable[[], None]]:
    """(begin, end) of an outage of `kind`."""
    if kind == "stopped":
        return (lambda: cluster.stop("immediate")), cluster.start
    holder = SlotHolder(cluster)
    return holder.exhaust, holder.release


def revoke_and_wait(gw: GatewayProcess, template: PgTemplate) -> float:
    """Revoke the member's PAT through the API; seconds until the process refuses it."""
    started = time.monotonic()
    pat_id = template.seed["pat_ids"]["member"]
    path = f"/api/v1/personal-access-tokens/{pat_id}"
    status, body = api(gw.port, template.token("operator"), "DELETE", path)
    assert 200 <= status < 300, (status, body)
    wait_until(
        lambda: chat(gw.port, template.token("member")) == 401, 10, "the revoked PAT refused", 0.02
    )
    return time.monotonic() - started


@pytest.mark.timeout(90)
@pytest.mark.parametrize("kind", ["stopped", "exhausted"])
def test_database_outage_under_load_means_503_never_401_and_recovers_without_restart(
    kind: str, pg_template: PgTemplate, pg_cluster: PgCluster, gateways: GatewayLauncher
) -> None:
    if kind == "exhausted":  # few slots, so that holding them all is cheap
        pg_cluster.stop("fast")
        pg_cluster.max_connections = EXHAUSTED_MAX_CONNECTIONS
        pg_cluster.start()
    gw = gateways.start_ready(pg_cluster.url)
    member = pg_template.token("member")
    assert chat(gw.port, member) == 200
    begin, end = outage(kind, pg_cluster)

    with Load(gw.port, member) as load:
        load.wait_for_calls(15)
        begin()
        during: dict[str, list[int]] = {"unknown": [], "cold": []}
        until = time.monotonic() + OUTAGE_SECONDS
        while time.monotonic() < until:
            during["unknown"].append(chat(gw.port, unknown_token()))
            during["cold"].append(chat(gw.port, pg_template.token("cold")))
            time.sleep(0.2)
        end()
        back = time.monotonic()
        wait_until(lambda: recovered(gw, pg_template), 10, "recovery", interval=0.05)
        recovery = time.monotonic() - back
        load.wait_for_calls(len(load.snapshot()) + 10)
    calls = load.stop()

    assert set(statuses(calls)) <= {200, 503}, statuses(calls)
    assert set(during["unknown"]) == {503}, during
    assert set(during["cold"]) == {503}, during
    assert recovery <= RECOVERY_SECONDS, f"recovered {recovery:.1f}s after the database returned"
    assert revoke_and_wait(gw, pg_template) <= REVOCATION_BOUND_SECONDS
    answered = {call.tag for call in calls if call.status == 200}
    wait_for_rows(pg_cluster, answered, gw)
