"""Model calls: `/api/llm/v1/...` in the OpenAI dialect and `/api/llm/v1/messages` (Anthropic).

One path for every call: read the body, authenticate from the in-process cache, resolve
`<account>/<model>`, decide with accounts.policy, pick a plan for (caller dialect, provider
kind), call the provider with retries inside a deadline, answer (streaming bytes through as
they come), and hand one log record to the batched writer after answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
from django.conf import settings
from django.utils import timezone

from accounts.policy import Permission, decide
from providers.aws_sigv4 import AwsCredentials
from providers.aws_sts import StsError
from proxy import plans
from proxy.app import ProxyState, Receive, Scope, Send, bearer_token, header, route, send_json
from proxy.auth import AuthUnavailable, Grant
from proxy.errors import (
    Dialect,
    ProxyError,
    bad_request,
    error_body,
    model_not_permitted,
    unauthorized,
)
from proxy.routing import Target
from proxy.upstream import RetryPolicy, retry_policy
from proxy.upstream import send as upstream_send

POST_ENDPOINTS = {
    "/v1/chat/completions": "chat/completions",
    "/v1/messages": "messages",
    "/v1/embeddings": "embeddings",
    "/v1/responses": "responses",
}
BODY_LOG_LIMIT = 1 << 20
MAX_METADATA_VALUE = 128


class _RequestIds:
    """uuid4 values, drawing os.urandom 4 KiB at a time instead of 16 bytes per id.

    Why: `uuid.uuid4()` makes one getrandom syscall per call; under the benchmark that was ~2%
    of the loop's CPU. Same randomness and version bits (`UUID(bytes=..., version=4)` is what
    uuid4 does); the buffer is dropped in a forked child so two processes never share ids.
    """

    BATCH = 256

    def __init__(self) -> None:
        self._buffer = b""
        self._offset = 0
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._buffer, self._offset = b"", 0

    def __call__(self) -> uuid.UUID:
        offset = self._offset
        if offset >= len(self._buffer):
            self._buffer, offset = os.urandom(16 * self.BATCH), 0
        self._offset = offset + 16
        return uuid.UUID(bytes=self._buffer[offset : offset + 16], version=4)


new_request_id = _RequestIds()


class CallRecord:
    """The request-log record being built for one call."""

    def __init__(self, endpoint: str) -> None:
        self.started = time.monotonic()
        self.values: dict[str, Any] = {
            "id": new_request_id(),
            "started_at": timezone.now(),
            "endpoint": endpoint,
            "requested_model": "",
            "status": 0,
            "error_type": "",
            "streaming": False,
            "input_tokens": 0,
            "output_tokens": 0,
            "metadata": {},
            "caller_type": "",
            "caller_id": 0,
            "caller_name": "",
            "team_ids": "|",
            "teams": [],
            "provider_account": "",
            "provider_model": "",
            "ttft_ms": None,
            "request_body": None,
            "response_body": None,
            "cost_usd": 0,
        }
        self.log_bodies = False
        self.caller_known = False
        self._first_byte: float | None = None

    def first_byte(self) -> None:
        if self._first_byte is None:
            self._first_byte = time.monotonic()
            self.values["ttft_ms"] = round((self._first_byte - self.started) * 1000, 3)

    def finish(self, status: int, error_type: str = "") -> dict[str, Any]:
        self.values["status"] = status
        self.values["error_type"] = self.values["error_type"] or error_type
        self.values["latency_ms"] = round((time.monotonic() - self.started) * 1000, 3)
        return self.values


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body, or 413 past `limit` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise asyncio.CancelledError
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ProxyError(
                413, f"Request body is larger than {limit} bytes.", code="body_too_large"
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def declared_length(scope: Scope) -> int:
    """The request's Content-Length, or 0 when absent (chunked) or unreadable."""
    raw = header(scope, b"content-length")
    return int(raw) if raw.isdigit() else 0


