"""Provider accounts and MCP servers: the access table, secrets, test connection."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from accounts.models import AuditEvent, User
from accounts.policy import Permission, decide
from accounts.selectors import principal_for_user
from gateway_project import manifests
from gateway_project.manifest_io import parse_yaml
from providers.models import Collaborator, ProviderAccount, ProviderModel
from teams.models import TeamMembership
from tests import factories
from tests.conftest import bearer

pytestmark = pytest.mark.django_db

CANARY_KEY = "sk-canary-provider-key-7f3a9"
CANARY_HEADER = "Bearer ghp-canary-mcp-91b2"


class FakeOpenAI(BaseHTTPRequestHandler):
    """Answers GET /v1/models when the canary key is presented."""

    def do_GET(self) -> None:
        ok = self.headers.get("Authorization") == f"Bearer {CANARY_KEY}"
        body = json.dumps(
            {"data": []} if ok else {"error": {"message": f"bad key {CANARY_KEY[:6]}"}}
        )
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def fake_openai() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()


def account_yaml(base_url: str, key: str = CANARY_KEY) -> str:
    return f"""\
type: provider-account/openai
name: openai-main
auth_data: {{type: api-key, api_key: {key}}}
base_url: {base_url}
collaborators:
  - {{subject: team:ml-team, role_id: provider-account-access}}
  - {{subject: user:boss@example.com, role_id: provider-account-manager}}
integrations:
  - type: integration/model/openai
    name: gpt-4o
    model_id: gpt-4o
    model_types: [chat]
    cost: {{metric: per_1000_tokens, value: {{input: 0.0025, output: 0.01}}}}
  - type: integration/model/openai
    name: o1
    model_id: o1
    authorized_subjects: [team:research]
"""


@pytest.fixture
def setup(db, fake_openai):
    ml = factories.TeamFactory(name="ml-team")
    research = factories.TeamFactory(name="research")
    boss = factories.UserFactory(email="boss@example.com")
    admin = factories.tenant_admin()
    manifests.apply(parse_yaml(account_yaml(fake_openai)), actor=principal_for_user(admin))
    people: dict[str, User] = {
        "admin": admin,
        "manager": boss,
        "ml_member": factories.team_member_of(ml),
        "researcher": factories.team_member_of(research),
        "nobody": factories.member(),
    }
    TeamMembership.objects.create(team=research, user=people["ml_member"], role="member")
    return people


@pytest.mark.parametrize(
    ("who", "sees", "can_change", "gpt", "o1"),
    [
        ("admin", True, True, True, True),
        ("manager", True, True, True, False),
        ("ml_member", True, False, True, True),
        ("researcher", False, False, False, False),
        ("nobody", False, False, False, False),
    ],
)
def test_provider_access_table(setup, api_client, who, sees, can_change, gpt, o1):
    user = setup[who]
    bearer(api_client, user)
    before = list(ProviderModel.objects.values_list("name", "model_id"))

    listing = api_client.get("/api/v1/provider-accounts")
    detail = api_client.get("/api/v1/provider-accounts/openai-main")
    doc = parse_yaml(account_yaml("http://127.0.0.1:1/v1"))[0].data
    doc["base_url"] = detail.json()["manifest"]["base_url"] if sees else "http://127.0.0.1:1/v1"
    doc["integrations"][0]["model_id"] = "gpt-4o-2024-08-06"
    if sees:
        doc["auth_data"]["api_key"] = detail.json()["manifest"]["auth_data"]["api_key"]
    change = api_client.put("/api/v1/apply", {"manifest": doc}, format="json")

    assert [i["manifest"]["name"] for i in listing.json()["results"]] == (
        ["openai-main"] if sees else []
    )
    assert detail.status_code == (200 if sees else 404)
    assert change.status_code == (200 if can_change else (403 if sees else 404)), change.content
    if not can_change:
        assert list(ProviderModel.objects.values_list("name", "model_id")) == before
    account = ProviderAccount.objects.get(name="openai-main")
    decision = principal_for_user(user)
    assert (
        decide(decision, Permission.PROVIDER_ACCOUNT_USE, target=(account.pk, "gpt-4o")).allowed
        is gpt
    )
    assert (
        decide(decision, Permission.PROVIDER_ACCOUNT_USE, target=(account.pk, "o1")).allowed is o1
    )


def test_secrets_never_leave(setup, api_client, client, caplog):
    caplog.set_level(logging.DEBUG)
    admin = setup["admin"]
    bearer(api_client, admin)
    bodies = [
        api_client.get("/api/v1/provider-accounts").content,
        api_client.get("/api/v1/provider-accounts/openai-main").content,
        api_client.get("/api/v1/export").content,
        api_client.post("/api/v1/provider-accounts/openai-main/test-connection").content,
        api_client.get("/api/v1/audit-events").content,
    ]
    events = json.dumps(list(AuditEvent.objects.values("before", "after")))
    stored = ProviderAccount.objects.filter(name="openai-main").values_list(
        "auth_secret", flat=True
    )
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT auth_secret FROM providers_provideraccount")
        raw_column = cursor.fetchone()[0]
    for blob in [*(b.decode() for b in bodies), events, caplog.text, raw_column]:
        assert CANARY_KEY not in blob
        assert CANARY_KEY[:12] not in blob
    assert json.loads(stored[0]) == {"api_key": CANARY_KEY}


def test_test_connection_reports_working_and_refused_credentials(setup, api_client, fake_openai):
    bearer(api_client, setup["manager"])
    ok = api_client.post("/api/v1/provider-accounts/openai-main/test-connection")
    assert ok.json() == {"ok": True, "message": "connected: the credentials work"}

    admin = principal_for_user(setup["admin"])
    manifests.apply(parse_yaml(account_yaml(fake_openai, key="sk-wrong-key")), actor=admin)
    refused = api_client.post("/api/v1/provider-accounts/openai-main/test-connection")
    assert refused.json() == {"ok": False, "message": "the provider refused the credentials (401)"}
    assert "sk-wro" not in refused.content.decode()


def test_test_connection_needs_the_rights_to_save(setup, api_client):
    bearer(api_client, setup["ml_member"])
    response = api_client.post("/api/v1/provider-accounts/openai-main/test-connection")
    assert response.status_code == 403


def test_base_url_allowlist(setup, settings):
    settings.GATEWAY_UPSTREAM_ALLOWLIST = ["api.openai.com", "*.internal.example"]
    admin = principal_for_user(setup["admin"])
    from gateway_project.manifest_io import ManifestError

    with pytest.raises(ManifestError) as info:
        manifests.apply(parse_yaml(account_yaml("http://169.254.169.254/v1")), actor=admin)
    assert str(info.value.problems[0]).endswith(
        "base_url: host '169.254.169.254' is not in GATEWAY_UPSTREAM_ALLOWLIST"
    )
    manifests.apply(parse_yaml(account_yaml("https://llm.internal.example/v1")), actor=admin)
    assert (
        ProviderAccount.objects.get(name="openai-main").base_url
        == "https://llm.internal.example/v1"
    )


def test_collaborator_naming_an_unknown_team_is_refused(setup):
    admin = principal_for_user(setup["admin"])
    text = account_yaml("http://127.0.0.1:1/v1").replace("team:ml-team", "team:ghosts")
    from gateway_project.manifest_io import ManifestError

    with pytest.raises(ManifestError) as info:
        manifests.apply(parse_yaml(text), actor=admin)
    assert [p.path for p in info.value.problems] == ["collaborators[0].subject"]
    assert Collaborator.objects.filter(team__name="ml-team").count() == 1


def test_replacing_only_a_secret_is_audited_and_moves_the_config_version(setup):
    from accounts.models import ConfigVersion

    admin = principal_for_user(setup["admin"])
    text = """\
