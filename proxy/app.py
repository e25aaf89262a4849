"""A lean ASGI application for the hot paths (`/api/llm/...`, `/mcp/...`).

Django's request machinery costs more CPU per request than the proxy's budget allows, so these
paths are routed here by `gateway_project.asgi` before Django sees them; they share Django's
settings, ORM (off the hot path) and the authorization module. The lifespan starts the
config-version watcher and the request-log writer, and stops them (flushing logs) on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx

from providers.aws_sts import StsCache
from proxy import db, stats
from proxy.auth import AuthCache, watch
from proxy.logprocess import new_log_sink
from proxy.routing import RoutingCache
from proxy.upstream import new_client

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Handler = Callable[["ProxyState", Scope, Receive, Send], Awaitable[None]]
SWITCH_INTERVAL_SECONDS = 0.0005
DEFAULT_SWITCH_INTERVAL = sys.getswitchinterval()
GC_THRESHOLDS = (10_000, 20, 100)
DEFAULT_GC_THRESHOLDS = gc.get_threshold()


class ProxyState:
    """Per-process state of the proxy: the auth cache and background tasks."""

    def __init__(self) -> None:
        self.auth = AuthCache()
        self.routing = RoutingCache()
        self.logs = new_log_sink()
        self.sts = StsCache()
        self.http: httpx.AsyncClient = new_client()
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.started = False

    async def start(self) -> None:
        """Start the background tasks once per process (lifespan, or the first request)."""
        if self.started:
            return
        self.started = True
        # Fresh caches bound to this event loop (a process may run several loops in tests).
        self.auth = AuthCache()
        self.routing = RoutingCache()
        self.logs = new_log_sink()
        self.sts = StsCache()
        self.stop = asyncio.Event()
        self.http = new_client()
        self.tasks = [
            asyncio.create_task(watch(self.auth, self.stop)),
            asyncio.create_task(self.logs.run(self.stop)),
            asyncio.create_task(stats.report(self.logs.queued, self.stop)),
        ]

    async def shutdown(self) -> None:
        """Stop the tasks; the log writer flushes what is queued before it returns."""
        self.stop.set()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=30)
        self.tasks.clear()
        await self.http.aclose()
        await asyncio.get_running_loop().run_in_executor(None, db.shutdown)
        self.started = False


async def send_json(
    send: Send, status: int, body: Any, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """One complete JSON response."""
    payload = json.dumps(body, separators=(",", ":")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def header(scope: Scope, name: bytes) -> str:
    """A request header's value (latin-1), or ''."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return ""


def bearer_token(scope: Scope) -> str:
    """`Authorization: Bearer <t>` or `x-api-key: <t>` (the Anthropic SDK's header)."""
    value = header(scope, b"authorization")
    scheme, _, token = value.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return header(scope, b"x-api-key").strip()


# Far above what clients send (browsers ~2 KiB, SDKs less); refused before any parsing.
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADERS = 200
_REFUSED_HEADERS = {
    "error": {"message": "Request headers are too large.", "type": "invalid_request_error"}
}
_REFUSED_BODY = {
    "error": {"message": "Request body is too large.", "type": "invalid_request_error"}
}


def headers_too_large(scope: Scope) -> bool:
    """More than MAX_HEADERS headers or MAX_HEADER_BYTES of them (431, RFC 6585 §5)."""
    headers = scope["headers"]
    if len(headers) > MAX_HEADERS:
        return True
    return sum(len(k) + len(v) for k, v in headers) > MAX_HEADER_BYTES


