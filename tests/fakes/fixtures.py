"""pytest fixtures serving the fake providers (`tests.fakes.providers`) over real HTTP.

Use them from any test module with `pytest_plugins = ["tests.fakes.fixtures"]` in the root
`tests/conftest.py`, or import both fixtures into the module that needs them.

Scope: one server per test session (per xdist worker), handed to each test through the
function-scoped `fake_provider`, which resets the app first (recorded requests, queued faults,
counters, knobs). Starting uvicorn costs a thread and tens of milliseconds; a reset costs
nothing and isolates tests just as well, because all of the fake's state lives in the app
object. Only live connections survive a reset: a test that checks `open_streams` should wait
for it to reach its expected value rather than assume it starts at 0.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from tests.fakes import providers
from tests.fakes.providers import FakeProviders, Knobs


class FakeProviderServer:
    """Runs `FakeProviders` under uvicorn (uvloop, httptools) in a daemon thread."""

    def __init__(self, app: FakeProviders | None = None, host: str = "127.0.0.1") -> None:
        self.app = app or FakeProviders()
        self.host = host
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        # Bind first, then hand the socket over: no race for a "free" port.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            loop="uvloop",
            http="httptools",
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="fake-providers", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fake provider server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout=3)
        if self._thread.is_alive():  # hung requests or open streams: stop waiting for them
            self._server.force_exit = True
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None


class FakeProvider:
    """What a test gets: addresses, the expected credentials and the fake's state."""

    OPENAI_KEY = providers.OPENAI_KEY
    ANTHROPIC_KEY = providers.ANTHROPIC_KEY
    AWS_ACCESS_KEY_ID = providers.AWS_ACCESS_KEY_ID
    AWS_SECRET_ACCESS_KEY = providers.AWS_SECRET_ACCESS_KEY
    AWS_REGION = providers.AWS_REGION
    BEDROCK_API_KEY = providers.BEDROCK_API_KEY

    def __init__(self, server: FakeProviderServer) -> None:
        self.server = server
        self.app = server.app

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:PORT (Anthropic and Bedrock base URL too)."""
        return self.server.url

    @property
    def openai_base_url(self) -> str:
        """The OpenAI SDK's `base_url` (it includes /v1)."""
        return f"{self.server.url}/v1"

    def requests(self, path: str | None = None) -> list[dict[str, Any]]:
        """Recorded requests (method, path, raw_path, query, headers, body, received_at: the
        wall-clock time.time() it arrived), oldest first;
        only those whose path contains `path` when given."""
        recorded = self.app.requests()
        return recorded if path is None else [r for r in recorded if path in r["path"]]

    def last_request(self, path: str | None = None) -> dict[str, Any]:
        """The most recent recorded request (matching `path`); AssertionError if none."""
        recorded = self.requests(path)
        assert recorded, f"the fake provider recorded no request{f' to {path}' if path else ''}"
        return recorded[-1]

    def clear(self) -> None:
        """Forget the recorded requests."""
        self.app.clear_requests()

    def reset(self) -> None:
        """Forget requests, faults and counters; restore the startup knobs."""
        self.app.reset()

    def stats(self) -> dict[str, int]:
        """Counters: requests, open_streams, streams_started, streams_completed, disconnects,
        hanging."""
        return self.app.snapshot_stats()

    def configure(self, **knobs: Any) -> Knobs:
        """Default knobs for every later request, e.g. `configure(latency_ms=50, chunks=5)`."""
        return self.app.configure(knobs)

    def fail_next(self, times: int = 1, path: str = "", **knobs: Any) -> None:
        """Knobs for the next `times` requests whose path contains `path`, e.g.
        `fail_next(status=429)` or `fail_next(2, path="/converse", reset=True)`."""
        self.app.add_fault(knobs, times=times, path=path)

    def wait_for_stats(self, timeout: float = 5.0, **expected: int) -> dict[str, int]:
        """Poll until every named counter has its expected value; AssertionError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if all(stats[key] == value for key, value in expected.items()):
                return stats
            if time.monotonic() > deadline:
                raise AssertionError(f"fake provider stats {stats} never matched {expected}")
            time.sleep(0.02)


@pytest.fixture(scope="session")
def fake_provider_server() -> Iterator[FakeProviderServer]:
    """One fake provider server per session (per xdist worker)."""
    server = FakeProviderServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake_provider(fake_provider_server: FakeProviderServer) -> FakeProvider:
    """The session's fake provider, reset for this test."""
    fake_provider_server.app.reset()
    return FakeProvider(fake_provider_server)
