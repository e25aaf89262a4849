"""The MCP gateway end to end: a real MCP server and the gateway's ASGI app, both on uvicorn.

The upstream is an `mcp` SDK server on 127.0.0.1 behind a recorder that keeps every request it
receives; clients are the SDK's streamable HTTP client and plain httpx.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import httpx2
import pytest
import uvicorn
from django.apps import apps as django_apps
from django.conf import settings
from django.urls import include, path
from django.utils import timezone
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.exceptions import MCPError

from accounts.policy import Principal
from gateway_project import asgi
from gateway_project import urls as project_urls
from providers import mcp_client, oauth, oauth_urls
from providers import urls as provider_urls
from providers.mcp_protocol import SseSplitter, ToolPolicy, sse_data, sse_data_replace
from providers.models import McpServer
from providers.services import CollaboratorSpec, McpServerSpec, mcp_server_put
from proxy.app import GatewayApplication
from proxy.models import McpToolCall
from teams.models import Team, TeamMembership
from tests import factories

CANARY = "canary-upstream-key-5d1e9f"
TOOL_SETTINGS: list[dict[str, Any]] = [
    {"name": "delete_everything", "disabled": True},
    {"name": "echo", "rename": "say", "description": "Repeat text back"},
]
NOT_FOUND = {
    "jsonrpc": "2.0",
    "id": None,
    "error": {"code": -32001, "message": "MCP server not found"},
}
ACCEPT = "application/json, text/event-stream"
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}


# --- servers ---------------------------------------------------------------------------------


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a thread on a free loopback port; yield its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound here, so parallel workers never race for a port
    config = uvicorn.Config(
        app, lifespan="on", log_config=None, log_level="warning", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped while starting"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@dataclass
class Seen:
    """One request the upstream received."""

    method: str
    headers: dict[str, str]
    chunks: list[bytes] = field(default_factory=list)

    @property
    def message(self) -> dict[str, Any]:
        body = b"".join(self.chunks)
        return json.loads(body) if body else {}


class Recorder:
    """ASGI middleware keeping every request, and counting GET streams still open."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[Seen] = []
        self.open_streams = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        entry = Seen(scope["method"], {k.decode(): v.decode() for k, v in scope["headers"]})
        self.seen.append(entry)

        async def tapped() -> Any:
            message = await receive()
            entry.chunks.append(message.get("body", b""))
            return message

        self.open_streams += scope["method"] == "GET"
        try:
            await self.app(scope, tapped, send)
        finally:
            self.open_streams -= scope["method"] == "GET"

    def tool_calls(self) -> list[Seen]:
        return [
            s for s in self.seen if s.method == "POST" and s.message.get("method") == "tools/call"
        ]


def upstream_app() -> Recorder:
    server = MCPServer("upstream")

    @server.tool(description="Add two integers")
    def add(a: int, b: int) -> int:
        return a + b

    @server.tool(description="Echo text")
    def echo(text: str) -> str:
        return text

    @server.tool(description="Delete everything")
    def delete_everything() -> str:
        return "deleted"

    @server.tool(description="Needs the key the gateway injects")
    def private_report(ctx: Context) -> str:
        if (ctx.headers or {}).get("x-upstream-key") != CANARY:
            raise ValueError("missing key")
        return "report for gateway"

    return Recorder(server.streamable_http_app())


@pytest.fixture(scope="module")
def upstream_server() -> Iterator[tuple[str, Recorder]]:
    recorder = upstream_app()
    with serving(recorder) as url:
        yield f"{url}/mcp", recorder


@pytest.fixture
def upstream(upstream_server: tuple[str, Recorder]) -> tuple[str, Recorder]:
    recorder = upstream_server[1]
    recorder.seen.clear()
    return upstream_server


@pytest.fixture
def builtin_roles(transactional_db: None) -> None:
    """Transactional tests flush the tables, built-in roles included: seed them again."""
    seed = importlib.import_module("accounts.migrations.0003_builtin_roles")
    seed.create_roles(django_apps, None)


@pytest.fixture
def gateway(builtin_roles: None) -> Iterator[str]:
    """The gateway's ASGI app, fresh per test (its caches must not outlive the test's data)."""
    with serving(GatewayApplication(asgi.django_application)) as url:
        yield url
    gc.collect()  # finalises the database connections of the server's finished threads