type: mcp-server/remote
name: tools
description: Tools
url: http://127.0.0.1:1/mcp
auth_data: {type: header, headers: {Authorization: Bearer one}}
collaborators: [{subject: team:ml-team, role_id: mcp-server-user}]
"""
    manifests.apply(parse_yaml(text), actor=admin)
    version = ConfigVersion.objects.get().version
    results = manifests.apply(parse_yaml(text.replace("Bearer one", "Bearer two")), actor=admin)
    assert [r.action for r in results] == ["updated"]
    assert ConfigVersion.objects.get().version > version
    assert AuditEvent.objects.filter(action="mcp_server.updated").count() == 1


@pytest.mark.parametrize("granted", [True, False])
def test_virtual_accounts_list_view_change_and_invoke(setup, api_client, granted):
    from accounts import virtual_accounts as va
    from providers.models import McpServer
    from proxy.auth import grant_for_token

    admin = principal_for_user(setup["admin"])
    McpServer.objects.create(name="tools", description="x", url="http://127.0.0.1:1/mcp")
    permission = (
        va.PermissionSpec("provider-account-access", "provider-account", "openai-main")
        if granted  # else a grant on something else: the account is not theirs to use
        else va.PermissionSpec("mcp-server-user", "mcp-server", "tools")
    )
    _, raw = va.va_create(
        actor=admin,
        spec=va.VirtualAccountSpec(name="bot", owner_team="ml-team", permissions=[permission]),
    )
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    before = list(ProviderModel.objects.values_list("name", "model_id"))

    listing = api_client.get("/api/v1/provider-accounts")
    detail = api_client.get("/api/v1/provider-accounts/openai-main")
    doc = parse_yaml(account_yaml("http://127.0.0.1:1/v1"))[0].data
    change = api_client.put("/api/v1/apply", {"manifest": doc}, format="json")

    names = [i["manifest"]["name"] for i in listing.json()["results"]]
    assert names == (["openai-main"] if granted else [])
    assert detail.status_code == (200 if granted else 404)
    assert change.status_code == (403 if granted else 404)
    assert list(ProviderModel.objects.values_list("name", "model_id")) == before
    grant = grant_for_token(raw)
    assert grant is not None
    account = ProviderAccount.objects.get(name="openai-main")
    target = (account.pk, "gpt-4o")
    assert (
        decide(grant.principal, Permission.PROVIDER_ACCOUNT_USE, target=target).allowed is granted
    )
