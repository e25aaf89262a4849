"""No client-chosen upstream, and no webhook that reaches inside (issue #10, SSRF).

What this proves, through the real proxy (uvicorn in a thread) and the Django API:

- Fields that name a host (`api_base`, `base_url`, `endpoint`, ...) at the top of a model call's
  body or nested in `metadata`, `extra_body` or `litellm_params`, and headers that name a host
  (`Host`, `X-Forwarded-Host`, `X-Original-URL`, ...), whatever spelling of loopback or of a
  metadata address they carry, are ignored: the call goes to the account's configured provider
  only, which receives the top-level ones stripped, a canary listener sees no connection, and
  no provider key reaches the caller. The same holds for the MCP relay.
- Provider redirects are not followed nor passed on, neither by model calls (502) nor by
  "Test connection".
- GATEWAY_UPSTREAM_ALLOWLIST refuses every spelling of loopback/metadata hosts when provider
  accounts and MCP servers are saved, and holds at call time for accounts saved before it.
- Notification webhooks (`webhook`, `slack-webhook`) refuse non-http(s) schemes and
  non-public hosts when saved, unless GATEWAY_WEBHOOK_ALLOWLIST allows them; the check runs
  again before every delivery (a name re-pointed at loopback is refused) and redirects are not
  followed.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anthropic
import httpx
import openai
import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from accounts.models import User, VirtualAccount
from accounts.notify import NotificationRejected, notify
from providers.models import McpServer, ProviderAccount
from proxy.plans import DROPPED_FIELDS
from tests import factories
from tests.conftest import bearer
from tests.fakes import fixtures as fake_fixtures
from tests.fakes.fixtures import FakeProvider
from tests.proxy import conftest as proxy_fixtures
from tests.proxy.conftest import Gateway

# The proxy tests' fixtures, used here by name.
fake_provider_server = fake_fixtures.fake_provider_server
fake_provider = fake_fixtures.fake_provider
gateway_factory = proxy_fixtures.gateway_factory
gateway = proxy_fixtures.gateway
_close_proxy_db_threads = proxy_fixtures._close_proxy_db_threads

URL_FIELDS = (
    "api_base",
    "base_url",
    "api_url",
    "endpoint",
    "azure_endpoint",
    "aws_bedrock_runtime_endpoint",
    "host",
    "url",
)
URL_HEADERS = (
    "x-original-url",
    "x-rewrite-url",
    "x-gateway-base-url",
    "x-api-base",
    "x-base-url",
    "x-forwarded-url",
)
HOST_HEADERS = ("host", "x-forwarded-host", "x-host", "x-forwarded-server")
PROVIDER_SECRETS = (
    FakeProvider.OPENAI_KEY,
    FakeProvider.ANTHROPIC_KEY,
    FakeProvider.AWS_ACCESS_KEY_ID,
    FakeProvider.AWS_SECRET_ACCESS_KEY,
)
# Where a caller might point a call: the canary's port on every spelling of loopback, and
# cloud metadata addresses. The canary listens on 127.0.0.1 and [::1].
LOOPBACK_HOSTS = (
    "127.0.0.1",
    "localhost",
    "0x7f000001",
    "2130706433",
    "017700000001",
    "127.1",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "user@127.0.0.1",
    "user:pw@localhost",
)
METADATA_URLS = (
    "http://169.254.169.254/latest/meta-data/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://100.100.100.200/latest/meta-data/",
)
ROUTES = {
    "openai->openai": (
        "/api/llm/v1/chat/completions",
        "openai-main/gpt-4o",
        "/v1/chat/completions",
    ),
    "anthropic->anthropic": ("/api/llm/v1/messages", "anthropic-main/claude", "/v1/messages"),
    "openai->anthropic": ("/api/llm/v1/chat/completions", "anthropic-main/claude", "/v1/messages"),
    "openai->bedrock": ("/api/llm/v1/chat/completions", "bedrock-main/nova", "/converse"),
}


def loopback_urls(port: int, path: str = "/v1") -> list[str]:
    """Every loopback spelling of `port`, plus the one with unicode (ideographic) dots."""
    spelled = [f"http://{host}:{port}{path}" for host in LOOPBACK_HOSTS]
    return [*spelled, f"http://127\u30020\u30020\u30021:{port}{path}"]


class Canary:
    """A TCP listener on 127.0.0.1 and [::1] (same port) that records every connection."""

    def __init__(self) -> None:
        self.connections: list[tuple[str, int]] = []
        self._sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM)]
        self._sockets[0].bind(("127.0.0.1", 0))
        self.port: int = self._sockets[0].getsockname()[1]
        six = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            six.bind(("::1", self.port))
            self._sockets.append(six)
        except OSError:  # no IPv6 loopback here: the IPv4 listener still catches the rest
            six.close()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, args=(s,)) for s in self._sockets]

    def _accept(self, sock: socket.socket) -> None:
        sock.listen(64)
        sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, address = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections.append((str(address[0]), int(address[1])))
            conn.close()

    def start(self) -> Canary:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        for sock in self._sockets:
            sock.close()

    def urls(self, path: str = "/v1") -> list[str]:
        return loopback_urls(self.port, path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def canary() -> Iterator[Canary]:
    listener = Canary().start()
    try:
        yield listener
    finally:
        listener.stop()


def base_body(route: str, model: str) -> dict[str, Any]:
    messages = [{"role": "user", "content": "hello canary"}]
    if route.startswith("anthropic"):
        return {"model": model, "max_tokens": 16, "messages": messages}
    return {"model": model, "messages": messages}


def leaked_secrets(text: str, headers: Mapping[str, str]) -> list[str]:
    """Provider secrets found anywhere in what the client received."""
    seen = text + json.dumps(dict(headers))
    return [s for s in PROVIDER_SECRETS if s in seen]


def check_call(
    client: httpx.Client,
    fake: FakeProvider,
    route: str,
    *,
    body: dict[str, Any],
    headers: dict[str, str],
    top_level: tuple[str, ...] = (),
) -> str:
    """One call; "" when it was refused naming a field or ignored (went to the fake only)."""
    path, _model, upstream_path = ROUTES[route]
    before = len(fake.requests())
    response = client.post(path, content=json.dumps(body), headers=headers)
    case = f"{route} body={list(body)} headers={sorted(headers)}"
    if leaked_secrets(response.text, response.headers):
        return f"{case}: provider secret in the response"
    if 400 <= response.status_code < 500:
        named = any(n in response.text for n in (*URL_FIELDS, *URL_HEADERS, *HOST_HEADERS))
        return "" if named else f"{case}: {response.status_code} without naming the field"
    if response.status_code != 200 or "echo: hello canary" not in response.text:
        return f"{case}: unexpected answer {response.status_code} {response.text[:200]}"
    new = fake.requests()[before:]
    if len(new) != 1 or upstream_path not in new[0]["path"]:
        return f"{case}: the configured provider saw {[r['path'] for r in new]}"
    if new[0]["headers"].get("host") != fake.url.removeprefix("http://"):
        return f"{case}: the provider saw Host {new[0]['headers'].get('host')}"
    forwarded = new[0]["body"] if isinstance(new[0]["body"], dict) else {}
    kept = [n for n in top_level if n in forwarded and n in DROPPED_FIELDS]
    return f"{case}: forwarded {kept}" if kept else ""


def hostile_values(canary: Canary) -> list[str]:
    return [*canary.urls(), *METADATA_URLS]


def hostile_headers(value: str) -> dict[str, str]:
    """Every host-choosing header, pointing at `value` (ASCII only, as HTTP needs)."""
    host = httpx.URL(value).netloc.decode("ascii")
    headers = dict.fromkeys(URL_HEADERS, value)
    headers.update(dict.fromkeys(HOST_HEADERS, host))
    headers["forwarded"] = f'host="{host}";proto=http'
    return headers


@pytest.mark.timeout(120)
@pytest.mark.parametrize("route", list(ROUTES))
def test_body_and_header_upstream_overrides_are_ignored(
    route: str, gateway: Gateway, canary: Canary
) -> None:
    model = ROUTES[route][1]
    problems: list[str] = []
    auth = {"authorization": f"Bearer {gateway.member_token}"}
    with httpx.Client(base_url=gateway.url, timeout=30, trust_env=False) as client:
        for value in hostile_values(canary):
            fields = dict.fromkeys(URL_FIELDS, value)
            placements: list[tuple[dict[str, Any], tuple[str, ...]]] = [
                (fields, URL_FIELDS),
                ({"metadata": fields}, ()),
                ({"extra_body": fields}, ()),
                ({"litellm_params": {**fields, "model": "x"}}, ()),
            ]
            for extra, top_level in placements:
                body = {**base_body(route, model), **extra}
                problems.append(
                    check_call(
                        client, gateway.fake, route, body=body, headers=auth, top_level=top_level
                    )
                )
            if value.isascii():
                headers = {**auth, **hostile_headers(value)}
                body = base_body(route, model)
                problems.append(check_call(client, gateway.fake, route, body=body, headers=headers))
    assert [p for p in problems if p] == []
    assert canary.connections == []


def test_sdk_extra_body_and_headers_cannot_choose_the_upstream(
    gateway: Gateway, canary: Canary
) -> None:
    """The SDKs' own escape hatches (`extra_body`, `extra_headers`) change nothing."""
    overrides = dict.fromkeys(URL_FIELDS, canary.url + "/v1")
    headers = hostile_headers(canary.url + "/v1")
    del headers["host"]  # the SDKs' transport sets Host itself
    chat = openai.OpenAI(
        base_url=gateway.openai_base, api_key=gateway.member_token, max_retries=0
    ).chat.completions.create(
        model="openai-main/gpt-4o",
        messages=[{"role": "user", "content": "hi"}],
        extra_body=overrides,
        extra_headers=headers,
    )
    message = anthropic.Anthropic(
        base_url=gateway.anthropic_base, api_key=gateway.member_token, max_retries=0
    ).messages.create(
        model="anthropic-main/claude",
        max_tokens=16,
        messages=[{"role": "user", "content": "hi"}],
        extra_body=overrides,
        extra_headers=headers,
    )
    assert chat.choices[0].message.content == "echo: hi"
    assert message.content[0].type == "text"
    assert message.content[0].text == "echo: hi"
    forwarded = [r["body"] for r in gateway.fake.requests()]
    assert [sorted(set(URL_FIELDS) & set(DROPPED_FIELDS) & set(b)) for b in forwarded] == [[], []]
    assert canary.connections == []


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("stream", [False, True])
def test_provider_redirects_are_not_followed_nor_passed_on(
    gateway: Gateway, canary: Canary, status: int, stream: bool
) -> None:
    gateway.fake.configure(status=status, location=canary.url + "/steal")
    client = openai.OpenAI(
        base_url=gateway.openai_base, api_key=gateway.member_token, max_retries=0
    )
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(
            model="openai-main/gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=stream
        )
    assert info.value.status_code == 502
    assert "location" not in info.value.response.headers
    assert leaked_secrets(info.value.response.text, info.value.response.headers) == []
    assert len(gateway.fake.requests("/v1/chat/completions")) == 1
    assert canary.connections == []


