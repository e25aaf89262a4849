"""Upstream faults through the real proxy: the caller's error, the deadline and the retry budget.

A gateway runs in-thread (tests/proxy/conftest.py) in front of the fake providers
(tests/fakes/providers.py), whose queued faults make the provider hang, answer slowly, answer
500 or 429 (`Retry-After` in seconds or as an HTTP-date) or reset the connection before any
byte, after half a body, or mid-stream; a raw-socket server in this module resets in the
middle of the response headers. For OpenAI, Anthropic and Bedrock accounts, called in the
OpenAI and the Anthropic dialect, streaming and not, each test proves:

- the caller gets the right status and error type in its own dialect, within the deadline
  (`x-gateway-request-timeout`, or GATEWAY_REQUEST_TIMEOUT_SECONDS when absent);
- the provider sees exactly the attempts the retry budget allows (counted at the provider);
- nothing is retried once a streamed byte reached the caller: the stream ends with the
  dialect's in-stream error event instead of a clean-looking end;
- `Retry-After` is honoured: the retry waits at least that long, and a wait past the
  deadline is not made: the 429 goes back at once, with its Retry-After.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from typing import Any

import anthropic
import httpx
import openai
import pytest

from accounts.selectors import principal_for_user
from gateway_project import manifests
from gateway_project.manifest_io import parse_yaml
from proxy.models import RequestLog
from tests import factories
from tests.fakes.fixtures import fake_provider, fake_provider_server  # noqa: F401 - fixtures
from tests.proxy.conftest import Gateway, _close_proxy_db_threads  # noqa: F401 - fixture
from tests.proxy.conftest import gateway_factory as gateway_factory  # the fixture

pytestmark = pytest.mark.timeout(60)

MODELS = ["openai-main/gpt-4o", "anthropic-main/claude", "bedrock-main/nova"]
DIALECTS = ["openai", "anthropic"]
CASES = [pytest.param(d, m, id=f"{d}-{m.split('-')[0]}") for d in DIALECTS for m in MODELS]
STREAMING = [pytest.param(False, id="once"), pytest.param(True, id="stream")]
DEFAULT_ATTEMPTS = 2  # GATEWAY_RETRY_ATTEMPTS
SLACK = 1.5  # seconds allowed past a deadline for a loaded machine to answer
ERROR_TYPES = {
    ("openai", 429): "rate_limit_error",
    ("openai", 500): "api_error",
    ("openai", 502): "api_error",
    ("openai", 504): "timeout_error",
    ("anthropic", 429): "rate_limit_error",
    ("anthropic", 500): "api_error",
    ("anthropic", 502): "api_error",
    ("anthropic", 504): "timeout_error",
}


@pytest.fixture
def gateway(gateway_factory: Callable[[], AbstractContextManager[Gateway]]) -> Iterator[Gateway]:
    """A gateway in front of the fake providers (OpenAI, Anthropic and Bedrock accounts)."""
    with gateway_factory() as running:
        yield running


# --- calling the gateway -----------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: httpx.Headers
    text: str
    elapsed: float

    def error(self, dialect: str) -> dict[str, Any]:
        """The error object of the dialect, checking the envelope's shape on the way."""
        body = json.loads(self.text)
        if dialect == "anthropic":
            assert body["type"] == "error", body
        error: dict[str, Any] = body["error"]
        return error

    def events(self) -> list[tuple[str, str]]:
        """(event name, data) of each SSE event in a streamed answer."""
        out = []
        for block in self.text.replace("\r\n", "\n").split("\n\n"):
            name, data = "message", ""
            for line in block.split("\n"):
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data = line[5:].strip()
            if data:
                out.append((name, data))
        return out


def request_body(dialect: str, model: str, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": "one two three four five"}],
        "stream": stream,
    }
    if dialect == "anthropic":
        body["max_tokens"] = 50
    return body


