"""A caller that leaves mid-stream: the upstream is closed at once, and nothing leaks.

The gateway runs in a thread of this process on an event loop the test can reach, in front of
the fake providers (tests/fakes/providers.py) streaming slowly. Proves:

- for OpenAI, Anthropic and Bedrock accounts called in either dialect, a caller that drops
  the connection mid-stream makes the gateway close the provider's stream within a second, and
  the call leaves one request-log row flagged `client_disconnected` (status 200: the stream had
  started), with what was streamed so far in its response body and the tokens known so far;
- after 200 such disconnects, the gateway's asyncio tasks and the process's open sockets and
  file descriptors are back at their baseline (small slack), and every call left its row.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import cycle
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from proxy.models import RequestLog
from tests import factories
from tests.fakes.fixtures import FakeProvider, fake_provider, fake_provider_server  # noqa: F401
from tests.proxy.conftest import _close_proxy_db_threads, seed_accounts  # noqa: F401 - fixture
from tests.servers import free_port

pytestmark = pytest.mark.timeout(60)

MODELS = ["openai-main/gpt-4o", "anthropic-main/claude", "bedrock-main/nova"]
DIALECTS = ["openai", "anthropic"]
CASES = [pytest.param(d, m, id=f"{d}-{m.split('-')[0]}") for d in DIALECTS for m in MODELS]
PROMPT = "one two three four five six"
ITERATIONS = 200
TASK_SLACK = 3
FD_SLACK = 8


# --- a gateway whose event loop the test can inspect -------------------------------------------


@dataclass
class LoopGateway:
    url: str
    token: str
    fake: FakeProvider
    loop: asyncio.AbstractEventLoop

    def task_count(self) -> int:
        """asyncio tasks alive in the gateway's loop (not counting the one counting them)."""

        async def count() -> int:
            return len(asyncio.all_tasks()) - 1

        return asyncio.run_coroutine_threadsafe(count(), self.loop).result(timeout=10)


@contextmanager
def serve_with_loop(app: Any) -> Iterator[tuple[str, asyncio.AbstractEventLoop]]:
    """tests.servers.serve_in_thread, keeping a handle on the server's event loop."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", loop="asyncio", http="h11"
    )
    server = uvicorn.Server(config)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.serve(),), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive(), "the gateway exited while starting"
        assert time.monotonic() < deadline, "the gateway did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", loop
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        loop.close()


@pytest.fixture
def gateway(
    transactional_db: None,
    fake_provider: FakeProvider,  # noqa: F811
) -> Iterator[LoopGateway]:
    member = factories.team_member_of(factories.TeamFactory(name="ml"))
    seed_accounts(fake_provider)
    token = factories.pat_for(member)
    from gateway_project.asgi import application

    with serve_with_loop(application) as (url, loop):
        yield LoopGateway(url, token, fake_provider, loop)


# --- a caller that leaves ----------------------------------------------------------------------


def open_stream(gw: LoopGateway, client: httpx.Client, dialect: str, model: str) -> Any:
    path = "/v1/messages" if dialect == "anthropic" else "/v1/chat/completions"
    body: dict[str, Any] = {
        "model": model,
        "stream": True,
        "messages": [{"role": "user", "content": PROMPT}],
    }
    if dialect == "anthropic":
        body["max_tokens"] = 100
    return client.stream(
        "POST",
        f"{gw.url}/api/llm{path}",
        json=body,
        headers={"authorization": f"Bearer {gw.token}"},
        timeout=10,
    )


def read_some_and_leave(gw: LoopGateway, dialect: str, model: str, events: int = 2) -> str:
    """Read `events` SSE data lines, then drop the connection; returns what was read."""
    with httpx.Client() as client, open_stream(gw, client, dialect, model) as response:
        assert response.status_code == 200
        seen: list[str] = []
        for line in response.iter_lines():
            if line.startswith("data:"):
                seen.append(line)
                if len(seen) >= events:
                    break
    return "\n".join(seen)


def open_fds() -> list[str]:
    """What this process's file descriptors point at (sockets show as `socket:[inode]`)."""
    out = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            out.append(os.readlink(fd))
        except OSError:
            continue  # closed meanwhile (the listing's own descriptor, for one)
    return out


def sockets() -> int:
    return sum(1 for target in open_fds() if target.startswith("socket:"))


def wait_for_rows(count: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while RequestLog.objects.count() < count:
        assert time.monotonic() < deadline, f"{RequestLog.objects.count()} of {count} rows"
        time.sleep(0.05)


def settle(check: Any, timeout: float = 10.0) -> None:
    """Poll until `check()` holds; the last failure's message if it never does."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# --- one disconnect ----------------------------------------------------------------------------


@pytest.mark.parametrize(("dialect", "model"), CASES)
def test_a_caller_leaving_mid_stream_closes_the_upstream_and_logs_a_partial_row(
    gateway, dialect, model
):
    gateway.fake.configure(chunks=100, chunk_delay_ms=50)

    received = read_some_and_leave(gateway, dialect, model)
    left = time.monotonic()
    gateway.fake.wait_for_stats(timeout=3, open_streams=0)
    closed_after = time.monotonic() - left

    assert closed_after < 1.0
    stats = gateway.fake.stats()
    assert (stats["streams_started"], stats["streams_completed"]) == (1, 0)
    wait_for_rows(1)
    row = RequestLog.objects.get()
    assert (row.status, row.error_type, row.streaming) == (200, "client_disconnected", True)
    assert row.requested_model == model
    assert row.ttft_ms is not None
    assert row.response_body is not None
    assert received.splitlines()[0].removeprefix("data:").strip() in row.response_body
    # The tokens known when the caller left: Anthropic reports the prompt's in its first
    # event; OpenAI and Bedrock report usage only at the end of a stream.
    known_input = len(PROMPT.split()) if model.startswith("anthropic") else 0
    assert (row.input_tokens, row.output_tokens) == (known_input, 0)


# --- many disconnects: back to the baseline ----------------------------------------------------


@pytest.mark.timeout(120)
def test_many_disconnects_leave_no_tasks_sockets_or_fds_behind(gateway):
    gateway.fake.configure(chunks=100, chunk_delay_ms=20)
    calls = cycle([(d, m) for d in DIALECTS for m in MODELS])
    for _ in range(6):  # warm up: pooled connections, database threads, caches
        read_some_and_leave(gateway, *next(calls), events=1)
    gateway.fake.wait_for_stats(timeout=5, open_streams=0)
    wait_for_rows(6)
    baseline_tasks, baseline_sockets, baseline_fds = (
        gateway.task_count(),
        sockets(),
        len(open_fds()),
    )

    for _ in range(ITERATIONS):
        read_some_and_leave(gateway, *next(calls), events=1)

    gateway.fake.wait_for_stats(timeout=5, open_streams=0)
    wait_for_rows(6 + ITERATIONS)

    def back_to_baseline() -> None:
        tasks, open_sockets, fds = gateway.task_count(), sockets(), len(open_fds())
        assert tasks <= baseline_tasks + TASK_SLACK, (tasks, baseline_tasks)
        assert open_sockets <= baseline_sockets + FD_SLACK, (open_sockets, baseline_sockets)
        assert fds <= baseline_fds + FD_SLACK, (fds, baseline_fds)

    settle(back_to_baseline)
    stats = gateway.fake.stats()
    assert stats["streams_completed"] == 0
    assert stats["disconnects"] == 6 + ITERATIONS
    assert RequestLog.objects.filter(error_type="client_disconnected").count() == 6 + ITERATIONS