def test_anthropic_caller_gets_502_for_a_provider_redirect(
    gateway: Gateway, canary: Canary
) -> None:
    gateway.fake.configure(status=307, location=canary.url + "/v1/messages")
    client = anthropic.Anthropic(
        base_url=gateway.anthropic_base, api_key=gateway.member_token, max_retries=0
    )
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(
            model="anthropic-main/claude", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.status_code == 502
    assert canary.connections == []


def admin_client(admin: User) -> APIClient:
    return bearer(APIClient(), admin)


def test_test_connection_does_not_follow_redirects(gateway: Gateway, canary: Canary) -> None:
    gateway.fake.configure(status=302, location=canary.url + "/v1/models")
    response = admin_client(factories.tenant_admin()).post(
        "/api/v1/provider-accounts/openai-main/test-connection"
    )
    assert response.json() == {"ok": False, "message": "the provider answered HTTP 302"}
    assert canary.connections == []


def account_manifest(base_url: str) -> dict[str, Any]:
    return {
        "type": "provider-account/openai",
        "name": "ssrf-probe",
        "auth_data": {"type": "api-key", "api_key": "sk-probe-0123456789"},
        "base_url": base_url,
        "integrations": [{"type": "integration/model/openai", "name": "m", "model_id": "m"}],
    }


def mcp_manifest(url: str) -> dict[str, Any]:
    return {
        "type": "mcp-server/remote",
        "name": "ssrf-mcp",
        "description": "probe",
        "url": url,
        "collaborators": [{"subject": "team:ml", "role_id": "mcp-server-user"}],
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url", [*loopback_urls(9), *METADATA_URLS], ids=lambda u: u.split("//")[1].split("/")[0]
)
def test_allowlist_refuses_loopback_and_metadata_base_urls(url: str, settings: Any) -> None:
    """Any spelling of an unlisted host is refused when an account or MCP server is saved."""
    settings.GATEWAY_UPSTREAM_ALLOWLIST = ["api.openai.com", "*.openai.azure.com"]
    client = admin_client(factories.tenant_admin())
    for manifest, field in ((account_manifest(url), "base_url"), (mcp_manifest(url), "url")):
        response = client.put("/api/v1/apply", {"manifest": manifest}, format="json")
        assert response.status_code == 400, response.content
        message = response.json()["error"]["message"]
        assert f"{field}:" in message
        assert "GATEWAY_UPSTREAM_ALLOWLIST" in message or "must" in message
    assert not ProviderAccount.objects.filter(name="ssrf-probe").exists()
    assert not McpServer.objects.filter(name="ssrf-mcp").exists()


def test_allowlist_holds_at_call_time_for_accounts_saved_before_it(
    gateway_factory: Callable[[], AbstractContextManager[Gateway]],
    canary: Canary,
    settings: Any,
) -> None:
    admin = factories.tenant_admin()
    manifest = account_manifest(canary.url + "/v1")
    manifest["collaborators"] = [{"subject": "team:ml", "role_id": "provider-account-access"}]
    client = admin_client(admin)
    assert client.put("/api/v1/apply", {"manifest": manifest}, format="json").status_code == 200
    settings.GATEWAY_UPSTREAM_ALLOWLIST = ["api.openai.com"]

    tested = client.post("/api/v1/provider-accounts/ssrf-probe/test-connection")
    with gateway_factory() as gw, httpx.Client(base_url=gw.url, trust_env=False) as http:
        call = http.post(
            "/api/llm/v1/chat/completions",
            json={"model": "ssrf-probe/m", "messages": [{"role": "user", "content": "x"}]},
            headers={"authorization": f"Bearer {gw.member_token}"},
        )

    assert tested.json() == {
        "ok": False,
        "message": "the provider's host is not in GATEWAY_UPSTREAM_ALLOWLIST",
    }
    assert call.status_code == 403
    assert canary.connections == []


def test_mcp_relay_ignores_host_choosing_input(
    gateway: Gateway, canary: Canary, settings: Any
) -> None:
    """The MCP relay always calls the server's configured URL (the fake records it)."""
    manifest = mcp_manifest(gateway.fake.url + "/mcp")
    admin = admin_client(factories.tenant_admin())
    assert admin.put("/api/v1/apply", {"manifest": manifest}, format="json").status_code == 200
    rpc = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "fetch", "arguments": dict.fromkeys(URL_FIELDS, canary.url)},
        **dict.fromkeys(URL_FIELDS, canary.url),
    }
    headers = {
        **hostile_headers(canary.url + "/mcp"),
        "authorization": f"Bearer {gateway.member_token}",
        "accept": "application/json, text/event-stream",
    }
    with httpx.Client(base_url=gateway.url, trust_env=False, timeout=30) as http:
        response = http.post("/mcp/v1/ssrf-mcp/mcp", json=rpc, headers=headers)
    assert response.status_code < 500, response.text
    [seen] = gateway.fake.requests("/mcp")
    assert seen["headers"]["host"] == gateway.fake.url.removeprefix("http://")
    assert canary.connections == []


