"""Fake OpenAI, Anthropic and AWS Bedrock upstreams: one raw ASGI app, for tests and the bench.

No framework on purpose: the benchmark pushes thousands of requests a second through it and it
must not be the bottleneck. All three providers share one port; the paths do not collide
except `GET /v1/models`, which answers in Anthropic's format when the request carries
`x-api-key` or `anthropic-version`.

Credentials (the module constants): OpenAI `Authorization: Bearer OPENAI_KEY`; Anthropic
`x-api-key: ANTHROPIC_KEY` (or `Authorization: Bearer`, as anthropic-sdk-python 2.x sends it)
plus a dated `anthropic-version`; Bedrock a SigV4 `Authorization` whose credential is
AWS_ACCESS_KEY_ID, verified by recomputing the signature with AWS_SECRET_ACCESS_KEY (or
`Authorization: Bearer BEDROCK_API_KEY`). Wrong ones get the provider's own 401/403 body.

Replies are deterministic: a chat answers `echo: <last user text>`; when tools are offered and
the last user message contains "use the tool", it calls the first tool with
`{"city": "Paris"}`; after a tool result it answers `tool result: <result text>`. Token counts
are whitespace-separated words (`count_tokens`).

Knobs (see `Knobs`), per request as `x-fake-<name>` headers or query parameters of the same
name, for all future requests with `POST /_fake/config`, or for the next N requests with
`POST /_fake/faults` (the gateway does not forward test headers, so tests that go through it
use the last two):

    latency-ms          sleep before answering
    status              answer this status with the provider's error body (429, 503 and 529
                        add `Retry-After`, value from `retry-after`, default 1)
    hang                never answer (until the client leaves)
    chunks              content chunks in a stream
    chunk-delay-ms      sleep between stream events
    first-byte-delay-ms in a stream, sleep after the headers before the first event (a slow
                        first byte; `latency-ms` delays the headers too)
    reset               close the connection abruptly (TCP RST): `0` or `true` before any
                        byte; N >= 1 after N stream events (a non-stream answer: after its
                        headers and half its body)
    stream-error-after  after N stream events send the provider's in-stream error and stop
    location            answer `status` (default 302) with this `Location` and a JSON body
                        that would pass for a success: proxies must not follow or pass it

Control endpoints (never recorded): `GET|DELETE /_fake/requests`, `GET /_fake/stats`,
`GET|POST /_fake/config`, `POST|DELETE /_fake/faults`, `POST /_fake/reset`.

Run standalone: `python -m tests.fakes.providers --port 9000 --latency-ms 50 --chunks 5`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import dataclasses
import hashlib
import hmac
import itertools
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

from proxy.aws_eventstream import CONTENT_TYPE as EVENTSTREAM_CONTENT_TYPE
from proxy.aws_eventstream import encode_exception, encode_json_event

OPENAI_KEY = "sk-fake-openai-key-0123456789"
ANTHROPIC_KEY = "sk-ant-fake-anthropic-key-0123456789"
AWS_ACCESS_KEY_ID = "AKIAFAKEACCESSKEY001"
AWS_SECRET_ACCESS_KEY = "fakeSecretAccessKey/0123456789/EXAMPLEKEY"
AWS_REGION = "us-east-1"
BEDROCK_API_KEY = "fake-bedrock-api-key-0123456789"  # Bedrock's "API key" (Bearer) auth
# Any dated version: the SDKs move on (anthropic-sdk-python 2.x sends 2026-10-21).
_ANTHROPIC_VERSION = re.compile(r"20\d\d-[01]\d-[0-3]\d")
TOOL_TRIGGER = "use the tool"
TOOL_ARGUMENTS: dict[str, Any] = {"city": "Paris"}
EMBEDDING_DIMENSIONS = 8

OPENAI_MODELS = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small")
ANTHROPIC_MODELS = ("claude-3-5-haiku-20241022", "claude-sonnet-4-20250514")
BEDROCK_MODELS = ("anthropic.claude-3-haiku-20240307-v1:0", "amazon.nova-micro-v1:0")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

_JSON = (b"content-type", b"application/json")
_SSE = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
]


def count_tokens(text: str) -> int:
    """The fake's token count: whitespace-separated words."""
    return len(text.split())


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


# --- knobs ---------------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class Knobs:
    """How to answer one request."""

    latency_ms: float = 0.0
    status: int = 0  # 0: answer normally
    retry_after: str = "1"
    hang: bool = False
    chunks: int = 3
    chunk_delay_ms: float = 0.0
    first_byte_delay_ms: float = 0.0
    reset: int = -1  # -1: no reset; 0: before any byte; N: after N stream events
    stream_error_after: int = -1  # -1: no in-stream error
    location: str = ""  # "": no redirect

    def update(self, values: dict[str, Any]) -> None:
        """Apply `{"latency_ms": 5, "chunks": "4", ...}` (keys with - or _); ValueError if bad."""
        for raw_key, raw in values.items():
            key = raw_key.replace("-", "_")
            if key not in _KNOB_FIELDS:
                raise ValueError(f"unknown knob {raw_key!r}")
            setattr(self, key, _parse_knob(key, raw))


_KNOB_FIELDS = {f.name for f in dataclasses.fields(Knobs)}
_HEADER_KNOBS = {f"x-fake-{name.replace('_', '-')}": name for name in _KNOB_FIELDS}
_TRUE = {"1", "true", "yes", "on"}


