"""A lean ASGI application for the hot paths (`/api/llm/...`, `/mcp/...`).

Django's request machinery costs more CPU per request than the proxy's budget allows, so these
paths are routed here by `gateway_project.asgi` before Django sees them; they share Django's
settings, ORM (off the hot path) and the authorization module. The lifespan starts the
config-version watcher and the request-log writer, and stops them (flushing logs) on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx

from proxy import db
from proxy.auth import AuthCache, watch
from proxy.logwriter import LogWriter
from proxy.routing import RoutingCache
from proxy.upstream import new_client

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Handler = Callable[["ProxyState", Scope, Receive, Send], Awaitable[None]]


class ProxyState:
    """Per-process state of the proxy: the auth cache and background tasks."""

    def __init__(self) -> None:
        self.auth = AuthCache()
        self.routing = RoutingCache()
        self.logs = LogWriter()
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
        self.logs = LogWriter()
        self.stop = asyncio.Event()
        self.http = new_client()
        self.tasks = [
            asyncio.create_task(watch(self.auth, self.stop)),
            asyncio.create_task(self.logs.run(self.stop)),
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
        handler = self._handler_for(scope.get("path", "")) if scope["type"] == "http" else None
        if handler is None:
            await self.django_app(scope, receive, send)
            return
        await self.state.start()
        await handler(self.state, scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.state.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.state.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return