# --- notification webhooks -------------------------------------------------------------------


def va_manifest(target: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "virtual-account",
        "name": "hooked",
        "ownedBy": {"team": "ml"},
        "permissions": [
            {
                "role_id": "provider-account-access",
                "resource_type": "provider-account",
                "resource_fqn": "openai-main",
            }
        ],
        "notification_target": target,
    }


WEBHOOK_REFUSED = [
    *loopback_urls(9, "/hook"),
    *METADATA_URLS,
    "http://10.0.0.7/hook",
    "http://192.168.1.1/hook",
    "http://[fe80::1]/hook",
    "http://0.0.0.0:9/hook",
    "http://foo.localhost/hook",
    "file:///etc/passwd",
    "gopher://127.0.0.1:70/_x",
    "ftp://hooks.example.com/x",
]


@pytest.mark.parametrize("url", WEBHOOK_REFUSED, ids=lambda u: u[:40])
def test_webhook_targets_refuse_non_public_hosts_when_saved(
    url: str,
    gateway_factory: Callable[[], AbstractContextManager[Gateway]],
    settings: Any,
) -> None:
    settings.GATEWAY_WEBHOOK_ALLOWLIST = []
    settings.GATEWAY_SLACK_WEBHOOK_PREFIXES = [url[:8]]  # Slack's own prefix check out of the way
    client = admin_client(factories.tenant_admin())
    for target, field in (
        ({"type": "webhook", "url": url}, "notification_target.url"),
        ({"type": "slack-webhook", "webhook_url": url}, "notification_target.webhook_url"),
    ):
        response = client.put("/api/v1/apply", {"manifest": va_manifest(target)}, format="json")
        assert response.status_code == 400, response.content
        assert field in response.json()["error"]["message"]
    assert not VirtualAccount.objects.filter(name="hooked").exists()