def _parse_knob(key: str, raw: Any) -> Any:
    text = str(raw).strip().lower()
    if key == "hang":
        return raw is True or text in _TRUE
    if key == "reset":
        if raw is True or text in {"true", "yes", "on"}:
            return 0
        if raw is False or text in {"false", "no", "off", ""}:
            return -1
        return int(text)
    if key in ("retry_after", "location"):
        return str(raw)
    if key in ("latency_ms", "chunk_delay_ms", "first_byte_delay_ms"):
        value = float(text)
        if value < 0:
            raise ValueError(f"{key} must be >= 0")
        return value
    value = int(text)
    if key == "chunks" and value < 1:
        raise ValueError("chunks must be >= 1")
    return value


@dataclasses.dataclass(slots=True)
class _Fault:
    knobs: dict[str, Any]
    times: int
    path: str  # substring of the path the fault applies to; "" for every provider request


# --- one request ---------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class Call:
    """A parsed provider request."""

    method: str
    path: str
    raw_path: str
    query: str
    headers: dict[str, str]
    body: bytes
    json: Any
    knobs: Knobs
    request_id: str


class _Stream:
    """Sends a streamed answer; notices the client leaving and counts it."""

    def __init__(self, app: FakeProviders, send: Send, receive: Receive) -> None:
        self.app = app
        self.send = send
        self.receive = receive
        self.finished = False
        self.gone = asyncio.Event()
        self.watcher = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                # uvicorn also reports a disconnect once the response is complete.
                if not self.finished:
                    self.app.stats["disconnects"] += 1
                    self.gone.set()
                return

    async def close(self) -> None:
        self.watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.watcher