def parse_metadata(scope: Scope) -> dict[str, str]:
    """`x-gateway-metadata` (or `x-tfy-metadata`): a JSON object of short string values."""
    raw = header(scope, b"x-gateway-metadata") or header(scope, b"x-tfy-metadata")
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise bad_request(
            "x-gateway-metadata must be a JSON object.", "x-gateway-metadata"
        ) from exc
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise bad_request(
            "x-gateway-metadata must map string keys to string values.", "x-gateway-metadata"
        )
    long = [k for k, v in value.items() if len(v) > MAX_METADATA_VALUE]
    if long:
        raise bad_request(
            f"x-gateway-metadata value of '{long[0]}' is longer than "
            f"{MAX_METADATA_VALUE} characters.",
            "x-gateway-metadata",
        )
    return value


def deadline_from(scope: Scope) -> float:
    raw = header(scope, b"x-gateway-request-timeout") or header(scope, b"x-tfy-request-timeout")
    timeout = float(settings.GATEWAY_REQUEST_TIMEOUT_SECONDS)
    if raw:
        try:
            timeout = int(raw) / 1000
        except ValueError as exc:
            raise bad_request(
                "x-gateway-request-timeout must be milliseconds.", "x-gateway-request-timeout"
            ) from exc
        if timeout <= 0:
            raise bad_request(
                "x-gateway-request-timeout must be positive.", "x-gateway-request-timeout"
            )
    return time.monotonic() + timeout


def bodies_logged(scope: Scope) -> bool:
    """GATEWAY_REQUEST_LOGGING_MODE: always, never, or header_controlled (log unless told not)."""
    mode = settings.GATEWAY_REQUEST_LOGGING_MODE
    if mode in ("always", "never"):
        return bool(mode == "always")
    raw = header(scope, b"x-gateway-logging-config") or header(scope, b"x-tfy-logging-config")
    if not raw:
        return True
    try:
        return bool(json.loads(raw).get("enabled", True))
    except (ValueError, AttributeError):
        return True


def describe_caller(record: CallRecord, grant: Grant, team_names: dict[int, str]) -> None:
    principal = grant.principal
    kind, _, name = principal.subject.partition(":")
    teams = sorted(principal.member_team_ids)
    record.values.update(
        caller_type=kind,
        caller_id=principal.id,
        caller_name=name,
        team_ids="|" + "".join(f"{t}|" for t in teams),
        teams=[team_names[t] for t in teams if t in team_names],
    )
    record.caller_known = True


@route("/api/llm/")
async def llm(state: ProxyState, scope: Scope, receive: Receive, send: Send) -> None:
    """Dispatch one call and always leave one log record for model calls."""
    path = scope["path"].removeprefix("/api/llm")
    dialect: Dialect = "anthropic" if path.rstrip("/") == "/v1/messages" else "openai"
    record = CallRecord(POST_ENDPOINTS.get(path.rstrip("/"), path))
    status, error_type = 500, "internal_error"
    try:
        if scope["method"] == "GET" and path.rstrip("/") == "/v1/models":
            await list_models(state, scope, send)
            return
        if scope["method"] != "POST" or path.rstrip("/") not in POST_ENDPOINTS:
            raise ProxyError(404, f"Unknown endpoint {scope['method']} {path}.", code="not_found")
        status, error_type = await model_call(state, scope, receive, send, record, dialect)
    except ProxyError as error:
        status, error_type = error.status, error.code or "error"
        await send_json(send, error.status, error_body(dialect, error), error.headers)
    except AuthUnavailable:
        status, error_type = 503, "gateway_unavailable"
        await send_json(
            send,
            503,
            error_body(
                dialect,
                ProxyError(503, "The gateway cannot verify credentials right now; retry shortly."),
            ),
        )
    except asyncio.CancelledError:
        status, error_type = 499, "client_disconnected"
        raise
    finally:
        if record.caller_known:
            state.logs.enqueue(
                "request", record.finish(status, error_type if status >= 400 else "")
            )


async def authenticate(state: ProxyState, scope: Scope) -> Grant:
    raw = bearer_token(scope)
    grant: Grant | None = await state.auth.authenticate(raw) if raw else None
    if grant is None:
        raise unauthorized()
    return grant


