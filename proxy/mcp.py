"""The MCP gateway: `/mcp/v1/<name>/mcp` relays MCP's streamable HTTP transport to a server.

MCP 2025-03-26 and later, "Transports > Streamable HTTP": clients POST JSON-RPC messages and get
either one JSON body or an SSE stream back, may GET a server-to-client SSE stream and DELETE a
session; `Mcp-Session-Id` and `MCP-Protocol-Version` travel both ways. The relay authenticates
the caller with a gateway token, checks `mcp-server:UseMcpServer` on the server, swaps the
caller's credentials for the server's, applies the server's tool settings (hidden, renamed and
re-described tools) in both directions, and logs every `tools/call` off the request path.

Upstream session ids are handed to callers signed with the caller's subject, so on a server
reached with shared credentials one user cannot attach to another user's session.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import ssl
import time
import uuid
import weakref
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, close_old_connections
from django.utils import timezone

from accounts.policy import Permission, decide
from gateway_project.crypto import keyed_digest
from providers import oauth
from providers.mcp_protocol import (
    GATEWAY_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    PARSE_ERROR,
    SseEventTooLarge,
    SseSplitter,
    ToolPolicy,
    header_value_encode,
    rpc_error,
    sse_data,
    sse_data_replace,
    tools_result_apply,
)
from providers.models import McpServer
from providers.services import secret_values
from proxy.app import ProxyState, Receive, Scope, Send, bearer_token, route, send_json
from proxy.auth import AuthUnavailable, Grant
from teams.models import Team

logger = logging.getLogger(__name__)

PATH = re.compile(r"^/mcp/v1/(?P<name>[a-z][a-z0-9\-]{1,71}[a-z0-9])/mcp/?$")
MAX_BODY = 4 * 1024 * 1024
MAX_JSON_RESPONSE = 16 * 1024 * 1024
MAX_SSE_EVENT = 8 * 1024 * 1024
TIMEOUT = httpx.Timeout(connect=10.0, read=300.0, write=30.0, pool=10.0)
# A GET stream legitimately stays idle for long stretches; the client's disconnect ends it.
STREAM_TIMEOUT = httpx.Timeout(connect=10.0, read=None, write=30.0, pool=10.0)
OAUTH_TOKEN_TTL = 300.0  # seconds a user's upstream token is reused before asking the store

NOT_FOUND = rpc_error(None, GATEWAY_ERROR, "MCP server not found")
NOT_ALLOWED = rpc_error(None, GATEWAY_ERROR, "method not allowed")
UNAVAILABLE = rpc_error(None, GATEWAY_ERROR, "the gateway cannot check access right now; retry")
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Gateway credentials, the caller's cookies and network details never reach the server; the
# relay sets Host, Content-Length and an identity Accept-Encoding itself.
DROPPED_REQUEST_HEADERS = HOP_BY_HOP | {
    "host",
    "content-length",
    "accept-encoding",
    "authorization",
    "x-api-key",
    "cookie",
    "origin",
    "referer",
    "forwarded",
    "x-real-ip",
    "mcp-session-id",
}
# Only what MCP clients need comes back: no Set-Cookie, no WWW-Authenticate of the server.
RESPONSE_HEADERS = frozenset(
    {"content-type", "cache-control", "mcp-protocol-version", "retry-after", "allow"}
)
SESSION_HEADER = "mcp-session-id"


# --- server configuration --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """What the relay needs of one MCP server, decrypted once per config version."""

    id: int
    name: str
    url: str
    auth_type: str
    tools: ToolPolicy
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # secret values
    # `tls_settings`: (reject_unauthorized, ca_cert PEM); the default verifies against the
    # system's CAs like every other upstream call.
    tls: tuple[bool, str] = (True, "")


def _server_load(name: str) -> ServerConfig | None:
    """One server's configuration straight from the database (runs in a worker thread)."""
    close_old_connections()
    try:
        server = McpServer.objects.filter(name=name).first()
    except DatabaseError as exc:
        raise AuthUnavailable from exc
    if server is None:
        return None
    headers: tuple[tuple[str, str], ...] = ()
    if server.auth_type == McpServer.AuthType.HEADER:
        stored = secret_values(server).get("headers", {})
        headers = tuple((str(k), str(v)) for k, v in stored.items())
    return ServerConfig(
        server.pk,
        server.name,
        server.url,
        server.auth_type,
        ToolPolicy.from_settings(server.tool_settings or []),
        headers,
        (
            bool((server.tls_settings or {}).get("reject_unauthorized", True)),
            str((server.tls_settings or {}).get("ca_cert") or ""),
        ),
    )