class FakeProviders:
    """The ASGI application. Thread-safe to inspect from the thread that started it."""

    def __init__(
        self,
        *,
        openai_key: str = OPENAI_KEY,
        anthropic_key: str = ANTHROPIC_KEY,
        aws_access_key_id: str = AWS_ACCESS_KEY_ID,
        aws_secret_access_key: str = AWS_SECRET_ACCESS_KEY,
        bedrock_api_key: str = BEDROCK_API_KEY,
        verify_sigv4: bool = True,
        defaults: Knobs | None = None,
        record_limit: int = 200,
    ) -> None:
        self.openai_key = openai_key
        self.anthropic_key = anthropic_key
        self.aws_access_key_id = aws_access_key_id
        self.aws_secret_access_key = aws_secret_access_key
        # Every AWS key pair the fake accepts: the base pair, plus those its STS issues.
        self.aws_keys: dict[str, str] = {aws_access_key_id: aws_secret_access_key}
        self.assumed_roles: list[dict[str, str]] = []
        self.bedrock_api_key = bedrock_api_key
        self.verify_sigv4 = verify_sigv4
        self.startup_defaults = dataclasses.replace(defaults or Knobs())
        self.defaults = dataclasses.replace(self.startup_defaults)
        self.record_limit = record_limit
        self._lock = threading.Lock()
        self._requests: collections.deque[dict[str, Any]] = collections.deque(
            maxlen=max(record_limit, 1)
        )
        self._faults: list[_Fault] = []
        self._ids = itertools.count(1)
        self.stats: dict[str, int] = dict.fromkeys(
            ("requests", "open_streams", "streams_started", "streams_completed", "disconnects"),
            0,
        )
        self.stats["hanging"] = 0
        self._routes: dict[tuple[str, str], Callable[[Call, Send, Receive], Awaitable[None]]] = {
            ("POST", "/v1/chat/completions"): self._openai_chat,
            ("POST", "/v1/embeddings"): self._openai_embeddings,
            ("POST", "/v1/responses"): self._openai_responses,
            ("GET", "/v1/models"): self._models,
            ("POST", "/v1/messages"): self._anthropic_messages,
            ("GET", "/foundation-models"): self._bedrock_foundation_models,
        }

    # --- inspection (also used in-process by the pytest fixture) ---------------------------

    def requests(self) -> list[dict[str, Any]]:
        """The recorded provider requests, oldest first."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def snapshot_stats(self) -> dict[str, int]:
        return dict(self.stats)

    def reset(self) -> None:
        """Forget requests, faults and counters (not live streams); restore startup knobs."""
        with self._lock:
            self._requests.clear()
            self._faults.clear()
            self.defaults = dataclasses.replace(self.startup_defaults)
            for key in ("requests", "streams_started", "streams_completed", "disconnects"):
                self.stats[key] = 0

    def configure(self, values: dict[str, Any]) -> Knobs:
        """Change the default knobs for every later request."""
        with self._lock:
            knobs = dataclasses.replace(self.defaults)
            knobs.update(values)
            self.defaults = knobs
            return dataclasses.replace(knobs)

    def add_fault(self, values: dict[str, Any], *, times: int = 1, path: str = "") -> None:
        """Apply knobs `values` to the next `times` provider requests (whose path has `path`)."""
        Knobs().update(values)  # validate now, not when a request consumes it
        with self._lock:
            self._faults.append(_Fault(dict(values), times, path))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    # --- ASGI ------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        body = await _read_body(receive)
        if path.startswith("/_fake/"):
            await self._control(method, path, body, send)
            return
        headers: dict[str, str] = {}
        for key, value in scope["headers"]:
            name = key.decode("latin-1")
            text = value.decode("latin-1")
            headers[name] = f"{headers[name]},{text}" if name in headers else text
        query = scope["query_string"].decode("latin-1")
        try:
            knobs = self._knobs_for(path, headers, query)
        except ValueError as exc:
            await _send(send, 400, _dumps({"fake_error": str(exc)}), [_JSON])
            return
        parsed: Any = None
        if body:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        self.stats["requests"] += 1
        call = Call(
            method=method,
            path=path,
            raw_path=scope.get("raw_path", path.encode()).decode("latin-1"),
            query=query,
            headers=headers,
            body=body,
            json=parsed,
            knobs=knobs,
            request_id=f"req_fake_{next(self._ids)}",
        )
        if self.record_limit:
            self._record(call)
        await self._serve(call, send, receive)

    def _knobs_for(self, path: str, headers: dict[str, str], query: str) -> Knobs:
        knobs = dataclasses.replace(self.defaults)
        if self._faults:
            with self._lock:
                for fault in self._faults:
                    if fault.path in path:
                        knobs.update(fault.knobs)
                        fault.times -= 1
                        if fault.times <= 0:
                            self._faults.remove(fault)
                        break
        overrides = {_HEADER_KNOBS[k]: v for k, v in headers.items() if k in _HEADER_KNOBS}
        if "x-fake-" in query:
            for key, value in parse_qsl(query):
                if key in _HEADER_KNOBS:
                    overrides[_HEADER_KNOBS[key]] = value
        if overrides:
            knobs.update(overrides)
        return knobs

    def _record(self, call: Call) -> None:
        body: Any = call.json
        if body is None and call.body:
            body = call.body.decode("utf-8", "replace")
        entry = {
            "method": call.method,
            "path": call.path,
            "raw_path": call.raw_path,
            "query": call.query,
            "headers": call.headers,
            "body": body,
            "received_at": time.time(),
        }
        with self._lock:
            self._requests.append(entry)

    async def _serve(self, call: Call, send: Send, receive: Receive) -> None:
        knobs = call.knobs
        if knobs.reset == 0:
            await _abort(send)
            return
        if knobs.hang:
            await self._hang(send, receive)
            return
        if knobs.latency_ms:
            await asyncio.sleep(knobs.latency_ms / 1000)
        handler = self._routes.get((call.method, call.path))
        if call.method == "POST" and call.path == "/_sts/":
            handler = self._sts_assume_role
        if handler is None and call.path.startswith("/model/") and call.method == "POST":
            handler = self._bedrock_model
        if handler is None:
            await _send(send, 404, _dumps({"error": f"fake: no route {call.path}"}), [_JSON])
            return
        flavour = _flavour(call)
        problem = self._auth_problem(call, flavour)
        if problem is not None:
            status, text, code = problem
            await self._error(call, send, flavour, status, text, code)
            return
        if knobs.location:
            location = (b"location", knobs.location.encode("latin-1"))
            body = _dumps({"id": "redirected", "object": "chat.completion", "choices": []})
            await _send(send, knobs.status or 302, body, [_JSON, location])
            return
        if knobs.status:
            await self._error(call, send, flavour, knobs.status, "fake error requested", "")
            return
        await handler(call, send, receive)

    async def _hang(self, send: Send, receive: Receive) -> None:
        stream = _Stream(self, send, receive)
        self.stats["hanging"] += 1
        try:
            await stream.gone.wait()
        finally:
            self.stats["hanging"] -= 1
            await stream.close()

    # --- auth ------------------------------------------------------------------------------

    def _auth_problem(self, call: Call, flavour: str) -> tuple[int, str, str] | None:
        """(status, message, provider error code) when the credentials are wrong."""
        headers = call.headers
        if flavour == "openai":
            scheme, _, token = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                token.strip(), self.openai_key
            ):
                return 401, "Incorrect API key provided.", "invalid_api_key"
            return None
        if flavour == "anthropic":
            # `x-api-key`, or `Authorization: Bearer` as anthropic-sdk-python 2.x sends it.
            key = headers.get("x-api-key")
            if key is None:
                scheme, _, token = headers.get("authorization", "").partition(" ")
                key = token.strip() if scheme.lower() == "bearer" else ""
            if not hmac.compare_digest(key, self.anthropic_key):
                return 401, "invalid x-api-key", "authentication_error"
            version = headers.get("anthropic-version", "")
            if not _ANTHROPIC_VERSION.fullmatch(version):
                message = f"anthropic-version: {version!r} is not a valid version"
                return 400, message, "invalid_request_error"
            return None
        return self._bedrock_auth_problem(call)

    def _bedrock_auth_problem(self, call: Call) -> tuple[int, str, str] | None:
        authorization = call.headers.get("authorization", "")
        if authorization.startswith("Bearer "):
            if hmac.compare_digest(authorization[7:].strip(), self.bedrock_api_key):
                return None
            return 403, "The API key is invalid.", "UnrecognizedClientException"
        if not authorization.startswith("AWS4-HMAC-SHA256 "):
            return 403, "Missing Authentication Token", "MissingAuthenticationTokenException"
        fields = _sigv4_fields(authorization)
        credential = fields.get("Credential", "").split("/")
        if len(credential) != 5 or credential[4] != "aws4_request":
            message = "Authorization header requires a valid Credential."
            return 403, message, "IncompleteSignatureException"
        if credential[0] not in self.aws_keys:
            message = "The security token included in the request is invalid."
            return 403, message, "UnrecognizedClientException"
        if self.verify_sigv4 and not self._sigv4_valid(call, fields, credential):
            message = "The request signature we calculated does not match the one you provided."
            return 403, message, "InvalidSignatureException"
        return None

    def _sigv4_valid(self, call: Call, fields: dict[str, str], credential: list[str]) -> bool:
        """Recompute the signature (AWS "Create a signed AWS API request", SigV4)."""
        _akid, date, region, service, _ = credential
        signed = fields.get("SignedHeaders", "").split(";")
        amz_date = call.headers.get("x-amz-date", "")
        if "host" not in signed or not amz_date.startswith(date):
            return False
        canonical_headers = "".join(
            f"{name}:{' '.join(call.headers.get(name, '').split())}\n" for name in signed
        )
        canonical = "\n".join(
            [
                call.method,
                quote(call.raw_path or "/", safe="/~"),  # non-S3: the sent path, encoded again
                _canonical_query(call.query),
                canonical_headers,
                ";".join(signed),
                hashlib.sha256(call.body).hexdigest(),
            ]
        )
        scope = f"{date}/{region}/{service}/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        key = ("AWS4" + self.aws_keys[credential[0]]).encode()
        for part in (date, region, service, "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, fields.get("Signature", ""))

    async def _sts_assume_role(self, call: Call, send: Send, receive: Receive) -> None:
        """STS AssumeRole (Query API, form body): issues temporary keys this fake accepts."""
        form = dict(parse_qsl(call.body.decode()))
        if form.get("Action") != "AssumeRole" or not form.get("RoleArn"):
            await _send(
                send,
                400,
                b"<ErrorResponse><Error><Code>InvalidAction</Code></Error></ErrorResponse>",
                [(b"content-type", b"text/xml")],
            )
            return
        number = len(self.assumed_roles) + 1
        key_id, secret = f"ASIAFAKETEMP{number:08d}", f"fakeTempSecret{number:04d}/EXAMPLE"
        token = f"fakeSessionToken{number}"
        with self._lock:
            self.aws_keys[key_id] = secret
            self.assumed_roles.append(
                {
                    "RoleArn": form["RoleArn"],
                    "ExternalId": form.get("ExternalId", ""),
                    "AccessKeyId": key_id,
                }
            )
        body = (
            '<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
            "<AssumeRoleResult><Credentials>"
            f"<AccessKeyId>{key_id}</AccessKeyId><SecretAccessKey>{secret}</SecretAccessKey>"
            f"<SessionToken>{token}</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration>"
            "</Credentials></AssumeRoleResult></AssumeRoleResponse>"
        ).encode()
        await _send(send, 200, body, [(b"content-type", b"text/xml")])

    # --- errors ----------------------------------------------------------------------------

    async def _error(
        self, call: Call, send: Send, flavour: str, status: int, message: str, code: str
    ) -> None:
        """`status` with the provider's own error shape."""
        headers: Headers = [_JSON]
        if status in (429, 503, 529):
            headers.append((b"retry-after", call.knobs.retry_after.encode()))
        if flavour == "openai":
            kind = _OPENAI_ERRORS.get(status, ("server_error", None))
            body: Any = {
                "error": {
                    "message": message,
                    "type": kind[0],
                    "param": None,
                    "code": code or kind[1],
                }
            }
            headers.append((b"x-request-id", call.request_id.encode()))
        elif flavour == "anthropic":
            kind_name = code or _ANTHROPIC_ERRORS.get(status, "api_error")
            body = {"type": "error", "error": {"type": kind_name, "message": message}}
            headers.append((b"request-id", call.request_id.encode()))
        else:
            error_type = code or _BEDROCK_ERRORS.get(status, "InternalServerException")
            body = {"message": message}
            headers.append((b"x-amzn-errortype", f"{error_type}:{_AMZN_ERROR_NAMESPACE}".encode()))
            headers.append((b"x-amzn-requestid", call.request_id.encode()))
        await _send(send, status, _dumps(body), headers)

    # --- streaming -------------------------------------------------------------------------

    async def _stream(
        self,
        call: Call,
        send: Send,
        receive: Receive,
        headers: Headers,
        events: Iterable[bytes],
        error_event: bytes,
    ) -> None:
        """Send `events` one body chunk each, honouring the stream knobs."""
        knobs = call.knobs
        delay = knobs.chunk_delay_ms / 1000
        stream = _Stream(self, send, receive)
        self.stats["open_streams"] += 1
        self.stats["streams_started"] += 1
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            if knobs.first_byte_delay_ms:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stream.gone.wait(), knobs.first_byte_delay_ms / 1000)
            for sent, event in enumerate(events):
                if sent == knobs.reset:
                    await _abort(send)
                    return
                if sent == knobs.stream_error_after:
                    stream.finished = True
                    await send(
                        {"type": "http.response.body", "body": error_event, "more_body": False}
                    )
                    self.stats["streams_completed"] += 1
                    return
                if sent and delay:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stream.gone.wait(), delay)
                if stream.gone.is_set():
                    return
                await send({"type": "http.response.body", "body": event, "more_body": True})
            stream.finished = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            self.stats["streams_completed"] += 1
        finally:
            self.stats["open_streams"] -= 1
            await stream.close()

    async def _respond(self, call: Call, send: Send, body: Any, headers: Headers) -> None:
        """A complete JSON answer, or headers and half a body when `reset` >= 1."""
        payload = _dumps(body)
        if call.knobs.reset > 0:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [*headers, (b"content-length", str(len(payload)).encode())],
                }
            )
            half = payload[: len(payload) // 2]
            await send({"type": "http.response.body", "body": half, "more_body": True})
            await _abort(send)
            return
        await _send(send, 200, payload, headers)

    # --- OpenAI ----------------------------------------------------------------------------

    async def _openai_chat(self, call: Call, send: Send, receive: Receive) -> None:
        request = call.json if isinstance(call.json, dict) else {}
        model = request.get("model")
        messages = request.get("messages")
        if not isinstance(model, str) or not isinstance(messages, list) or not messages:
            await self._error(call, send, "openai", 400, "model and messages are required", "")
            return
        turn = _openai_turn(messages)
        prompt_tokens = sum(count_tokens(t) for t in _openai_texts(messages))
        tool = _first_openai_tool(request.get("tools"))
        response_format = request.get("response_format") or {}
        json_mode = isinstance(response_format, dict) and response_format.get("type") in (
            "json_object",
            "json_schema",
        )
        reply = _reply(turn, json_mode=json_mode)
        use_tool = tool is not None and turn.wants_tool
        arguments = json.dumps(TOOL_ARGUMENTS)
        completion_tokens = count_tokens(arguments if use_tool else reply)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        completion_id = f"chatcmpl-fake-{call.request_id[9:]}"
        created = int(time.time())
        headers: Headers = [_JSON, (b"x-request-id", call.request_id.encode())]
        tool_call = {
            "id": "call_fake_1",
            "type": "function",
            "function": {"name": tool, "arguments": arguments},
        }
        finish = "tool_calls" if use_tool else "stop"
        if not request.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": None if use_tool else reply}
            message["refusal"] = None
            if use_tool:
                message["tool_calls"] = [tool_call]
            body = {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
                ],
                "usage": usage,
                "system_fingerprint": "fp_fake",
            }
            await self._respond(call, send, body, headers)
            return
        stream_options = request.get("stream_options") or {}
        include_usage = isinstance(stream_options, dict) and bool(
            stream_options.get("include_usage")
        )
        base = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_fake",
        }

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            data: dict[str, Any] = {
                **base,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
                ],
            }
            if include_usage:
                data["usage"] = None
            return b"data: " + _dumps(data) + b"\n\n"

        events = [chunk({"role": "assistant", "content": None if use_tool else ""})]
        if use_tool:
            pieces = _split(arguments, call.knobs.chunks)
            first = {"index": 0, **tool_call, "function": {"name": tool, "arguments": ""}}
            events.append(chunk({"tool_calls": [first]}))
            events += [
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}) for p in pieces
            ]
        else:
            events += [chunk({"content": p}) for p in _split(reply, call.knobs.chunks)]
        events.append(chunk({}, finish))
        if include_usage:
            events.append(b"data: " + _dumps({**base, "choices": [], "usage": usage}) + b"\n\n")
        events.append(b"data: [DONE]\n\n")
        error = {"error": {"message": "fake stream error", "type": "server_error", "code": None}}
        await self._stream(
            call,
            send,
            receive,
            [*_SSE, (b"x-request-id", call.request_id.encode())],
            events,
            b"data: " + _dumps(error) + b"\n\n",
        )

    async def _openai_embeddings(self, call: Call, send: Send, receive: Receive) -> None:
        request = call.json if isinstance(call.json, dict) else {}
        inputs = request.get("input")
        if isinstance(inputs, str) or (
            isinstance(inputs, list) and inputs and isinstance(inputs[0], int)
        ):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs or not isinstance(request.get("model"), str):
            await self._error(call, send, "openai", 400, "model and input are required", "")
            return
        dimensions = request.get("dimensions") or EMBEDDING_DIMENSIONS
        as_base64 = request.get("encoding_format") == "base64"
        data = []
        tokens = 0
        for index, item in enumerate(inputs):
            text = item if isinstance(item, str) else " ".join(str(t) for t in item)
            tokens += count_tokens(text) if isinstance(item, str) else len(item)
            vector = embedding_for(text, dimensions)
            value: Any = vector
            if as_base64:
                value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": value})
        body = {
            "object": "list",
            "data": data,
            "model": request["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        await self._respond(call, send, body, [_JSON, (b"x-request-id", call.request_id.encode())])

    async def _openai_responses(self, call: Call, send: Send, receive: Receive) -> None:
        request = call.json if isinstance(call.json, dict) else {}
        model = request.get("model")
        raw_input = request.get("input")
        if not isinstance(model, str) or raw_input is None:
            await self._error(call, send, "openai", 400, "model and input are required", "")
            return
        if request.get("stream"):
            await self._error(call, send, "openai", 400, "fake: streaming not supported", "")
            return
        messages = (
            [{"role": "user", "content": raw_input}] if isinstance(raw_input, str) else raw_input
        )
        turn = _openai_turn(messages if isinstance(messages, list) else [])
        reply = _reply(turn, json_mode=False)
        texts = _openai_texts(messages if isinstance(messages, list) else [])
        if isinstance(request.get("instructions"), str):
            texts.append(request["instructions"])
        input_tokens = sum(count_tokens(t) for t in texts)
        output_tokens = count_tokens(reply)
        number = call.request_id[9:]
        body = {
            "id": f"resp_fake_{number}",
            "object": "response",
            "created_at": int(time.time()),
            "status": "completed",
            "model": model,
            "output": [
                {
                    "type": "message",
                    "id": f"msg_fake_{number}",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": reply, "annotations": []}],
                }
            ],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "error": None,
            "incomplete_details": None,
            "instructions": request.get("instructions"),
            "metadata": {},
            "temperature": 1.0,
            "top_p": 1.0,
            "usage": {
                "input_tokens": input_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": input_tokens + output_tokens,
            },
        }
        await self._respond(call, send, body, [_JSON, (b"x-request-id", call.request_id.encode())])

    async def _models(self, call: Call, send: Send, receive: Receive) -> None:
        if _flavour(call) == "anthropic":
            data = [
                {
                    "type": "model",
                    "id": name,
                    "display_name": name,
                    "created_at": "2025-01-01T00:00:00Z",
                }
                for name in ANTHROPIC_MODELS
            ]
            body: Any = {
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"],
                "last_id": data[-1]["id"],
            }
        else:
            body = {
                "object": "list",
                "data": [
                    {"id": name, "object": "model", "created": 1700000000, "owned_by": "openai"}
                    for name in OPENAI_MODELS
                ],
            }
        await self._respond(call, send, body, [_JSON])

    # --- Anthropic -------------------------------------------------------------------------

    async def _anthropic_messages(self, call: Call, send: Send, receive: Receive) -> None:
        request = call.json if isinstance(call.json, dict) else {}
        model = request.get("model")
        messages = request.get("messages")
        if (
            not isinstance(model, str)
            or not isinstance(messages, list)
            or not messages
            or not isinstance(request.get("max_tokens"), int)
        ):
            message = "model, messages and max_tokens are required"
            await self._error(call, send, "anthropic", 400, message, "invalid_request_error")
            return
        turn = _anthropic_turn(messages)
        texts = _anthropic_texts(messages)
        system = request.get("system")
        if isinstance(system, str):
            texts.append(system)
        elif isinstance(system, list):
            texts += [b.get("text", "") for b in system if isinstance(b, dict)]
        input_tokens = sum(count_tokens(t) for t in texts)
        tools = request.get("tools")
        tool = (
            tools[0].get("name")
            if isinstance(tools, list) and tools and isinstance(tools[0], dict)
            else None
        )
        use_tool = tool is not None and turn.wants_tool
        reply = _reply(turn, json_mode=False)
        output_tokens = count_tokens(json.dumps(TOOL_ARGUMENTS) if use_tool else reply)
        message_id = f"msg_fake_{call.request_id[9:]}"
        stop_reason = "tool_use" if use_tool else "end_turn"
        block: dict[str, Any] = (
            {"type": "tool_use", "id": "toolu_fake_1", "name": tool, "input": TOOL_ARGUMENTS}
            if use_tool
            else {"type": "text", "text": reply}
        )
        envelope = {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "stop_sequence": None,
        }
        if not request.get("stream"):
            body = {
                **envelope,
                "content": [block],
                "stop_reason": stop_reason,
                "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
            }
            request_id = (b"request-id", call.request_id.encode())
            await self._respond(call, send, body, [_JSON, request_id])
            return
        start_block = {**block, "input": {}} if use_tool else {"type": "text", "text": ""}
        if use_tool:
            deltas = [
                {"type": "input_json_delta", "partial_json": p}
                for p in _split(json.dumps(TOOL_ARGUMENTS), call.knobs.chunks)
            ]
        else:
            deltas = [{"type": "text_delta", "text": p} for p in _split(reply, call.knobs.chunks)]
        block_deltas = [{"type": "content_block_delta", "index": 0, "delta": d} for d in deltas]
        events = [
            _sse_event(
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        **envelope,
                        "content": [],
                        "stop_reason": None,
                        "usage": {"input_tokens": input_tokens, "output_tokens": 1},
                    },
                },
            ),
            _sse_event(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": start_block},
            ),
            *(_sse_event("content_block_delta", d) for d in block_deltas),
            _sse_event("content_block_stop", {"type": "content_block_stop", "index": 0}),
            _sse_event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": output_tokens},
                },
            ),
            _sse_event("message_stop", {"type": "message_stop"}),
        ]
        error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        await self._stream(
            call,
            send,
            receive,
            [*_SSE, (b"request-id", call.request_id.encode())],
            events,
            _sse_event("error", error),
        )

    # --- Bedrock ---------------------------------------------------------------------------

    async def _bedrock_model(self, call: Call, send: Send, receive: Receive) -> None:
        # /model/{modelId}/converse[-stream]; the id is URL-encoded (':' as %3A).
        model_id, _, action = call.path[len("/model/") :].rpartition("/")
        if action not in ("converse", "converse-stream") or not model_id:
            await self._error(call, send, "bedrock", 404, "fake: unknown operation", "")
            return
        request = call.json if isinstance(call.json, dict) else {}
        messages = request.get("messages")
        if not isinstance(messages, list) or not messages:
            message = "messages: must not be empty"
            await self._error(call, send, "bedrock", 400, message, "ValidationException")
            return
        turn = _bedrock_turn(messages)
        texts = _bedrock_texts(messages)
        system = request.get("system")
        if isinstance(system, list):
            texts += [b.get("text", "") for b in system if isinstance(b, dict)]
        input_tokens = sum(count_tokens(t) for t in texts)
        tool = _first_bedrock_tool(request.get("toolConfig"))
        use_tool = tool is not None and turn.wants_tool
        reply = _reply(turn, json_mode=False)
        arguments = json.dumps(TOOL_ARGUMENTS)
        output_tokens = count_tokens(arguments if use_tool else reply)
        usage = {
            "inputTokens": input_tokens,
            "outputTokens": output_tokens,
            "totalTokens": input_tokens + output_tokens,
        }
        stop_reason = "tool_use" if use_tool else "end_turn"
        request_id = (b"x-amzn-requestid", call.request_id.encode())
        if action == "converse":
            content: dict[str, Any] = (
                {"toolUse": {"toolUseId": "tooluse_fake_1", "name": tool, "input": TOOL_ARGUMENTS}}
                if use_tool
                else {"text": reply}
            )
            body = {
                "output": {"message": {"role": "assistant", "content": [content]}},
                "stopReason": stop_reason,
                "usage": usage,
                "metrics": {"latencyMs": int(call.knobs.latency_ms)},
            }
            await self._respond(call, send, body, [_JSON, request_id])
            return
        events = [encode_json_event("messageStart", {"role": "assistant"})]
        if use_tool:
            start = {"toolUse": {"toolUseId": "tooluse_fake_1", "name": tool}}
            events.append(
                encode_json_event("contentBlockStart", {"start": start, "contentBlockIndex": 0})
            )
            events += [
                encode_json_event(
                    "contentBlockDelta",
                    {"delta": {"toolUse": {"input": p}}, "contentBlockIndex": 0},
                )
                for p in _split(arguments, call.knobs.chunks)
            ]
        else:
            events += [
                encode_json_event(
                    "contentBlockDelta", {"delta": {"text": p}, "contentBlockIndex": 0}
                )
                for p in _split(reply, call.knobs.chunks)
            ]
        events += [
            encode_json_event("contentBlockStop", {"contentBlockIndex": 0}),
            encode_json_event("messageStop", {"stopReason": stop_reason}),
            encode_json_event(
                "metadata",
                {"usage": usage, "metrics": {"latencyMs": int(call.knobs.latency_ms)}},
            ),
        ]
        await self._stream(
            call,
            send,
            receive,
            [(b"content-type", EVENTSTREAM_CONTENT_TYPE.encode()), request_id],
            events,
            encode_exception("internalServerException", "fake stream error"),
        )

    async def _bedrock_foundation_models(self, call: Call, send: Send, receive: Receive) -> None:
        summaries = [
            {
                "modelArn": f"arn:aws:bedrock:{AWS_REGION}::foundation-model/{model_id}",
                "modelId": model_id,
                "modelName": model_id,
                "providerName": model_id.split(".")[0].title(),
                "inputModalities": ["TEXT"],
                "outputModalities": ["TEXT"],
                "responseStreamingSupported": True,
                "customizationsSupported": [],
                "inferenceTypesSupported": ["ON_DEMAND"],
                "modelLifecycle": {"status": "ACTIVE"},
            }
            for model_id in BEDROCK_MODELS
        ]
        body = {"modelSummaries": summaries}
        request_id = (b"x-amzn-requestid", call.request_id.encode())
        await self._respond(call, send, body, [_JSON, request_id])

    # --- control ---------------------------------------------------------------------------

    async def _control(self, method: str, path: str, body: bytes, send: Send) -> None:
        try:
            values = json.loads(body) if body else {}
            if not isinstance(values, dict):
                raise ValueError("the body must be a JSON object")
            result = self._control_result(method, path, values)
        except (ValueError, TypeError) as exc:
            await _send(send, 400, _dumps({"fake_error": str(exc)}), [_JSON])
            return
        if result is _NOT_FOUND:
            problem = {"fake_error": f"no control route {method} {path}"}
            await _send(send, 404, _dumps(problem), [_JSON])
            return
        await _send(send, 200, _dumps(result), [_JSON])

    def _control_result(self, method: str, path: str, values: dict[str, Any]) -> Any:
        if path == "/_fake/requests":
            if method == "GET":
                return self.requests()
            if method == "DELETE":
                self.clear_requests()
                return {"cleared": True}
        elif path == "/_fake/stats" and method == "GET":
            return self.snapshot_stats()
        elif path == "/_fake/config":
            if method == "POST":
                return dataclasses.asdict(self.configure(values))
            if method == "GET":
                return dataclasses.asdict(self.defaults)
        elif path == "/_fake/faults":
            if method == "POST":
                times = int(values.pop("times", 1))
                match = str(values.pop("path", ""))
                self.add_fault(values, times=times, path=match)
                return {"queued": times}
            if method == "DELETE":
                self.clear_faults()
                return {"cleared": True}
        elif path == "/_fake/reset" and method == "POST":
            self.reset()
            return {"reset": True}
        return _NOT_FOUND