def call(
    gw: Gateway,
    dialect: str,
    model: str,
    stream: bool,
    *,
    timeout_ms: int | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    """One raw HTTP call in the dialect; the whole answer read, and how long it took."""
    path = "/v1/messages" if dialect == "anthropic" else "/v1/chat/completions"
    sent = {"authorization": f"Bearer {gw.member_token}", **(headers or {})}
    if timeout_ms is not None:
        sent["x-gateway-request-timeout"] = str(timeout_ms)
    started = time.monotonic()
    with httpx.stream(
        "POST",
        f"{gw.url}/api/llm{path}",
        json=request_body(dialect, model, stream),
        headers=sent,
        timeout=30,
    ) as response:
        text = response.read().decode()
    return Answer(response.status_code, response.headers, text, time.monotonic() - started)


def attempts(gw: Gateway) -> list[dict[str, Any]]:
    """What reached the provider (every recorded request is a model call here)."""
    return gw.fake.requests()


def last_log(expected: int = 1, timeout: float = 10.0) -> RequestLog:
    """The newest request-log row, once `expected` rows were written (off the request path)."""
    deadline = time.monotonic() + timeout
    while RequestLog.objects.count() < expected:
        assert time.monotonic() < deadline, "the request log was not written"
        time.sleep(0.05)
    row = RequestLog.objects.order_by("-started_at").first()
    assert row is not None
    return row


def assert_error(answer: Answer, dialect: str, status: int, code: str | None = None) -> None:
    assert answer.status == status, answer.text
    error = answer.error(dialect)
    assert error["type"] == ERROR_TYPES[(dialect, status)]
    if dialect == "openai" and code is not None:
        assert error["code"] == code


def assert_complete(answer: Answer, dialect: str, stream: bool) -> None:
    """A whole, successful answer: the reply's body, or a stream up to its proper end."""
    assert answer.status == 200, answer.text
    if not stream:
        body = json.loads(answer.text)
        assert body["usage"], body
        return
    names = [name for name, _ in answer.events()]
    datas = [data for _, data in answer.events()]
    if dialect == "anthropic":
        assert names[-1] == "message_stop", answer.text
    else:
        assert datas[-1] == "[DONE]", answer.text


# --- hanging and slow providers ----------------------------------------------------------------


@pytest.mark.parametrize("stream", STREAMING)
@pytest.mark.parametrize(("dialect", "model"), CASES)
def test_a_hanging_provider_is_a_504_at_the_request_timeout(gateway, dialect, model, stream):
    gateway.fake.fail_next(times=5, hang=True)

    answer = call(gateway, dialect, model, stream, timeout_ms=700)

    assert_error(answer, dialect, 504, "timeout")
    assert 0.65 <= answer.elapsed < 0.7 + SLACK
    assert len(attempts(gateway)) == 1  # the deadline is spent: no second try
    gateway.fake.wait_for_stats(hanging=0)  # the gateway let go of the provider
    row = last_log()
    assert (row.status, row.error_type, row.streaming) == (504, "timeout", stream)


@pytest.mark.parametrize("stream", STREAMING)
@pytest.mark.parametrize("model", MODELS)
def test_without_a_timeout_header_the_default_deadline_applies(gateway, settings, model, stream):
    settings.GATEWAY_REQUEST_TIMEOUT_SECONDS = 1.0
    gateway.fake.fail_next(times=5, hang=True)

    answer = call(gateway, "openai", model, stream)

    assert_error(answer, "openai", 504, "timeout")
    assert 0.95 <= answer.elapsed < 1.0 + SLACK
    assert len(attempts(gateway)) == 1


@pytest.mark.parametrize("stream", STREAMING)
@pytest.mark.parametrize(("dialect", "model"), CASES)
def test_a_slow_first_byte_inside_the_deadline_is_waited_for(gateway, dialect, model, stream):
    knob = "first_byte_delay_ms" if stream else "latency_ms"
    gateway.fake.fail_next(times=1, **{knob: 800})

    answer = call(gateway, dialect, model, stream, timeout_ms=5000)

    assert_complete(answer, dialect, stream)
    assert answer.elapsed >= 0.8
    assert len(attempts(gateway)) == 1


@pytest.mark.parametrize(
    "knob", [pytest.param("latency_ms", id="no-headers"), "first_byte_delay_ms"]
)
@pytest.mark.parametrize(("dialect", "model"), CASES)
def test_a_stream_whose_first_byte_misses_the_deadline_is_a_504(gateway, dialect, model, knob):
    """Headers sent, first event late: nothing reached the caller, so a real 504, not a 200
    with an empty stream."""
    gateway.fake.fail_next(times=1, **{knob: 5000})

    answer = call(gateway, dialect, model, True, timeout_ms=700)

    assert_error(answer, dialect, 504, "timeout")
    assert answer.elapsed < 0.7 + SLACK
    assert len(attempts(gateway)) == 1


# --- 500 and the retry budget ------------------------------------------------------------------


@pytest.mark.parametrize("stream", STREAMING)
@pytest.mark.parametrize(("dialect", "model"), CASES)
def test_a_failing_provider_gets_exactly_the_retry_budget(gateway, dialect, model, stream):
    gateway.fake.fail_next(times=10, status=500)

    answer = call(gateway, dialect, model, stream, timeout_ms=10_000)

    assert_error(answer, dialect, 500, "upstream_error")
    assert len(attempts(gateway)) == DEFAULT_ATTEMPTS
    assert answer.elapsed < 5
    row = last_log()
    assert (row.status, row.error_type) == (500, "upstream_error")


@pytest.mark.parametrize("budget", [1, 3, 5])
@pytest.mark.parametrize("model", MODELS)
def test_the_retry_config_header_sets_the_budget(gateway, model, budget):
    gateway.fake.fail_next(times=10, status=500)
    config = json.dumps({"attempts": budget, "onStatusCodes": [500]})

    answer = call(gateway, "openai", model, False, headers={"x-gateway-retry-config": config})

    assert answer.status == 500
    assert len(attempts(gateway)) == budget


@pytest.mark.parametrize("model", MODELS)
def test_a_status_outside_the_retry_config_is_not_retried(gateway, model):
    gateway.fake.fail_next(times=10, status=500)
    config = json.dumps({"attempts": 5, "onStatusCodes": [429]})

    answer = call(gateway, "openai", model, False, headers={"x-gateway-retry-config": config})

    assert answer.status == 500
    assert len(attempts(gateway)) == 1


@pytest.mark.parametrize("model", MODELS)
def test_retries_never_outlast_the_deadline(gateway, model):
    """503 with Retry-After 1 s, 5 attempts allowed, 1.5 s deadline: a second try at ~1 s, no
    third (it would start at ~2 s): the 503 goes back before the deadline."""
    gateway.fake.fail_next(times=10, status=503, retry_after="1")
    config = json.dumps({"attempts": 5, "onStatusCodes": [503]})

    answer = call(
        gateway, "openai", model, False, timeout_ms=1500, headers={"x-gateway-retry-config": config}
    )

    assert answer.status == 503
    assert len(attempts(gateway)) == 2
    assert 1.0 <= answer.elapsed < 1.5 + SLACK


# --- 429 and Retry-After -----------------------------------------------------------------------


def retry_after_date(seconds: float) -> str:
    """An HTTP-date (RFC 9110 §10.2.3) `seconds` from now; whole seconds, so up to 1 s less."""
    return formatdate(time.time() + seconds, usegmt=True)


@pytest.mark.parametrize("stream", STREAMING)
@pytest.mark.parametrize("model", MODELS)
def test_retry_after_in_seconds_is_waited_before_the_retry(gateway, model, stream):
    gateway.fake.fail_next(times=1, status=429, retry_after="2")

    answer = call(gateway, "openai", model, stream, timeout_ms=10_000)

    assert_complete(answer, "openai", stream)
    first, second = attempts(gateway)
    assert second["received_at"] - first["received_at"] >= 2.0
    assert answer.elapsed < 2 + SLACK


@pytest.mark.parametrize("model", MODELS)
def test_retry_after_as_an_http_date_is_waited_until(gateway, model):
    value = retry_after_date(2.5)
    gateway.fake.fail_next(times=1, status=429, retry_after=value)

    answer = call(gateway, "anthropic", model, False, timeout_ms=10_000)

    assert answer.status == 200, answer.text
    first, second = attempts(gateway)
    assert second["received_at"] >= parsedate_to_datetime(value).timestamp()
    assert second["received_at"] - first["received_at"] >= 1.0


@pytest.mark.parametrize("stream", STREAMING)
@pytest.mark.parametrize(("dialect", "model"), CASES)
def test_a_retry_after_past_the_deadline_passes_the_429_on_at_once(gateway, dialect, model, stream):
    gateway.fake.fail_next(times=5, status=429, retry_after="30")

    answer = call(gateway, dialect, model, stream, timeout_ms=5000)

    assert_error(answer, dialect, 429, "upstream_error")
    assert answer.headers["retry-after"] == "30"
    assert len(attempts(gateway)) == 1
    assert answer.elapsed < SLACK
    assert last_log().status == 429


@pytest.mark.parametrize("model", MODELS)
def test_an_http_date_retry_after_past_the_deadline_is_passed_on_verbatim(gateway, model):
    value = retry_after_date(60)
    gateway.fake.fail_next(times=5, status=429, retry_after=value)

    answer = call(gateway, "openai", model, False, timeout_ms=5000)

    assert answer.status == 429
    assert answer.headers["retry-after"] == value
    assert len(attempts(gateway)) == 1


SHORT_DEADLINE = {"x-gateway-request-timeout": "5000"}


def test_the_sdks_see_a_rate_limit_error_with_retry_after(gateway):
    gateway.fake.fail_next(times=5, status=429, retry_after="30")
    client = openai.OpenAI(
        base_url=gateway.openai_base, api_key=gateway.member_token, max_retries=0
    )
    with pytest.raises(openai.RateLimitError) as oai_info:
        client.chat.completions.create(
            model="bedrock-main/nova",
            messages=[{"role": "user", "content": "x"}],
            extra_headers=SHORT_DEADLINE,
        )
    gateway.fake.fail_next(times=5, status=429, retry_after="30")
    ant = anthropic.Anthropic(
        base_url=gateway.anthropic_base, api_key=gateway.member_token, max_retries=0
    )
    with pytest.raises(anthropic.RateLimitError) as ant_info:
        ant.messages.create(
            model="openai-main/gpt-4o",
            max_tokens=5,
            messages=[{"role": "user", "content": "x"}],
            extra_headers=SHORT_DEADLINE,
        )
    assert oai_info.value.response.headers["retry-after"] == "30"
    assert ant_info.value.response.headers["retry-after"] == "30"
    assert len(attempts(gateway)) == 2


# --- connection resets -------------------------------------------------------------------------


@pytest.mark.parametrize("stream", STREAMING)
@pytest.mark.parametrize(("dialect", "model"), CASES)
def test_a_reset_before_any_byte_is_retried_then_a_502(gateway, dialect, model, stream):
    gateway.fake.fail_next(times=10, reset=True)

    answer = call(gateway, dialect, model, stream, timeout_ms=10_000)

    assert_error(answer, dialect, 502, "upstream_unreachable")
    assert len(attempts(gateway)) == DEFAULT_ATTEMPTS
    assert answer.elapsed < 5


@pytest.mark.parametrize("stream", STREAMING)
@pytest.mark.parametrize("model", MODELS)
def test_one_reset_before_any_byte_is_retried_transparently(gateway, model, stream):
    gateway.fake.fail_next(times=1, reset=True)

    answer = call(gateway, "openai", model, stream, timeout_ms=10_000)

    assert_complete(answer, "openai", stream)
    assert len(attempts(gateway)) == 2


@pytest.mark.parametrize(("dialect", "model"), CASES)
def test_a_reset_after_half_a_body_is_a_502(gateway, dialect, model):
    gateway.fake.fail_next(times=1, reset=1)

    answer = call(gateway, dialect, model, False, timeout_ms=10_000)

    assert_error(answer, dialect, 502, "upstream_error")
    assert len(attempts(gateway)) == 1
    assert last_log().status == 502


@pytest.mark.parametrize(("dialect", "model"), CASES)
def test_a_reset_mid_stream_ends_with_the_dialects_error_and_no_retry(gateway, dialect, model):
    gateway.fake.fail_next(times=1, reset=4, chunks=8, chunk_delay_ms=20)

    answer = call(gateway, dialect, model, True, timeout_ms=10_000)

    assert answer.status == 200  # bytes were on their way before the provider broke off
    events = answer.events()
    assert len(events) >= 2, answer.text
    name, data = events[-1]
    error = json.loads(data)["error"]
    if dialect == "anthropic":
        assert name == "error"
        assert "message_stop" not in [n for n, _ in events]
    else:
        assert error["code"] == "upstream_error"
        assert "[DONE]" not in [d for _, d in events]
    assert error["type"] == "api_error"
    assert len(attempts(gateway)) == 1  # never retried after the first streamed byte
    row = last_log()
    assert (row.status, row.error_type, row.streaming) == (200, "upstream_error", True)


@pytest.mark.parametrize("model", MODELS)
def test_the_sdks_raise_on_a_stream_broken_mid_way(gateway, model):
    gateway.fake.fail_next(times=1, reset=4, chunks=8)
    client = openai.OpenAI(
        base_url=gateway.openai_base, api_key=gateway.member_token, max_retries=0
    )
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "a b c d e f g h"}], stream=True
    )
    with pytest.raises(openai.APIError) as oai_info:
        list(stream)
    gateway.fake.fail_next(times=1, reset=4, chunks=8)
    ant = anthropic.Anthropic(
        base_url=gateway.anthropic_base, api_key=gateway.member_token, max_retries=0
    )
    with (
        pytest.raises(anthropic.APIStatusError) as ant_info,
        ant.messages.stream(
            model=model, max_tokens=50, messages=[{"role": "user", "content": "a b c d e f g h"}]
        ) as events,
    ):
        "".join(events.text_stream)
    assert oai_info.value.body == {
        "message": "The provider connection broke off mid-stream.",
        "type": "api_error",
        "param": None,
        "code": "upstream_error",
    }
    assert ant_info.value.body == {
        "type": "error",
        "error": {"type": "api_error", "message": "The provider connection broke off mid-stream."},
    }
    assert len(attempts(gateway)) == 2  # one per call


