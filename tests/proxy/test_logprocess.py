"""The request-log writer process: records cross the pipe intact, and none is lost when the
writer dies, stalls, is signalled or gets damaged input.

A real writer process (`python -m proxy.logprocess_main`) writes into this test's database.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, connections
from django.db.models import Sum
from django.forms.models import model_to_dict
from django.utils import timezone

from dataaccess.models import Rollup
from proxy.logprocess import LogProcess
from proxy.logwriter import _insert, encode
from proxy.models import McpToolCall, RequestLog
from tests.processes import (
    ROOT,
    TEST_RUN_SETTINGS,
    current_database_url,
    env_without,
    is_running,
    wait_until,
)

pytestmark = pytest.mark.django_db(transaction=True)


def request_record(**values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": uuid.uuid4(),
        "started_at": timezone.now(),
        "caller_type": "user",
        "caller_id": 7,
        "caller_name": "ana@example.com",
        "team_ids": "|3|9|",
        "teams": ["blue", "red"],
        "metadata": {"app": "checkout", "note": 'quotes " and\nnewlines'},
        "endpoint": "chat/completions",
        "requested_model": "openai-main/gpt-4o",
        "provider_account": "openai-main",
        "provider_model": "gpt-4o-2024",
        "status": 200,
        "streaming": True,
        "input_tokens": 12,
        "output_tokens": 34,
        "latency_ms": 81.25,
        "ttft_ms": 20.5,
        "cost_usd": Decimal("0.00012345"),
        "request_body": '{"messages": ["héllo \u2028 wörld"]}',
        "response_body": None,
    }
    return {**base, **values}


def mcp_record(**values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": uuid.uuid4(),
        "started_at": timezone.now(),
        "caller_type": "virtualaccount",
        "caller_id": 4,
        "caller_name": "billing-bot",
        "team_ids": "|3|",
        "teams": ["blue"],
        "metadata": {"called_as": "search"},
        "server": "docs",
        "tool": "find",
        "status": "error",
        "error": "upstream said no",
        "latency_ms": 3.5,
    }
    return {**base, **values}


def other_sessions() -> int:
    """Connections to this test's database besides the test's own."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return int(cursor.fetchone()[0])