_NOT_FOUND = object()
_AMZN_ERROR_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.bedrock/"

_OPENAI_ERRORS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", None),
}
_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_BEDROCK_ERRORS = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}


# --- conversation helpers ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Turn:
    """What the conversation's last message asks for."""

    user_text: str  # text of the last user message
    tool_result: str | None  # set when the last message carries a tool result

    @property
    def wants_tool(self) -> bool:
        return self.tool_result is None and TOOL_TRIGGER in self.user_text.lower()


def _reply(turn: _Turn, *, json_mode: bool) -> str:
    if turn.tool_result is not None:
        return f"tool result: {turn.tool_result}"
    if json_mode:
        return json.dumps({"echo": turn.user_text})
    return f"echo: {turn.user_text}"


def _content_text(content: Any, text_types: tuple[str, ...] = ("text", "input_text")) -> str:
    """Plain text of a message's content: a string or a list of typed parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and part.get("type") in text_types
        )
    return ""


def _openai_texts(messages: list[Any]) -> list[str]:
    return [_content_text(m.get("content")) for m in messages if isinstance(m, dict)]


def _openai_turn(messages: list[Any]) -> _Turn:
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    user_text = _content_text(users[-1].get("content")) if users else ""
    if last.get("role") in ("tool", "function"):
        return _Turn(user_text, _content_text(last.get("content")))
    return _Turn(user_text, None)


def _first_openai_tool(tools: Any) -> str | None:
    if not isinstance(tools, list) or not tools or not isinstance(tools[0], dict):
        return None
    function = tools[0].get("function")
    name = function.get("name") if isinstance(function, dict) else tools[0].get("name")
    return name if isinstance(name, str) else None


def _anthropic_texts(messages: list[Any]) -> list[str]:
    return [_content_text(m.get("content")) for m in messages if isinstance(m, dict)]


def _anthropic_turn(messages: list[Any]) -> _Turn:
    users = [
        m
        for m in messages
        if isinstance(m, dict) and m.get("role") == "user" and _content_text(m.get("content"))
    ]
    user_text = _content_text(users[-1].get("content")) if users else ""
    last = messages[-1] if isinstance(messages[-1], dict) else {}
    content = last.get("content")
    if isinstance(content, list):
        for block in content:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                inner = block.get("content")
                return _Turn(user_text, _content_text(inner))
    return _Turn(user_text, None)


def _bedrock_block_text(content: Any) -> str:
    if not isinstance(content, list):
        return ""
    return " ".join(b["text"] for b in content if isinstance(b, dict) and "text" in b)


def _bedrock_texts(messages: list[Any]) -> list[str]:
    return [_bedrock_block_text(m.get("content")) for m in messages if isinstance(m, dict)]


def _bedrock_turn(messages: list[Any]) -> _Turn:
    users = [
        m
        for m in messages
        if isinstance(m, dict) and m.get("role") == "user" and _bedrock_block_text(m.get("content"))
    ]
    user_text = _bedrock_block_text(users[-1].get("content")) if users else ""
    last = messages[-1] if isinstance(messages[-1], dict) else {}
    content = last.get("content")
    if isinstance(content, list):
        for block in content:
            if isinstance(block, dict) and isinstance(block.get("toolResult"), dict):
                inner = block["toolResult"].get("content")
                parts = []
                for item in inner if isinstance(inner, list) else []:
                    if isinstance(item, dict) and "text" in item:
                        parts.append(str(item["text"]))
                    elif isinstance(item, dict) and "json" in item:
                        parts.append(json.dumps(item["json"]))
                return _Turn(user_text, " ".join(parts))
    return _Turn(user_text, None)


def _first_bedrock_tool(tool_config: Any) -> str | None:
    if not isinstance(tool_config, dict):
        return None
    tools = tool_config.get("tools")
    if not isinstance(tools, list) or not tools or not isinstance(tools[0], dict):
        return None
    spec = tools[0].get("toolSpec")
    name = spec.get("name") if isinstance(spec, dict) else None
    return name if isinstance(name, str) else None


def embedding_for(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """A deterministic unit-range vector for `text` (exactly representable in float32)."""
    digest = b""
    counter = 0
    while len(digest) < dimensions:
        digest += hashlib.sha256(f"{counter}:{text}".encode()).digest()
        counter += 1
    return [(byte - 128) / 128 for byte in digest[:dimensions]]


def _split(text: str, parts: int) -> list[str]:
    """`text` in `parts` consecutive pieces of near-equal length (some may be empty)."""
    size = len(text)
    return [text[size * i // parts : size * (i + 1) // parts] for i in range(parts)]


def _sse_event(name: str, data: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + _dumps(data) + b"\n\n"


def _flavour(call: Call) -> str:
    """Which provider's conventions (auth, error shape) a path follows."""
    path = call.path
    if path.startswith(("/model/", "/foundation-models", "/_sts/")):
        return "bedrock"  # SigV4 auth; STS answers XML errors, but the auth check is the same
    if path == "/v1/messages":
        return "anthropic"
    if path == "/v1/models" and (
        "x-api-key" in call.headers or "anthropic-version" in call.headers
    ):
        return "anthropic"
    return "openai"