# --- a reset in the middle of the response headers (raw socket server) -------------------------


class ResetMidHeaders:
    """Accepts, reads the request, sends half a status line and headers, then a TCP RST."""

    PARTIAL = b"HTTP/1.1 200 OK\r\nContent-Type: applica"

    def __init__(self) -> None:
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            with contextlib.suppress(OSError):
                client.settimeout(5)
                client.recv(65536)
                client.sendall(self.PARTIAL)
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()

    def close(self) -> None:
        self._listener.close()


RAW_ACCOUNTS = """\
type: provider-account/openai
name: raw-openai
auth_data: {{type: api-key, api_key: sk-raw-0123456789}}
base_url: {url}/v1
collaborators: [{{subject: team:ml, role_id: provider-account-access}}]
integrations: [{{type: integration/model/openai, name: gpt, model_id: gpt-4o}}]
---
type: provider-account/anthropic
name: raw-anthropic
auth_data: {{type: api-key, api_key: sk-ant-raw-0123456789}}
base_url: {url}
collaborators: [{{subject: team:ml, role_id: provider-account-access}}]
integrations: [{{type: integration/model/anthropic, name: claude, model_id: claude-sonnet-4-5}}]
---
type: provider-account/aws-bedrock
name: raw-bedrock
region: us-east-1
auth_data: {{type: access-key-based, access_key_id: AKIARAW0000000000001, secret_access_key: raw}}
base_url: {url}
collaborators: [{{subject: team:ml, role_id: provider-account-access}}]
integrations: [{{type: integration/model/bedrock, name: nova, model_id: amazon.nova-lite-v1:0}}]
"""
RAW_MODELS = ["raw-openai/gpt", "raw-anthropic/claude", "raw-bedrock/nova"]


@pytest.fixture
def raw_gateway(
    gateway_factory: Callable[[], AbstractContextManager[Gateway]],
) -> Iterator[tuple[Gateway, ResetMidHeaders]]:
    server = ResetMidHeaders()
    admin = principal_for_user(factories.tenant_admin())
    manifests.apply(parse_yaml(RAW_ACCOUNTS.format(url=server.url)), actor=admin)
    try:
        with gateway_factory() as gw:
            yield gw, server
    finally:
        server.close()


@pytest.mark.parametrize("stream", STREAMING)
@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("model", RAW_MODELS)
def test_a_reset_mid_headers_is_retried_then_a_502(raw_gateway, dialect, model, stream):
    gw, server = raw_gateway

    answer = call(gw, dialect, model, stream, timeout_ms=10_000)

    assert_error(answer, dialect, 502, "upstream_unreachable")
    assert server.connections == DEFAULT_ATTEMPTS
    assert answer.elapsed < 5