class ServerConfigCache:
    """Server name -> configuration (or None for unknown), dropped when the config version moves."""

    def __init__(self, *, max_entries: int = 1024) -> None:
        self._entries: dict[str, ServerConfig | None] = {}
        self._max = max_entries
        self._version: int | None = None

    def sync_version(self, version: int | None) -> bool:
        """Drop everything when `version` differs from the one the entries were loaded under."""
        if version == self._version:
            return False
        self._entries.clear()
        self._version = version
        return True

    async def get(self, name: str, version: int | None) -> ServerConfig | None:
        """The configuration of `name`, loading it once per version."""
        self.sync_version(version)
        if name in self._entries:
            return self._entries[name]
        config = await sync_to_async(_server_load, thread_sensitive=False)(name)
        if self._version == version:  # not dropped while loading: safe to keep
            if len(self._entries) >= self._max:  # names are caller-chosen: stay bounded
                self._entries.clear()
            self._entries[name] = config
        return config


def _oauth_token_load(server_id: int, user_id: int) -> oauth.TokenSet | None:
    """A user's current upstream token (refreshed when due), or None (runs in a worker thread)."""
    close_old_connections()
    try:
        server = McpServer.objects.filter(pk=server_id).first()
        return oauth.access_token_for(server, user_id) if server is not None else None
    except oauth.OAuthNotReady:
        return None
    except DatabaseError as exc:
        raise AuthUnavailable from exc


class OAuthTokenCache:
    """(server id, user id) -> access token for `oauth2` servers, for a few minutes at most."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[int, int], tuple[str, float]] = {}

    def clear(self) -> None:
        self._tokens.clear()

    async def get(self, server_id: int, user_id: int) -> str | None:
        """The access token to send upstream, or None when the user has not connected."""
        key = (server_id, user_id)
        cached = self._tokens.get(key)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        tokens = await sync_to_async(_oauth_token_load, thread_sensitive=False)(*key)
        if tokens is None:
            self._tokens.pop(key, None)
            return None
        ttl = OAUTH_TOKEN_TTL
        if tokens.expires_at is not None:
            left = (tokens.expires_at - timezone.now() - oauth.REFRESH_MARGIN).total_seconds()
            ttl = max(0.0, min(ttl, left))
        self._tokens[key] = (tokens.access_token, time.monotonic() + ttl)
        return tokens.access_token


# --- per-process caches ---------------------------------------------------------------------


def _team_names_load() -> dict[int, str]:
    close_old_connections()
    try:
        return dict(Team.objects.values_list("id", "name"))
    except DatabaseError as exc:
        raise AuthUnavailable from exc


class McpCaches:
    """Per-process caches of the relay, all dropped when the config version moves."""

    def __init__(self) -> None:
        self.configs = ServerConfigCache()
        self.oauth_tokens = OAuthTokenCache()
        self.team_names: dict[int, str] = {}  # for the denormalised `teams` of log records
        self._teams_version: int | None = -1

    async def config(self, name: str, version: int | None) -> ServerConfig | None:
        """A server's configuration, loaded once per config version."""
        if self.configs.sync_version(version):
            self.oauth_tokens.clear()
        if self._teams_version != version:
            self.team_names = await sync_to_async(_team_names_load, thread_sensitive=False)()
            self._teams_version = version
        return await self.configs.get(name, version)