def _sigv4_fields(authorization: str) -> dict[str, str]:
    """`Credential=..., SignedHeaders=..., Signature=...` as a dict."""
    fields: dict[str, str] = {}
    for part in authorization.split(" ", 1)[1].split(","):
        key, _, value = part.strip().partition("=")
        fields[key] = value
    return fields


def _canonical_query(query: str) -> str:
    pairs = []
    for part in filter(None, query.split("&")):
        name, _, value = part.partition("=")
        pairs.append((quote(unquote(name), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


# --- ASGI plumbing -------------------------------------------------------------------------


async def _read_body(receive: Receive) -> bytes:
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        return body
    parts = [body]
    while message.get("more_body"):
        message = await receive()
        parts.append(message.get("body", b""))
    return b"".join(parts)


async def _send(send: Send, status: int, body: bytes, headers: Headers) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _abort(send: Send) -> None:
    """Drop the connection with a TCP RST. ASGI has no abort, so reach uvicorn's transport."""
    cycle = getattr(send, "__self__", None)
    transport: asyncio.Transport | None = getattr(cycle, "transport", None)
    if transport is None:
        raise ConnectionAbortedError("fake reset")  # the server closes the connection
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError, AttributeError):
            # Linger 0: close() sends RST instead of FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    await asyncio.sleep(0)  # let connection_lost run so uvicorn sends nothing more


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


# --- standalone ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """Serve the fakes with uvicorn (httptools, uvloop), for the benchmark or by hand."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="default latency")
    parser.add_argument("--chunks", type=int, default=3, help="default stream chunk count")
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0)
    parser.add_argument("--record", type=int, default=200, help="requests to keep (0: none)")
    parser.add_argument("--no-verify-sigv4", action="store_true")
    args = parser.parse_args(argv)
    knobs = Knobs(
        latency_ms=args.latency_ms, chunks=args.chunks, chunk_delay_ms=args.chunk_delay_ms
    )
    app = FakeProviders(
        defaults=knobs, record_limit=args.record, verify_sigv4=not args.no_verify_sigv4
    )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        log_level="warning",
        access_log=False,
        backlog=4096,
        timeout_graceful_shutdown=1,
    )


if __name__ == "__main__":
    main()