async def django_with_body_limit(
    django_app: Any, scope: Scope, receive: Receive, send: Send
) -> None:
    """Django with bodies bounded by DATA_UPLOAD_MAX_MEMORY_SIZE while they arrive: 413.

    Why: Django's ASGI handler spools the whole body (to disk past 2.5 MB) before it looks at
    the limit, and waits for all the bytes a Content-Length announces; an announced or
    streamed (chunked) body past the limit is answered here instead, at once.
    """
    from django.conf import settings

    limit: int | None = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if limit is None:
        await django_app(scope, receive, send)
        return
    declared = header(scope, b"content-length")
    if declared.isdigit() and int(declared) > limit:
        await send_json(send, 413, _REFUSED_BODY, [(b"connection", b"close")])
        return
    received, too_large, started = 0, False, False

    async def bounded_receive() -> Message:
        nonlocal received, too_large
        message = await receive()
        received += len(message.get("body", b""))
        if received > limit:
            too_large = True
            return {"type": "http.disconnect"}  # Django stops reading and answers nothing
        return message

    async def tracked_send(message: Message) -> None:
        nonlocal started
        started = started or message["type"] == "http.response.start"
        await send(message)

    await django_app(scope, bounded_receive, tracked_send)
    if too_large and not started:
        await send_json(send, 413, _REFUSED_BODY, [(b"connection", b"close")])


ROUTES: dict[str, Handler] = {}  # path prefix -> handler, filled by the proxy modules


def route(prefix: str) -> Callable[[Handler], Handler]:
    """Register a handler for every path under `prefix`."""

    def register(handler: Handler) -> Handler:
        ROUTES[prefix] = handler
        return handler

    return register


class GatewayApplication:
    """Routes proxy prefixes to their handlers and the rest to Django; runs the lifespan."""

    def __init__(self, django_app: Any) -> None:
        self.django_app = django_app
        self.state = ProxyState()
        self._prefixes: list[tuple[str, Handler]] = []

    def _handler_for(self, path: str) -> Handler | None:
        if not self._prefixes:
            from proxy import handlers  # noqa: F401 - registers the routes

            self._prefixes = sorted(ROUTES.items(), key=lambda item: -len(item[0]))
        for prefix, handler in self._prefixes:
            if path.startswith(prefix):
                return handler
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] == "http" and headers_too_large(scope):
            await send_json(send, 431, _REFUSED_HEADERS)
            return
        handler = self._handler_for(scope.get("path", "")) if scope["type"] == "http" else None
        if handler is None:
            if scope["type"] == "http":
                await django_with_body_limit(self.django_app, scope, receive, send)
            else:
                await self.django_app(scope, receive, send)
            return
        await self.state.start()
        await handler(self.state, scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.state.start()
                self._handler_for("")  # import the proxy modules now, before the freeze
                _freeze_startup_objects()
                # The event loop shares the GIL with the database threads (log batches,
                # reloads). A thread running Python keeps the GIL until the switch interval
                # (5 ms by default) when the loop asks for it: each log batch could stall
                # every call in flight by up to 5 ms. 0.5 ms bounds that stall; the cost, a
                # few more GIL hand-overs while a batch is written, is negligible.
                sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.state.shutdown()
                gc.unfreeze()  # back to the defaults (matters only to a process that goes on)
                gc.set_threshold(*DEFAULT_GC_THRESHOLDS)
                sys.setswitchinterval(DEFAULT_SWITCH_INTERVAL)
                await send({"type": "lifespan.shutdown.complete"})
                return


def _freeze_startup_objects() -> None:
    """Move everything alive after start-up out of the cyclic GC's reach, and collect less often.

    Why: with Django, the apps and the proxy loaded, a process holds ~170,000 GC-tracked
    objects, and every full (generation 2) collection walked them all: measured under the
    benchmark, 4 full collections in 8 s at up to 160 ms each, stopping the event loop and
    every call in flight (the p99 tail). These objects live as long as the process, so
    `gc.freeze()` takes them out of every collection. Then the thresholds: each queued
    log record outlives the young generations (it waits up to 0.2 s for its batch), so at a
    few thousand calls a second the default (700, 10, 10) still ran a full collection every
    few seconds and ~360 young ones per 10 s (~100 ms of CPU); with (10000, 20, 100): about
    ten young ones, none full, ~20 ms (measured at 16 connections). Cyclic garbage made later
    is still collected, just in larger, rarer passes.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