_CACHES: weakref.WeakKeyDictionary[ProxyState, McpCaches] = weakref.WeakKeyDictionary()


def caches_for(state: ProxyState) -> McpCaches:
    """The caches of one proxy state (one per process in production)."""
    caches = _CACHES.get(state)
    if caches is None:
        caches = _CACHES[state] = McpCaches()
    return caches


# --- sessions ----------------------------------------------------------------------------------


def _session_signature(upstream_id: str, server_id: int, subject: str) -> str:
    return keyed_digest(f"mcp-session|{server_id}|{subject}|{upstream_id}")[:32]


def session_wrap(upstream_id: str, server_id: int, subject: str) -> str:
    """The session id a caller sees: the server's, bound to the caller by a keyed signature."""
    return f"{upstream_id}.{_session_signature(upstream_id, server_id, subject)}"


def session_unwrap(client_id: str, server_id: int, subject: str) -> str | None:
    """The server's session id, or None when the id was not issued to this caller."""
    upstream_id, dot, signature = client_id.rpartition(".")
    expected = _session_signature(upstream_id, server_id, subject)
    if not dot or not hmac.compare_digest(signature, expected):
        return None
    return upstream_id


# --- one tools/call ----------------------------------------------------------------------------


@dataclass(slots=True)
class ToolCall:
    """One `tools/call` in flight; recorded exactly once."""

    rpc_id: Any
    called_as: str
    tool: str | None  # the server's name, or None when the call is refused
    started: float = field(default_factory=time.monotonic)
    started_at: datetime = field(default_factory=timezone.now)
    status: str = ""
    error: str = ""
    latency_ms: float = 0.0

    def settle(self, status: str, error: str = "") -> None:
        """Fix the outcome once; later observations cannot change it."""
        if not self.status:
            self.status, self.error = status, error[:300]
            self.latency_ms = round((time.monotonic() - self.started) * 1000, 3)

    def observe(self, message: Any) -> None:
        """Settle from the server's response to this call, when `message` is that response."""
        if self.status or not isinstance(message, dict) or "method" in message:
            return
        if "id" not in message or message["id"] != self.rpc_id:
            return
        error = message.get("error")
        result = message.get("result")
        if isinstance(error, dict):
            self.settle("error", f"JSON-RPC error {error.get('code')}")
        elif isinstance(result, dict) and result.get("isError") is True:
            self.settle("error", "the tool reported an error")
        else:
            self.settle("ok")


def tool_call_for(message: Any, policy: ToolPolicy) -> ToolCall | None:
    """The ToolCall of a `tools/call` request, or None for any other message."""
    if not isinstance(message, dict) or message.get("method") != "tools/call":
        return None
    params = message.get("params")
    name = params.get("name") if isinstance(params, dict) else None
    if not isinstance(name, str):
        return ToolCall(message.get("id"), str(name), None)
    return ToolCall(message.get("id"), name, policy.resolve(name))


def call_record(
    grant: Grant, server: str, call: ToolCall, team_names: Mapping[int, str]
) -> dict[str, Any]:
    """The McpToolCall row for `call`, as the proxy's log writer takes it."""
    principal = grant.principal
    caller_type, _, caller_name = principal.subject.partition(":")  # user:<email>
    team_ids = sorted(principal.member_team_ids)
    renamed = call.tool is not None and call.tool != call.called_as
    return {
        "id": uuid.uuid4(),  # fixed here, so a replayed spool cannot insert it twice
        "started_at": call.started_at,
        "caller_type": caller_type,
        "caller_id": principal.id,
        "caller_name": caller_name,
        "team_ids": "|" + "".join(f"{t}|" for t in team_ids),
        "teams": [team_names[t] for t in team_ids if t in team_names],
        "metadata": {"called_as": call.called_as} if renamed else {},
        "server": server,
        "tool": call.tool or call.called_as,
        "status": call.status,
        "error": call.error,
        "latency_ms": call.latency_ms,
    }