async def list_models(state: ProxyState, scope: Scope, send: Send) -> None:
    """`GET /v1/models`: only the models the caller may use."""
    grant = await authenticate(state, scope)
    routing = await state.routing.get(state.auth.version)
    principal = grant.principal
    data = [
        {"id": name, "object": "model", "created": 0, "owned_by": target.account}
        for name, target in sorted(routing.targets.items())
        if decide(
            principal, Permission.PROVIDER_ACCOUNT_USE, target=(target.account_id, target.model)
        ).allowed
    ]
    await send_json(send, 200, {"object": "list", "data": data})


async def model_call(
    state: ProxyState,
    scope: Scope,
    receive: Receive,
    send: Send,
    record: CallRecord,
    dialect: Dialect,
) -> tuple[int, str]:
    """Authenticate, authorise, plan, call, answer. Returns (status, error type) for the log."""
    limit = int(settings.GATEWAY_MAX_BODY_BYTES)
    if declared_length(scope) > limit:
        # Refused before reading: a client announcing too much waits for nothing.
        raise ProxyError(413, f"Request body is larger than {limit} bytes.", code="body_too_large")
    body = await read_body(receive, limit)
    grant = await authenticate(state, scope)
    routing = await state.routing.get(state.auth.version)
    describe_caller(record, grant, routing.team_names)
    record.log_bodies = bodies_logged(scope)
    if record.log_bodies:
        record.values["request_body"] = body[:BODY_LOG_LIMIT].decode("utf-8", errors="replace")
    record.values["metadata"] = parse_metadata(scope)
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested past the C stack limit
        raise bad_request("The request body is not valid JSON.") from exc
    if not isinstance(payload, dict):
        raise bad_request("The request body must be a JSON object.")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("'model' is required: name it as <provider-account>/<model>.", "model")
    record.values["requested_model"] = model
    target = routing.targets.get(model)
    allowed = (
        target is not None
        and decide(
            grant.principal,
            Permission.PROVIDER_ACCOUNT_USE,
            target=(target.account_id, target.model),
        ).allowed
    )
    if target is None or not allowed:
        raise model_not_permitted(model)
    record.values.update(provider_account=target.account, provider_model=target.model_id)
    aws = await assumed_role_credentials(state, target)
    plan = plans.plan_for(dialect, record.values["endpoint"], target, payload, aws)
    record.values["streaming"] = plan.stream
    policy = retry_policy(
        header(scope, b"x-gateway-retry-config") or header(scope, b"x-tfy-retry-config"),
        RetryPolicy(attempts=int(settings.GATEWAY_RETRY_ATTEMPTS)),
    )
    response = await upstream_send(
        state.http, plan.call, deadline=deadline_from(scope), policy=policy
    )
    try:
        if not 200 <= response.status_code < 300:
            raise await plans.upstream_error(response, target)
        if plan.stream:
            await stream_out(plan, response, target, record, receive, send, dialect)
        else:
            await respond_once(plan, response, target, record, send)
    finally:
        await response.aclose()
    return 200, ""


async def assumed_role_credentials(state: ProxyState, target: Target) -> AwsCredentials | None:
    """Temporary credentials for an `assumed-role-based` Bedrock account (cached), else None."""
    if target.kind != "aws-bedrock" or target.auth_type != "assumed-role-based":
        return None
    try:
        return await state.sts.get(
            state.http,
            str(target.auth_public.get("assumed_role_arn", "")),
            str(target.auth_public.get("external_id", "")),
            target.region,
        )
    except StsError as exc:
        raise ProxyError(
            502,
            "The gateway could not assume the provider's AWS role.",
            code="upstream_auth_failed",
        ) from exc