def test_webhook_allowlist_admits_a_listed_loopback_receiver(
    gateway_factory: Callable[[], AbstractContextManager[Gateway]], settings: Any
) -> None:
    settings.GATEWAY_WEBHOOK_ALLOWLIST = ["127.0.0.1"]
    client = admin_client(factories.tenant_admin())
    target = {"type": "webhook", "url": "http://127.0.0.1:9/hook"}
    response = client.put("/api/v1/apply", {"manifest": va_manifest(target)}, format="json")
    assert response.status_code == 200, response.content
    blocked = {"type": "webhook", "url": "http://127.0.0.2:9/hook"}
    response = client.put("/api/v1/apply", {"manifest": va_manifest(blocked)}, format="json")
    assert response.status_code == 400


def test_webhook_host_is_checked_again_before_delivery(
    canary: Canary, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name that resolved to a public address when saved and to loopback now is refused."""
    settings.GATEWAY_WEBHOOK_ALLOWLIST = []
    answers = {"hooks.rebind.test": "93.184.216.34"}
    real = socket.getaddrinfo

    def fake_dns(host: str, *args: Any, **kwargs: Any) -> Any:
        if host in answers:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], 0))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_dns)
    from accounts.notify import notification_target_parse

    target = {"type": "webhook", "url": f"http://hooks.rebind.test:{canary.port}/hook"}
    notification_target_parse(target)  # accepted while it resolves to a public address
    answers["hooks.rebind.test"] = "127.0.0.1"
    with pytest.raises(NotificationRejected, match=r"invalid notification target \(webhook\.url\)"):
        notify(target, "rotated", {"virtual_account": "bot"})
    assert canary.connections == []


class _Redirector(BaseHTTPRequestHandler):
    location = ""
    hits = 0

    def do_POST(self) -> None:
        type(self).hits += 1
        self.send_response(302)
        self.send_header("Location", self.location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_webhook_delivery_does_not_follow_redirects(canary: Canary) -> None:
    _Redirector.location = canary.url + "/stolen"
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        with (
            override_settings(GATEWAY_WEBHOOK_ALLOWLIST=["127.0.0.1"]),
            pytest.raises(NotificationRejected, match="HTTP 302"),
        ):
            notify({"type": "webhook", "url": url}, "rotated", {"virtual_account": "bot"})
    finally:
        server.shutdown()
        server.server_close()
    assert _Redirector.hits == 1
    assert canary.connections == []