# --- the relay -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Exchange:
    """One client request and what the relay learned about it."""

    state: ProxyState
    scope: Scope
    receive: Receive
    send: Send
    grant: Grant
    token: str
    config: ServerConfig
    call: ToolCall | None
    body: bytes
    started: bool = False  # response headers sent
    completed: bool = False  # last body part sent

    async def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.started = True
        await self.send({"type": "http.response.start", "status": status, "headers": headers})

    async def body_part(self, body: bytes, *, more: bool) -> None:
        self.completed = not more
        await self.send({"type": "http.response.body", "body": body, "more_body": more})

    async def error(self, status: int, code: int, message: str) -> None:
        """A JSON-RPC error answer, when nothing has been sent yet."""
        if self.call is not None:
            self.call.settle("error", message)
        if not self.started:
            rpc_id = self.call.rpc_id if self.call is not None else None
            self.started = self.completed = True
            await send_json(self.send, status, rpc_error(rpc_id, code, message))

    def message_apply(self, message: Any) -> Any | None:
        """Observe one server message; the message as the client must see it, or None if same."""
        if self.call is not None:
            self.call.observe(message)
        return tools_result_apply(message, self.config.tools)


class ClientGone(Exception):
    """The client disconnected before its request was read."""


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None when it exceeds `limit`."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _credential_headers(ex: Exchange) -> list[tuple[str, str]] | None:
    """The server's credentials for this caller; None when an oauth2 user has not connected."""
    config = ex.config
    if config.auth_type == McpServer.AuthType.HEADER:
        return list(config.headers)
    if config.auth_type == McpServer.AuthType.PASSTHROUGH:
        return [("authorization", f"Bearer {ex.token}")]
    if config.auth_type == McpServer.AuthType.OAUTH2:
        token = await caches_for(ex.state).oauth_tokens.get(config.id, ex.grant.principal.id)
        return [("authorization", f"Bearer {token}")] if token else None
    return []


def _upstream_headers(
    ex: Exchange, credentials: list[tuple[str, str]], session: str | None
) -> list[tuple[str, str]]:
    """The caller's headers minus gateway credentials and hop-by-hop ones, plus the server's."""
    named_by_connection = {
        token.strip().lower()
        for key, value in ex.scope["headers"]
        if key == b"connection"
        for token in value.decode("latin-1").split(",")
    }
    replaced = {name.lower() for name, _ in credentials}
    headers: list[tuple[str, str]] = []
    for raw_key, raw_value in ex.scope["headers"]:
        key = raw_key.decode("latin-1").lower()
        if (
            key in DROPPED_REQUEST_HEADERS
            or key in named_by_connection
            or key in replaced
            or key.startswith("x-forwarded-")
        ):
            continue
        value = raw_value.decode("latin-1")
        if key == "mcp-name" and ex.call is not None and ex.call.tool is not None:
            value = header_value_encode(ex.call.tool)  # MCP 2026-07-28: mirrors params.name
        headers.append((key, value))
    headers.extend(credentials)
    if session is not None:
        headers.append((SESSION_HEADER, session))
    headers.append(("accept-encoding", "identity"))  # bodies are inspected: no compression
    return headers


def _response_headers(ex: Exchange, response: httpx.Response) -> list[tuple[bytes, bytes]]:
    headers = [
        (k.encode("latin-1"), v.encode("latin-1"))
        for k, v in response.headers.multi_items()
        if k.lower() in RESPONSE_HEADERS
    ]
    session = response.headers.get(SESSION_HEADER)
    if session:
        wrapped = session_wrap(session, ex.config.id, ex.grant.principal.subject)
        headers.append((SESSION_HEADER.encode(), wrapped.encode("latin-1")))
    return headers


def _content_type(response: httpx.Response) -> str:
    value: str = response.headers.get("content-type", "")
    return value.split(";")[0].strip().lower()