@pytest.fixture
def writer_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a writer process that writes into this test's database.

    Afterwards, waits for the writers' sessions to end: the test database is dropped after
    the last test, and a session of a writer that has just exited may linger for a moment.
    """
    if connection.vendor != "postgresql":
        pytest.skip("the writer process needs a database another process can open")
    yield env_without(
        *TEST_RUN_SETTINGS,
        DJANGO_SETTINGS_MODULE="gateway_project.settings",
        DATABASE_URL=current_database_url(),
        GATEWAY_VAR_DIR=str(tmp_path / "var"),
        GATEWAY_SECRET_KEY=os.environ.get("GATEWAY_SECRET_KEY", "x" * 50),
        GATEWAY_ENCRYPTION_KEY=os.environ["GATEWAY_ENCRYPTION_KEY"],
    )
    wait_until(lambda: other_sessions() == 0, 10, "the writers' database sessions to end")


def spool_dir(tmp_path: Path) -> Path:
    """The spool of the writer `writer_env` configures (its var dir's)."""
    return tmp_path / "var" / "spool"


Scenario = Callable[[LogProcess], Awaitable[None]]


def run_sink(sink: LogProcess, scenario: Scenario) -> None:
    """Run the sink's background task around `scenario`, then stop it (the writer flushes)."""

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(sink.run(stop))
        try:
            await wait_for_writer(sink)
            await scenario(sink)
        finally:
            stop.set()
            await task

    asyncio.run(main())


async def wait_for_writer(sink: LogProcess, other_than: int | None = None) -> int:
    """Wait until a writer process runs (another one than `other_than`): its pid."""
    for _ in range(200):
        process = sink.process
        if process is not None and process.returncode is None and process.pid != other_than:
            return process.pid
        await asyncio.sleep(0.05)
    raise AssertionError("no writer process started")


def checked_in_thread(check: Callable[[], bool]) -> bool:
    """`check()` from a helper thread, closing the thread's database connection after it."""
    try:
        return check()
    finally:
        connections.close_all()


async def until(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not await asyncio.to_thread(checked_in_thread, check):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def stored(record_id: uuid.UUID) -> bool:
    return RequestLog.objects.filter(id=record_id).exists()


def row(model: type[RequestLog] | type[McpToolCall], record_id: uuid.UUID) -> dict[str, Any]:
    values = model_to_dict(model.objects.get(id=record_id))
    values.pop("id")
    return values


def rollups() -> list[dict[str, Any]]:
    return sorted(
        (
            {k: v for k, v in model_to_dict(r).items() if k not in ("id", "updated_at")}
            for r in Rollup.objects.all()
        ),
        key=repr,
    )


def test_records_cross_the_pipe_into_the_same_rows_and_rollups_as_a_direct_write(
    writer_env: dict[str, str], tmp_path: Path
) -> None:
    request, call = request_record(), mcp_record()
    _insert([("request", request), ("mcp", call)])
    direct = row(RequestLog, request["id"]), row(McpToolCall, call["id"]), rollups()
    RequestLog.objects.all().delete()
    McpToolCall.objects.all().delete()
    Rollup.objects.all().delete()

    async def scenario(sink: LogProcess) -> None:
        sink.enqueue("request", request)
        sink.enqueue("mcp", call)

    run_sink(LogProcess(env=writer_env, spool_dir=spool_dir(tmp_path)), scenario)

    # The sink's run returned: the writer has exited after writing everything.
    assert (row(RequestLog, request["id"]), row(McpToolCall, call["id"]), rollups()) == direct
    assert not spool_dir(tmp_path).exists()


def test_a_killed_writer_is_replaced_and_later_records_are_written(
    writer_env: dict[str, str], tmp_path: Path
) -> None:
    before, after = request_record(), request_record()

    async def scenario(sink: LogProcess) -> None:
        sink.enqueue("request", before)
        await until(lambda: stored(before["id"]), 20, "the first record")
        first = await wait_for_writer(sink)
        os.kill(first, signal.SIGKILL)
        await wait_for_writer(sink, other_than=first)
        sink.enqueue("request", after)
        await until(lambda: stored(after["id"]), 20, "a record after the restart")

    run_sink(LogProcess(env=writer_env, spool_dir=spool_dir(tmp_path)), scenario)


def test_the_writer_ignores_sigterm_and_sigint_and_stops_at_the_end_of_its_input(
    writer_env: dict[str, str], tmp_path: Path
) -> None:
    records = [request_record() for _ in range(3)]
    pids: list[int] = []

    async def scenario(sink: LogProcess) -> None:
        pid = await wait_for_writer(sink)
        pids.append(pid)
        await asyncio.sleep(1)  # past Django's set-up, when the handlers are in place
        sink.enqueue("request", records[0])
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGINT)
        sink.enqueue("request", records[1])
        await until(lambda: stored(records[1]["id"]), 20, "a record after the signals")
        assert sink.process is not None
        assert sink.process.pid == pid  # the same writer
        sink.enqueue("request", records[2])  # in the pipe when the input ends

    run_sink(LogProcess(env=writer_env, spool_dir=spool_dir(tmp_path)), scenario)
    assert all(stored(r["id"]) for r in records)
    assert not is_running(pids[0])


def test_a_stalled_writer_makes_the_worker_spool_and_the_spool_is_replayed(
    writer_env: dict[str, str], tmp_path: Path
) -> None:
    spool = spool_dir(tmp_path)
    body = "x" * 4096  # ~100 records fill the pipe and the worker's pipe buffer
    stalled = [request_record(request_body=body) for _ in range(300)]
    later = request_record()

    async def scenario(sink: LogProcess) -> None:
        pid = await wait_for_writer(sink)
        os.kill(pid, signal.SIGSTOP)
        try:
            for record in stalled:
                sink.enqueue("request", record)
            await until(lambda: list(spool.glob("logs-*.jsonl")) != [], 10, "the worker spooling")
            assert sink.queued() == 0  # nothing left waiting in the worker's memory
        finally:
            os.kill(pid, signal.SIGCONT)
        sink.enqueue("request", later)
        await until(lambda: list(spool.glob("logs-*")) == [], 30, "the spool replayed")

    run_sink(LogProcess(env=writer_env, spool_dir=spool), scenario)
    ids = {r["id"] for r in [*stalled, later]}
    assert set(RequestLog.objects.filter(id__in=ids).values_list("id", flat=True)) == ids
    minutes = Rollup.objects.filter(granularity="minute").aggregate(n=Sum("requests"))
    assert minutes["n"] == len(ids)  # each folded once, the spooled ones included


def test_when_no_writer_can_start_the_records_are_spooled_at_shutdown(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    record = request_record()
    sink = LogProcess(spool_dir=spool, command=[str(tmp_path / "no-such-python")])

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(sink.run(stop))
        sink.enqueue("request", record)
        await asyncio.sleep(0.2)
        stop.set()
        await task

    asyncio.run(main())
    assert [f.read_bytes() for f in spool.glob("logs-*.jsonl")] == [encode("request", record)]


@pytest.fixture
def writer(writer_env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "proxy.logprocess_main"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=writer_env,
        cwd=ROOT,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def test_damaged_and_cut_short_lines_are_dropped_with_a_warning_and_the_rest_written(
    writer: subprocess.Popen[bytes],
) -> None:
    good, cut = request_record(), request_record()
    _, stderr = writer.communicate(
        encode("request", good)
        + b'{"kind": "request", "record": {"id": "not-a-record"}}\n'
        + b"not json at all\n"
        + encode("request", cut)[:-20],  # the worker died mid-write
        timeout=60,
    )
    assert writer.returncode == 0, stderr.decode()
    assert list(RequestLog.objects.values_list("id", flat=True)) == [good["id"]]
    assert stderr.decode().count("dropped a damaged record") == 2
    assert "dropped a record cut short" in stderr.decode()


def test_a_record_that_cannot_be_serialised_is_reported_and_the_next_one_is_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sink = LogProcess(spool_dir=tmp_path)
    good = request_record()

    async def main() -> None:
        sink.enqueue("request", request_record(metadata={"bad": object()}))
        sink.enqueue("request", good)

    asyncio.run(main())
    assert sink.queued() == 1
    assert "cannot serialise a request record" in caplog.text