@dataclass
class World:
    upstream_url: str
    recorder: Recorder
    gateway: str
    alice: Any
    alice_token: str
    team_id: int
    outsider_token: str

    def endpoint(self, name: str = "demo") -> str:
        return f"{self.gateway}/mcp/v1/{name}/mcp"


def server_put(name: str, url: str, **overrides: Any) -> McpServer:
    spec = {
        "name": name,
        "description": "Demo tools",
        "url": url,
        "auth_type": "header",
        "auth_secret": {"headers": {"X-Upstream-Key": CANARY}},
        "tool_settings": TOOL_SETTINGS,
        "collaborators": [CollaboratorSpec("team:ml", "mcp-server-user")],
        **overrides,
    }
    server, _ = mcp_server_put(actor=Principal.system(), spec=McpServerSpec(**spec))
    return server


@pytest.fixture
def world(upstream: tuple[str, Recorder], gateway: str) -> World:
    team = factories.TeamFactory(name="ml")
    alice = factories.UserFactory(email="alice@example.com")
    TeamMembership.objects.create(team=team, user=alice, role="member")
    server_put("demo", upstream[0])
    return World(
        upstream[0],
        upstream[1],
        gateway,
        alice,
        factories.pat_for(alice),
        team.pk,
        factories.pat_for(factories.UserFactory()),
    )


# --- clients ---------------------------------------------------------------------------------


def run_client(url: str, token: str, mode: str, work: Callable[[Client], Any]) -> Any:
    """Run `work(client)` with the SDK's streamable HTTP client, within 30 seconds."""

    async def main() -> Any:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=10)
        async with http, Client(streamable_http_client(url, http_client=http), mode=mode) as c:
            return await work(c)

    return asyncio.run(asyncio.wait_for(main(), timeout=30))


def tools_list(rpc_id: int) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rpc_id, "method": "tools/list"}


def sse_messages(body: bytes) -> list[Any]:
    splitter = SseSplitter(1 << 20)
    events = splitter.feed(body)
    return [json.loads(d) for d in map(sse_data, events) if d is not None]