async def _relay_json(ex: Exchange, response: httpx.Response) -> None:
    """A JSON answer: read it whole (bounded), filter, and send it with its new length."""
    raw = bytearray()
    async for chunk in response.aiter_bytes():
        raw += chunk
        if len(raw) > MAX_JSON_RESPONSE:
            await ex.error(502, GATEWAY_ERROR, "the MCP server's answer is too large")
            return
    body = _json_apply(ex, bytes(raw))
    headers = [*_response_headers(ex, response), (b"content-length", str(len(body)).encode())]
    await ex.start(response.status_code, headers)
    await ex.body_part(body, more=False)


def _json_apply(ex: Exchange, raw: bytes) -> bytes:
    try:
        decoded = json.loads(raw)
    except ValueError:
        return raw
    messages = decoded if isinstance(decoded, list) else [decoded]
    shown = [ex.message_apply(m) for m in messages]
    if all(s is None for s in shown):
        return raw
    out = [m if s is None else s for m, s in zip(messages, shown, strict=True)]
    return json.dumps(out if isinstance(decoded, list) else out[0]).encode()


async def _relay_sse(ex: Exchange, response: httpx.Response) -> None:
    """An SSE stream: forward each event as soon as it is complete, filtered."""
    await ex.start(response.status_code, _response_headers(ex, response))
    splitter = SseSplitter(MAX_SSE_EVENT)
    try:
        async for chunk in response.aiter_bytes():
            for event in splitter.feed(chunk):
                await ex.body_part(_event_apply(ex, event), more=True)
    except SseEventTooLarge:
        logger.warning("mcp %s: SSE event over %s bytes; stream cut", ex.config.name, MAX_SSE_EVENT)
        if ex.call is not None:
            ex.call.settle("error", "stream cut: event too large")
    # An event cut off by the end of the stream is discarded, as clients must (HTML §9.2.6).
    await ex.body_part(b"", more=False)


def _event_apply(ex: Exchange, event: bytes) -> bytes:
    data = sse_data(event)
    if data is None:
        return event
    try:
        message = json.loads(data)
    except ValueError:
        return event
    shown = ex.message_apply(message)
    return event if shown is None else sse_data_replace(event, json.dumps(shown))


async def _relay_raw(ex: Exchange, response: httpx.Response) -> None:
    """Anything else (an empty 202, a text error): passed through as it comes."""
    await ex.start(response.status_code, _response_headers(ex, response))
    async for chunk in response.aiter_bytes():
        await ex.body_part(chunk, more=True)
    await ex.body_part(b"", more=False)


async def _relay_rejected(ex: Exchange, status: int) -> None:
    """The server refused the credentials the gateway sent.

    Its 401 and WWW-Authenticate would send MCP clients into the server's own OAuth flow,
    bypassing the gateway, so the caller gets a gateway error instead.
    """
    logger.info("mcp %s: upstream answered %s", ex.config.name, status)
    if ex.config.auth_type in (McpServer.AuthType.NONE, McpServer.AuthType.HEADER):
        await ex.error(502, GATEWAY_ERROR, "the MCP server rejected the gateway's credentials")
    else:
        await ex.error(403, GATEWAY_ERROR, "the MCP server rejected your credentials")


def _client_for(state: Any, tls: tuple[bool, str]) -> httpx.AsyncClient:
    """The shared client, or one per distinct `tls_settings` (a custom CA, or no checking)."""
    if tls == (True, ""):
        client: httpx.AsyncClient = state.http
        return client
    clients: dict[tuple[bool, str], httpx.AsyncClient] = state.__dict__.setdefault(
        "mcp_tls_clients", {}
    )
    if tls not in clients:
        reject, ca_pem = tls
        verify: ssl.SSLContext | bool = False
        if reject:
            verify = ssl.create_default_context(cadata=ca_pem or None)
        clients[tls] = httpx.AsyncClient(verify=verify, follow_redirects=False, trust_env=False)
    return clients[tls]