async def respond_once(
    plan: plans.Plan, response: httpx.Response, target: Target, record: CallRecord, send: Send
) -> None:
    try:
        raw = await response.aread()
    except httpx.TimeoutException as exc:
        raise ProxyError(504, "The provider did not answer in time.", code="timeout") from exc
    except httpx.TransportError as exc:
        raise ProxyError(502, "The provider connection failed.", code="upstream_error") from exc
    out, usage = plan.convert_response(raw)
    record_usage(record, target, usage)
    record.first_byte()
    if record.log_bodies:
        record.values["response_body"] = out[:BODY_LOG_LIMIT].decode("utf-8", errors="replace")
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(out)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": out})


def record_usage(record: CallRecord, target: Target, usage: tuple[int, int]) -> None:
    record.values["input_tokens"], record.values["output_tokens"] = usage
    record.values["cost_usd"] = round(target.cost_usd(*usage), 8)


async def stream_out(
    plan: plans.Plan,
    response: httpx.Response,
    target: Target,
    record: CallRecord,
    receive: Receive,
    send: Send,
    dialect: Dialect,
) -> None:
    """Pump converted chunks to the caller; stop at once (closing the upstream) on disconnect.

    The caller's 200 goes out with the first converted bytes, not before: a provider that times
    out or breaks off before it produced anything is still answered with a proper error status
    in the caller's dialect. Once bytes have gone out, a failure ends the stream with the
    dialect's in-stream error event (never a clean-looking end), and is never retried.
    """
    converter = plan.stream_converter()
    logged: list[bytes] = []
    logged_size = 0
    started = False

    async def start() -> None:
        nonlocal started
        started = True
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})

    async def pump() -> None:
        nonlocal logged_size
        try:
            async for piece in _converted(response, converter):
                record.first_byte()
                if not started:
                    await start()
                if record.log_bodies and logged_size < BODY_LOG_LIMIT:
                    logged.append(piece)
                    logged_size += len(piece)
                await send({"type": "http.response.body", "body": piece, "more_body": True})
        except ProxyError as error:
            if not started:
                raise  # nothing sent yet: answered as a normal error response
            record.values["error_type"] = error.code or "upstream_error"
            event = stream_error_event(dialect, error)
            await send({"type": "http.response.body", "body": event, "more_body": True})
        if not started:
            await start()
        await send({"type": "http.response.body", "body": b""})

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    pump_task = asyncio.create_task(pump())
    watch_task = asyncio.create_task(disconnected())
    try:
        done, _ = await asyncio.wait({pump_task, watch_task}, return_when=asyncio.FIRST_COMPLETED)
        if pump_task in done:
            # Checked first: a caller that hangs up right after the last byte (both tasks done
            # in one wake-up) got the whole stream, and a provider failure keeps its own flag.
            pump_task.result()
        else:
            pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump_task
            record.values["error_type"] = "client_disconnected"
    finally:
        watch_task.cancel()
        record_usage(record, target, converter.usage())
        if record.log_bodies:
            record.values["response_body"] = b"".join(logged)[:BODY_LOG_LIMIT].decode(
                "utf-8", errors="replace"
            )


SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def stream_error_event(dialect: Dialect, error: ProxyError) -> bytes:
    """The dialect's in-stream error: Anthropic's `error` event, OpenAI's `data: {"error"}`."""
    body = json.dumps(error_body(dialect, error), separators=(",", ":")).encode()
    if dialect == "anthropic":
        return b"event: error\ndata: " + body + b"\n\n"
    return b"data: " + body + b"\n\n"


async def _converted(
    response: httpx.Response, converter: plans.StreamConverter
) -> AsyncIterator[bytes]:
    """Converted pieces, then the converter's tail; a provider failure is a ProxyError."""
    try:
        async for chunk in response.aiter_raw():
            out = converter.feed(chunk)
            if out:
                yield out
    except httpx.TimeoutException as exc:
        converter.failed = True
        raise ProxyError(504, "The provider did not answer in time.", code="timeout") from exc
    except httpx.TransportError as exc:
        converter.failed = True
        raise ProxyError(
            502, "The provider connection broke off mid-stream.", code="upstream_error"
        ) from exc
    tail = converter.finish()
    if tail:
        yield tail