def rpc(url: str, token: str, message: Any, session: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", "Accept": ACCEPT}
    if session:
        headers |= {"Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-06-18"}
    return httpx.post(url, json=message, headers=headers, timeout=10)


def wait_for(check: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# --- the relay -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_tools_list_hides_disabled_and_renames(world: World, mode: str) -> None:
    async def work(client: Client) -> Any:
        return (await client.list_tools()).tools

    tools = run_client(world.endpoint(), world.alice_token, mode, work)

    shown = {t.name: t.description for t in tools}
    assert shown == {
        "add": "Add two integers",
        "say": "Repeat text back",
        "private_report": "Needs the key the gateway injects",
    }


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_tool_call_reaches_server_with_injected_header_and_is_logged(
    world: World, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    async def work(client: Client) -> Any:
        return (
            await client.call_tool("private_report", {}),
            await client.call_tool("say", {"text": "hello"}),
            await client.call_tool("add", {"a": 2, "b": 3}),
        )

    report, said, added = run_client(world.endpoint(), world.alice_token, mode, work)

    assert [report.is_error, report.content[0].text] == [False, "report for gateway"]
    assert [said.is_error, said.content[0].text] == [False, "hello"]
    assert added.structured_content == {"result": 5}
    calls = world.recorder.tool_calls()
    assert [c.message["params"]["name"] for c in calls] == ["private_report", "echo", "add"]
    assert {c.headers["x-upstream-key"] for c in calls} == {CANARY}
    assert all("authorization" not in s.headers for s in world.recorder.seen)
    if mode == "auto":  # MCP 2026-07-28 mirrors the name into Mcp-Name: rewritten with the body
        assert [c.headers["mcp-name"] for c in calls] == ["private_report", "echo", "add"]
    wait_for(lambda: McpToolCall.objects.count() == 3, "three tool-call records")
    rows = McpToolCall.objects.order_by("started_at")
    assert [(r.tool, r.status, r.error, r.metadata) for r in rows] == [
        ("private_report", "ok", "", {}),
        ("echo", "ok", "", {"called_as": "say"}),
        ("add", "ok", "", {}),
    ]
    first = rows[0]
    assert (first.caller_type, first.caller_id, first.caller_name) == (
        "user",
        world.alice.pk,
        "alice@example.com",
    )
    assert (first.team_ids, first.teams, first.server) == (f"|{world.team_id}|", ["ml"], "demo")
    assert all(r.latency_ms > 0 for r in rows)
    assert CANARY not in caplog.text


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_disabled_and_pre_rename_names_are_refused_without_calling_the_server(
    world: World, mode: str
) -> None:
    async def work(client: Client) -> list[tuple[int, str]]:
        refused = []
        for name in ("delete_everything", "echo"):
            with pytest.raises(MCPError) as caught:
                await client.call_tool(name, {"text": "x"})
            refused.append((caught.value.code, caught.value.message))
        return refused

    refused = run_client(world.endpoint(), world.alice_token, mode, work)

    assert refused == [
        (-32602, "tool 'delete_everything' is disabled"),
        (-32602, "tool 'echo' is disabled"),
    ]
    assert world.recorder.tool_calls() == []
    wait_for(lambda: McpToolCall.objects.count() == 2, "two denied records")
    assert sorted(McpToolCall.objects.values_list("tool", "status", "error")) == [
        ("delete_everything", "denied", "tool disabled"),
        ("echo", "denied", "tool disabled"),
    ]


def test_user_without_grant_gets_the_same_404_as_an_unknown_server(world: World) -> None:
    hidden = rpc(world.endpoint(), world.outsider_token, INIT)
    unknown = rpc(world.endpoint("no-such-server"), world.alice_token, INIT)
    malformed = rpc(f"{world.gateway}/mcp/v1/demo/other", world.alice_token, INIT)

    assert [hidden.status_code, unknown.status_code, malformed.status_code] == [404, 404, 404]
    assert hidden.json() == unknown.json() == malformed.json() == NOT_FOUND
    assert world.recorder.seen == []


def test_denied_tool_call_of_user_without_grant_is_logged(world: World) -> None:
    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "add"}}

    response = rpc(world.endpoint(), world.outsider_token, call)

    assert response.status_code == 404
    wait_for(lambda: McpToolCall.objects.exists(), "the denied record")
    row = McpToolCall.objects.get()
    assert (row.tool, row.status, row.error) == ("add", "denied", "no access to the MCP server")
    assert world.recorder.seen == []


@pytest.mark.parametrize("authorization", ["", "Bearer not-a-token", "Basic abc"])
def test_missing_or_invalid_token_gets_401(world: World, authorization: str) -> None:
    headers = {"Accept": ACCEPT, **({"Authorization": authorization} if authorization else {})}

    response = httpx.post(world.endpoint(), json=INIT, headers=headers, timeout=10)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["message"] == "a valid gateway token is required"
    assert world.recorder.seen == []


def test_passthrough_forwards_the_callers_gateway_token(world: World) -> None:
    server_put("demo-pass", world.upstream_url, auth_type="passthrough", auth_secret={})

    async def work(client: Client) -> Any:
        return await client.call_tool("add", {"a": 1, "b": 1})

    result = run_client(world.endpoint("demo-pass"), world.alice_token, "legacy", work)

    assert result.structured_content == {"result": 2}
    assert {s.headers.get("authorization") for s in world.recorder.seen} == {
        f"Bearer {world.alice_token}"
    }
    assert all("x-upstream-key" not in s.headers for s in world.recorder.seen)


def test_raw_exchange_carries_no_secret_and_binds_the_session_to_its_user(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bob = factories.UserFactory(email="bob@example.com")
    TeamMembership.objects.create(team_id=world.team_id, user=bob, role="member")
    bob_token = factories.pat_for(bob)

    init = rpc(world.endpoint(), world.alice_token, INIT)
    session = init.headers["mcp-session-id"]
    listed = rpc(world.endpoint(), world.alice_token, tools_list(2), session)
    stolen = rpc(world.endpoint(), bob_token, tools_list(3), session)

    assert init.status_code == 200
    assert init.headers["content-type"] == "text/event-stream"
    assert "set-cookie" not in init.headers
    upstream_session = world.recorder.seen[0]
    assert session != upstream_session.headers.get("mcp-session-id")  # signed for alice
    assert listed.status_code == 200
    names = [t["name"] for t in sse_messages(listed.content)[0]["result"]["tools"]]
    assert names == ["add", "say", "private_report"]
    assert stolen.status_code == 404
    assert stolen.json()["error"]["message"] == "session not found"
    for response in (init, listed, stolen):
        assert CANARY not in response.text
        assert CANARY not in str(response.headers)
    assert CANARY not in caplog.text


def test_batches_and_oversized_bodies_are_refused(world: World) -> None:
    batch = rpc(world.endpoint(), world.alice_token, [INIT])
    big = httpx.post(
        world.endpoint(),
        content=b"x" * (4 * 1024 * 1024 + 1),
        headers={"Authorization": f"Bearer {world.alice_token}", "Accept": ACCEPT},
        timeout=10,
    )

    assert batch.status_code == 400
    assert batch.json()["error"] == {
        "code": -32600,
        "message": "JSON-RPC batches are not supported",
    }
    assert big.status_code == 413
    assert world.recorder.seen == []


def test_get_stream_is_closed_upstream_when_the_client_leaves(world: World) -> None:
    init = rpc(world.endpoint(), world.alice_token, INIT)
    session = init.headers["mcp-session-id"]
    headers = {
        "Authorization": f"Bearer {world.alice_token}",
        "Accept": "text/event-stream",
        "Mcp-Session-Id": session,
        "MCP-Protocol-Version": "2025-06-18",
    }

    with httpx.stream("GET", world.endpoint(), headers=headers, timeout=10) as stream:
        assert stream.status_code == 200
        wait_for(lambda: world.recorder.open_streams == 1, "the upstream GET stream")

    wait_for(lambda: world.recorder.open_streams == 0, "the upstream stream to close")


# --- the console client ------------------------------------------------------------------------


def test_mcp_server_tools_lists_the_raw_tools_with_the_servers_credentials(
    world: World,
) -> None:
    server = McpServer.objects.get(name="demo")

    tools = mcp_client.mcp_server_tools(server)

    assert [t["name"] for t in tools] == ["add", "echo", "delete_everything", "private_report"]
    assert tools[0]["inputSchema"]["required"] == ["a", "b"]
    assert {s.headers.get("x-upstream-key") for s in world.recorder.seen} == {CANARY}
    assert world.recorder.seen[-1].method == "DELETE"


def test_mcp_server_tools_fails_with_a_safe_message(db: None) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
    server = server_put("gone", closed, collaborators=[])

    with pytest.raises(mcp_client.McpUnreachable) as caught:
        mcp_client.mcp_server_tools(server)

    assert caught.value.message == "the MCP server could not be reached"
    assert CANARY not in str(caught.value)


def test_mcp_server_tools_refuses_passthrough_without_a_user_token(db: None) -> None:
    server = server_put(
        "pass", "http://127.0.0.1:9/mcp", auth_type="passthrough", auth_secret={}, collaborators=[]
    )

    with pytest.raises(mcp_client.McpUnreachable, match="each user's own credentials"):
        mcp_client.mcp_server_tools(server)


# --- pure pieces -----------------------------------------------------------------------------


def test_tool_policy_resolves_visible_names_only() -> None:
    policy = ToolPolicy.from_settings(
        [*TOOL_SETTINGS, {"name": "grep", "rename": "add"}, {"name": "x", "rename": "y"}]
    )

    assert [policy.resolve(n) for n in ("say", "echo", "delete_everything", "add", "y", "z")] == [
        "echo",
        None,
        None,
        "grep",
        "x",
        "z",
    ]
    tools = [{"name": n, "description": "d"} for n in ("add", "echo", "grep", "delete_everything")]
    assert policy.tools_apply(tools) == [
        {"name": "say", "description": "Repeat text back"},
        {"name": "add", "description": "d"},
    ]


def test_sse_splitter_handles_every_line_ending_and_split_chunks() -> None:
    stream = b'event: message\r\ndata: {"a":1}\r\n\r\ndata: {"b":\ndata: 2}\n\n: ping\r\rdata: 3\r'
    splitter = SseSplitter(1024)

    events = [e for i in range(len(stream)) for e in splitter.feed(stream[i : i + 1])]

    assert [sse_data(e) for e in events] == ['{"a":1}', '{"b":\n2}', None]
    assert splitter.rest() == b"data: 3\r"
    assert sse_data_replace(events[0], '{"c":3}') == b'event: message\ndata: {"c":3}\n\n'


# --- OAuth 2.0 per user --------------------------------------------------------------------------


# The project's routes with the OAuth routes added to the providers namespace, as wired later.
urlpatterns = [
    path("", include((provider_urls.urlpatterns + oauth_urls.urlpatterns, "providers"))),
    *(p for p in project_urls.urlpatterns if getattr(p, "namespace", None) != "providers"),
]


class FakeTokenEndpoint(BaseHTTPRequestHandler):
    """An authorization server's token endpoint: records forms, answers with fresh tokens."""

    forms: list[dict[str, str]] = []  # noqa: RUF012 - shared with the test by design

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        self.forms.append(form)
        n = len(self.forms)
        body = {"access_token": f"at-{n}", "token_type": "Bearer", "expires_in": 3600}
        if form["grant_type"] == "authorization_code":
            body["refresh_token"] = "rt-1"
        payload = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def token_endpoint() -> Iterator[str]:
    FakeTokenEndpoint.forms = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeTokenEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/token"
    server.shutdown()


@pytest.fixture
def token_store(monkeypatch: pytest.MonkeyPatch) -> dict[tuple[int, int], oauth.TokenSet]:
    """Stands in for the McpUserToken model behind the storage seam."""
    store: dict[tuple[int, int], oauth.TokenSet] = {}

    def save(*, server_id: int, user_id: int, tokens: oauth.TokenSet) -> None:
        store[(server_id, user_id)] = tokens

    def get(*, server_id: int, user_id: int) -> oauth.TokenSet | None:
        return store.get((server_id, user_id))

    monkeypatch.setattr(oauth, "user_token_save", save)
    monkeypatch.setattr(oauth, "user_token_get", get)
    return store


@pytest.fixture
def oauth_server(db: None, token_endpoint: str, settings: Any) -> McpServer:
    settings.GATEWAY_PUBLIC_URL = "https://gw.example.com"
    factories.TeamFactory(name="ml")
    return server_put(
        "oauth-demo",
        "https://mcp.example.com/mcp",
        auth_type="oauth2",
        auth_public={
            "authorization_url": "https://auth.example.com/authorize",
            "token_url": token_endpoint,
            "client_id": "gateway-client",
            "scopes": ["read", "write"],
        },
        auth_secret={"client_secret": "client-secret-2b7c"},
    )


def member_of_ml() -> Any:
    user = factories.UserFactory()
    TeamMembership.objects.create(team=Team.objects.get(name="ml"), user=user, role="member")
    return user


@pytest.mark.urls(__name__)
def test_oauth_connect_then_callback_stores_the_users_tokens(
    oauth_server: McpServer, token_store: dict[Any, Any], client: Any
) -> None:
    user = member_of_ml()
    client.force_login(user)

    connect = client.get("/mcp/oauth/oauth-demo/connect")
    target = urlsplit(connect["Location"])
    query = {k: v[0] for k, v in parse_qs(target.query).items()}
    done = client.get("/mcp/oauth/callback", {"code": "the-code", "state": query["state"]})
    replay = client.get("/mcp/oauth/callback", {"code": "the-code", "state": query["state"]})

    assert connect.status_code == 302
    assert f"{target.scheme}://{target.netloc}{target.path}" == "https://auth.example.com/authorize"
    assert query["response_type"] == "code"
    assert query["client_id"] == "gateway-client"
    assert query["redirect_uri"] == "https://gw.example.com/mcp/oauth/callback"
    assert query["code_challenge_method"] == "S256"
    assert query["scope"] == "read write"
    assert query["resource"] == "https://mcp.example.com/mcp"
    form = FakeTokenEndpoint.forms[0]
    verifier = form.pop("code_verifier")
    assert oauth.pkce_challenge(verifier) == query["code_challenge"]
    assert form == {
        "grant_type": "authorization_code",
        "code": "the-code",
        "redirect_uri": "https://gw.example.com/mcp/oauth/callback",
        "client_id": "gateway-client",
        "client_secret": "client-secret-2b7c",
        "resource": "https://mcp.example.com/mcp",
    }
    assert done.status_code == 302
    assert done["Location"] == "/"
    stored = token_store[(oauth_server.pk, user.pk)]
    assert (stored.access_token, stored.refresh_token) == ("at-1", "rt-1")
    assert replay.status_code == 400  # the state is single-use
    assert len(FakeTokenEndpoint.forms) == 1


@pytest.mark.urls(__name__)
def test_oauth_connect_is_404_for_users_without_the_grant(
    oauth_server: McpServer, token_store: dict[Any, Any], client: Any
) -> None:
    client.force_login(factories.UserFactory())

    response = client.get("/mcp/oauth/oauth-demo/connect")

    assert response.status_code == 404
    assert token_store == {}


def test_oauth2_server_is_called_with_the_users_own_token(
    world: World, token_store: dict[Any, Any], token_endpoint: str
) -> None:
    server = server_put(
        "demo-oauth",
        world.upstream_url,
        auth_type="oauth2",
        auth_public={
            "authorization_url": "https://auth.example.com/a",
            "token_url": token_endpoint,
        },
        auth_secret={},
    )
    later = timezone.now() + timedelta(hours=1)
    token_store[(server.pk, world.alice.pk)] = oauth.TokenSet("alice-upstream-token", "", later)

    async def work(client: Client) -> Any:
        return await client.call_tool("add", {"a": 2, "b": 2})

    result = run_client(world.endpoint("demo-oauth"), world.alice_token, "legacy", work)
    bob = factories.UserFactory()
    TeamMembership.objects.create(team_id=world.team_id, user=bob, role="member")
    unconnected = rpc(world.endpoint("demo-oauth"), factories.pat_for(bob), INIT)

    assert result.structured_content == {"result": 4}
    assert {s.headers.get("authorization") for s in world.recorder.seen} == {
        "Bearer alice-upstream-token"
    }
    assert unconnected.status_code == 403
    assert unconnected.json()["error"]["message"] == (
        "connect your account to 'demo-oauth' first: "
        f"{settings.GATEWAY_PUBLIC_URL}/mcp/oauth/demo-oauth/connect"
    )


def test_access_token_is_refreshed_when_about_to_expire(
    oauth_server: McpServer, token_store: dict[Any, Any]
) -> None:
    user = member_of_ml()
    soon = timezone.now() + timedelta(seconds=10)
    token_store[(oauth_server.pk, user.pk)] = oauth.TokenSet("old", "rt-1", soon)

    tokens = oauth.access_token_for(oauth_server, user.pk)

    assert tokens is not None
    assert (tokens.access_token, tokens.refresh_token) == ("at-1", "rt-1")
    assert FakeTokenEndpoint.forms[0]["grant_type"] == "refresh_token"
    assert FakeTokenEndpoint.forms[0]["refresh_token"] == "rt-1"
    assert token_store[(oauth_server.pk, user.pk)] == tokens


# --- tls_settings ----------------------------------------------------------------------------


@contextmanager
def serving_tls(app: Any, cert: Path, key: Path) -> Iterator[str]:
    """Like `serving`, over HTTPS with the given self-signed certificate."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_config=None,
        log_level="warning",
        timeout_graceful_shutdown=2,
        ssl_certfile=str(cert),
        ssl_keyfile=str(key),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped while starting"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"https://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def test_tls_settings_trust_a_custom_ca_and_refuse_otherwise(world: World, tmp_path: Path) -> None:
    from tests.fakes.secret_servers import self_signed_certificate

    cert, key = self_signed_certificate(tmp_path)
    with serving_tls(upstream_app(), cert, key) as url:
        server_put("tls-trusted", f"{url}/mcp", tls_settings={"ca_cert": cert.read_text()})
        server_put("tls-default", f"{url}/mcp")
        trusted = rpc(world.endpoint("tls-trusted"), world.alice_token, INIT)
        default = rpc(world.endpoint("tls-default"), world.alice_token, INIT)
    assert trusted.status_code == 200, trusted.text
    assert default.status_code == 502
    assert default.json()["error"]["message"] == "the MCP server could not be reached"