async def _forward(ex: Exchange, session: str | None) -> None:
    """Send the request upstream and relay the answer."""
    try:
        credentials = await _credential_headers(ex)
    except AuthUnavailable:
        await ex.error(503, GATEWAY_ERROR, "the gateway cannot reach its database; retry")
        return
    if credentials is None:
        link = f"{settings.GATEWAY_PUBLIC_URL}/mcp/oauth/{ex.config.name}/connect"
        message = f"connect your account to '{ex.config.name}' first: {link}"
        await ex.error(403, GATEWAY_ERROR, message)
        return
    client = _client_for(ex.state, ex.config.tls)
    method = ex.scope["method"]
    request = client.build_request(
        method,
        ex.config.url,
        headers=_upstream_headers(ex, credentials, session),
        content=ex.body if method == "POST" else None,
        timeout=STREAM_TIMEOUT if method == "GET" else TIMEOUT,
    )
    try:
        response = await client.send(request, stream=True)
    except httpx.TimeoutException:
        await ex.error(504, GATEWAY_ERROR, "the MCP server did not answer in time")
        return
    except httpx.HTTPError as exc:
        logger.info("mcp %s: upstream unreachable: %s", ex.config.name, type(exc).__name__)
        await ex.error(502, GATEWAY_ERROR, "the MCP server could not be reached")
        return
    try:
        await _relay(ex, response)
    except httpx.HTTPError as exc:
        logger.info("mcp %s: upstream stream failed: %s", ex.config.name, type(exc).__name__)
        await ex.error(502, GATEWAY_ERROR, "the MCP server's answer broke off")
        if ex.started and not ex.completed:
            await ex.body_part(b"", more=False)
    finally:
        await response.aclose()


async def _relay(ex: Exchange, response: httpx.Response) -> None:
    if response.status_code in (401, 403):
        await _relay_rejected(ex, response.status_code)
        return
    kind = _content_type(response)
    if kind == "application/json":
        await _relay_json(ex, response)
    elif kind == "text/event-stream":
        await _relay_sse(ex, response)
    else:
        await _relay_raw(ex, response)
    if ex.call is not None and response.status_code >= 400:
        ex.call.settle("error", f"HTTP {response.status_code}")


async def _client_gone(ex: Exchange) -> None:
    """Return when the client disconnects before the whole response was sent."""
    while True:
        message = await ex.receive()
        if message["type"] == "http.disconnect":
            if not ex.completed:
                return
            await asyncio.Event().wait()  # our own end of response: wait to be cancelled


async def _until_disconnect(ex: Exchange, work: Coroutine[Any, Any, None]) -> None:
    """Run `work`; cancel it (closing the upstream request) if the client goes away."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_client_gone(ex))
    try:
        done, _ = await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, gone):
            pending.cancel()
        await asyncio.gather(task, gone, return_exceptions=True)
    if task in done:
        task.result()
    elif ex.call is not None:
        ex.call.settle("error", "client disconnected")


# --- the endpoint ------------------------------------------------------------------------------


async def _authenticate(scope: Scope, send: Send, state: ProxyState) -> tuple[Grant, str] | None:
    """The caller's grant and raw token, or None after answering 401 or 503."""
    token = bearer_token(scope)
    try:
        grant = await state.auth.authenticate(token) if token else None
    except AuthUnavailable:
        await send_json(send, 503, UNAVAILABLE)
        return None
    if grant is None:
        await send_json(
            send,
            401,
            rpc_error(None, GATEWAY_ERROR, "a valid gateway token is required"),
            [(b"www-authenticate", b"Bearer")],
        )
        return None
    return grant, token


def _parse(body: bytes) -> tuple[dict[str, Any] | None, tuple[int, dict[str, Any]] | None]:
    """(message, None), or (None, (status, JSON-RPC error)) for bodies the relay refuses."""
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested past the C stack limit
        return None, (400, rpc_error(None, PARSE_ERROR, "the body is not valid JSON"))
    if isinstance(message, list):
        # JSON-RPC batches were dropped in MCP 2025-06-18; refusing them keeps a disabled tool
        # from hiding inside one.
        return None, (400, rpc_error(None, INVALID_REQUEST, "JSON-RPC batches are not supported"))
    if not isinstance(message, dict):
        return None, (400, rpc_error(None, INVALID_REQUEST, "expected a JSON-RPC object"))
    return message, None


def _renamed_body(message: dict[str, Any] | None, call: ToolCall | None, body: bytes) -> bytes:
    """The body to forward: `params.name` swapped back to the server's name when renamed."""
    if message is None or call is None or call.tool is None or call.tool == call.called_as:
        return body
    return json.dumps({**message, "params": {**message["params"], "name": call.tool}}).encode()


@dataclass(frozen=True, slots=True)
class Accepted:
    """A well-formed request from an authenticated caller, not yet matched to a server."""

    name: str
    grant: Grant
    token: str
    body: bytes
    message: dict[str, Any] | None  # the JSON-RPC message of a POST


async def _accept(state: ProxyState, scope: Scope, receive: Receive, send: Send) -> Accepted | None:
    """Check path, method, token and body; None after answering the caller."""
    match = PATH.match(scope.get("path", ""))
    if match is None:
        await send_json(send, 404, NOT_FOUND)
        return None
    if scope["method"] not in ("GET", "POST", "DELETE"):
        await send_json(send, 405, NOT_ALLOWED, [(b"allow", b"GET, POST, DELETE")])
        return None
    authenticated = await _authenticate(scope, send, state)
    if authenticated is None:
        return None
    try:
        body = await _read_body(receive, MAX_BODY)
    except ClientGone:
        return None
    if body is None:
        await send_json(send, 413, rpc_error(None, GATEWAY_ERROR, "the body exceeds 4 MiB"))
        return None
    message, refusal = _parse(body) if scope["method"] == "POST" else (None, None)
    if refusal is not None:
        await send_json(send, *refusal)
        return None
    return Accepted(match["name"], *authenticated, body, message)


@route("/mcp/v1/")
async def mcp_endpoint(state: ProxyState, scope: Scope, receive: Receive, send: Send) -> None:
    """Relay one streamable-HTTP request to the MCP server named in the path."""
    request = await _accept(state, scope, receive, send)
    if request is None:
        return
    try:
        config = await caches_for(state).config(request.name, state.auth.version)
    except AuthUnavailable:
        await send_json(send, 503, UNAVAILABLE)
        return
    call = tool_call_for(request.message, config.tools) if config is not None else None
    try:
        if config is None or not _may_use(request.grant, config):
            if call is not None:
                call.settle("denied", "no access to the MCP server")
            await send_json(send, 404, NOT_FOUND)  # unknown and forbidden look the same
            return
        body = _renamed_body(request.message, call, request.body)
        ex = Exchange(state, scope, receive, send, request.grant, request.token, config, call, body)
        await _serve(ex)
    finally:
        if call is not None and config is not None:
            call.settle("error", "no response from the MCP server")
            names = caches_for(state).team_names
            state.logs.enqueue("mcp", call_record(request.grant, config.name, call, names))


def _may_use(grant: Grant, config: ServerConfig) -> bool:
    resource = ("mcp-server", config.id)
    return decide(grant.principal, Permission.MCP_SERVER_USE, resource=resource).allowed


async def _serve(ex: Exchange) -> None:
    """Refuse a disabled tool or a session that is not the caller's; else forward."""
    if ex.call is not None and ex.call.tool is None:
        ex.call.settle("denied", "tool disabled")
        message = f"tool '{ex.call.called_as}' is disabled"
        await send_json(ex.send, 200, rpc_error(ex.call.rpc_id, INVALID_PARAMS, message))
        return
    offered = next((v for k, v in ex.scope["headers"] if k == SESSION_HEADER.encode()), None)
    session = None
    if offered is not None:
        subject = ex.grant.principal.subject
        session = session_unwrap(offered.decode("latin-1"), ex.config.id, subject)
        if session is None:  # not issued to this caller: unknown to them (404, as the spec says)
            await ex.error(404, GATEWAY_ERROR, "session not found")
            return
    await _until_disconnect(ex, _forward(ex, session))
