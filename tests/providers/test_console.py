"""AI Gateway > Models and MCP Servers in the console: lists, tabs, access, keys, tools."""

from __future__ import annotations

import json
import sys
import threading
import types
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import AuditEvent, User
from accounts.selectors import principal_for_user
from gateway_project import manifests
from gateway_project.manifest_io import parse_yaml
from providers import services
from providers.models import Collaborator, McpServer, ProviderAccount
from tests import factories

pytestmark = pytest.mark.django_db

CANARY_KEY = "sk-canary-console-key-0c4e7"
NEW_KEY = "sk-canary-replacement-9a7b3"


class FakeOpenAI(BaseHTTPRequestHandler):
    """Answers GET /v1/models with 200 for the canary key, 401 for any other."""

    def do_GET(self) -> None:
        ok = self.path == "/v1/models" and (
            self.headers.get("Authorization") == f"Bearer {CANARY_KEY}"
        )
        body = json.dumps({"data": []} if ok else {"error": {"message": "bad key"}})
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def fake_openai() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()


def account_yaml(base_url: str) -> str:
    return f"""\
type: provider-account/openai
name: openai-main
auth_data: {{type: api-key, api_key: {CANARY_KEY}}}
base_url: {base_url}
collaborators:
  - {{subject: team:ml-team, role_id: provider-account-access}}
  - {{subject: user:boss@example.com, role_id: provider-account-manager}}
integrations:
  - type: integration/model/openai
    name: gpt-4o
    model_id: gpt-4o-2024-08-06
    cost: {{metric: per_1000_tokens, value: {{input: 0.0025, output: 0.01}}}}
  - type: integration/model/openai
    name: o1
    model_id: o1
    authorized_subjects: [team:research]
---
type: provider-account/anthropic
name: anthropic-hidden
auth_data: {{type: api-key, api_key: sk-ant-other}}
integrations:
  - {{type: integration/model/anthropic, name: claude, model_id: claude-sonnet-4}}
---
type: mcp-server/remote
name: github-tools
description: GitHub issues and pull requests.
url: http://127.0.0.1:1/mcp
auth_data: {{type: header, headers: {{Authorization: Bearer ghp-canary-mcp-44e1}}}}
tool_settings:
  - {{name: delete_repo, disabled: true}}
  - {{name: search_issues, rename: find_issues}}
collaborators:
  - {{subject: team:ml-team, role_id: mcp-server-user}}
  - {{subject: user:boss@example.com, role_id: mcp-server-manager}}
"""


@pytest.fixture
def people(db, fake_openai) -> dict[str, User]:
    ml = factories.TeamFactory(name="ml-team")
    factories.TeamFactory(name="research")
    admin = factories.UserFactory(email="admin@example.com", tenant_role_id="tenant-admin")
    boss = factories.UserFactory(email="boss@example.com")
    manifests.apply(parse_yaml(account_yaml(fake_openai)), actor=principal_for_user(admin))
    return {
        "admin": admin,
        "manager": boss,
        "ml_member": factories.team_member_of(ml),
        "nobody": factories.member(),
    }


def login(client, user: User):
    client.force_login(user)
    return client


def collaborators(name: str) -> set[tuple[str, str]]:
    rows = Collaborator.objects.filter(provider_account__name=name).select_related("user", "team")
    return {(c.subject, c.role_id) for c in rows}


ACCOUNT_START = {
    ("team:ml-team", "provider-account-access"),
    ("user:boss@example.com", "provider-account-manager"),
}


# --- Models list -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "names"),
    [
        ("admin", ["anthropic-hidden", "openai-main"]),
        ("manager", ["openai-main"]),
        ("ml_member", ["openai-main"]),
        ("nobody", []),
    ],
)
def test_models_list_shows_only_the_accounts_the_user_may_see(client, people, who, names):
    response = login(client, people[who]).get(reverse("providers:provider_account_list"))

    assert response.status_code == 200
    assert [a.name for a in response.context["page"]] == names
    html = response.content.decode()
    assert ("claude-sonnet-4" in html) is (who == "admin")
    assert ("gpt-4o-2024-08-06" in html) is (who != "nobody")


def test_models_list_shows_models_costs_and_who_may_use_them(client, people):
    html = login(client, people["ml_member"]).get(reverse("providers:provider_account_list"))
    text = html.content.decode()

    assert '<span class="badge badge-grey" data-testid="model-count">2 models</span>' in text
    assert "$0.0025 in · $0.01 out / 1K" in text
    assert '<span class="chip mono">team:research</span>' in text
    assert '<span class="muted small">Everyone with access</span>' in text
    assert "team:ml-team · User" in text
    assert "user:boss@example.com · Manager" in text
    assert 'href="/models/-/new/"' not in text


def test_models_list_searches_accounts_and_models(client, people):
    client = login(client, people["admin"])
    url = reverse("providers:provider_account_list")

    by_model = client.get(url + "?q=claude")
    by_name = client.get(url + "?q=openai")
    nothing = client.get(url + "?q=zzz")

    assert [a.name for a in by_model.context["page"]] == ["anthropic-hidden"]
    assert [a.name for a in by_name.context["page"]] == ["openai-main"]
    assert "No provider accounts or models match “zzz”." in nothing.content.decode()


def list_queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def test_list_pages_use_a_bounded_number_of_queries(client, people):
    client = login(client, people["admin"])
    admin = principal_for_user(people["admin"])
    few_models = list_queries(client, reverse("providers:provider_account_list"))
    few_servers = list_queries(client, reverse("providers:mcp_server_list"))
    for n in range(24):
        services.provider_account_create(
            actor=admin,
            name=f"acct-{n:02d}",
            kind="openai",
            auth={"type": "api-key", "api_key": f"sk-{n}"},
            models=[services.ModelSpec(f"m{i}", f"model-{i}") for i in range(3)],
            collaborators=[
                services.CollaboratorSpec("team:ml-team", "provider-account-access"),
                services.CollaboratorSpec("user:boss@example.com", "provider-account-manager"),
            ],
        )
        services.mcp_server_put(
            actor=admin,
            spec=services.McpServerSpec(
                name=f"server-{n:02d}",
                description="A server.",
                url="https://mcp.example.com/mcp",
                collaborators=[services.CollaboratorSpec("team:ml-team", "mcp-server-user")],
            ),
        )

    many_models = list_queries(client, reverse("providers:provider_account_list"))
    many_servers = list_queries(client, reverse("providers:mcp_server_list"))

    assert many_models == few_models
    assert many_servers == few_servers
    assert many_models <= 12
    assert many_servers <= 12


# --- account detail --------------------------------------------------------------------------


def test_account_detail_tabs_for_a_manager(client, people):
    client = login(client, people["manager"])

    models = client.get(reverse("providers:provider_account_detail", args=["openai-main"]))
    access = client.get(reverse("providers:provider_account_access", args=["openai-main"]))
    settings_tab = client.get(reverse("providers:provider_account_settings", args=["openai-main"]))

    assert [m.name for m in models.context["models"]] == ["gpt-4o", "o1"]
    assert {(c.subject, c.role_id) for c in access.context["collaborators"]} == ACCOUNT_START
    assert "Add collaborator" in access.content.decode()
    settings_html = settings_tab.content.decode()
    assert '<span class="secret-set">••••••</span> (set)' in settings_html
    assert 'name="replace_key"' in settings_html
    for page in (models, access, settings_tab):
        assert page.status_code == 200
        assert "Test connection" in page.content.decode()
        assert 'href="/models/openai-main/yaml/">Apply using YAML</a>' in page.content.decode()
        assert CANARY_KEY not in page.content.decode()
    assert "Delete</a>" not in models.content.decode()


def test_account_detail_for_a_plain_user_is_read_only(client, people):
    client = login(client, people["ml_member"])

    access = client.get(reverse("providers:provider_account_access", args=["openai-main"]))
    settings_tab = client.get(reverse("providers:provider_account_settings", args=["openai-main"]))

    assert "Add collaborator" not in access.content.decode()
    assert "Test connection" not in access.content.decode()
    assert 'href="/models/openai-main/yaml/">View YAML</a>' in access.content.decode()
    assert 'name="replace_key"' not in settings_tab.content.decode()
    assert '<span class="secret-set">••••••</span> (set)' in settings_tab.content.decode()


def test_hidden_account_is_404(client, people):
    client = login(client, people["ml_member"])

    for name in ("provider_account_detail", "provider_account_access", "provider_account_yaml"):
        assert (
            client.get(reverse(f"providers:{name}", args=["anthropic-hidden"])).status_code == 404
        )


def test_manager_adds_and_removes_a_collaborator(client, people):
    client = login(client, people["manager"])
    url = reverse("providers:provider_account_access", args=["openai-main"])

    added = client.post(
        url, {"op": "add", "subject": "team:research", "role_id": "provider-account-access"}
    )
    after_add = collaborators("openai-main")
    removed = client.post(
        url, {"op": "remove", "subject": "team:ml-team", "role_id": "provider-account-access"}
    )

    assert added.status_code == 302
    assert after_add == ACCOUNT_START | {("team:research", "provider-account-access")}
    assert removed.status_code == 302
    assert collaborators("openai-main") == {
        ("team:research", "provider-account-access"),
        ("user:boss@example.com", "provider-account-manager"),
    }
    assert (
        AuditEvent.objects.filter(action="provider_account.updated", source="console").count() == 2
    )
    page = client.get(url).content.decode()
    assert "Removed team:ml-team (provider-account-access)." in page


def test_adding_an_unknown_subject_is_a_form_error(client, people):
    client = login(client, people["manager"])
    url = reverse("providers:provider_account_access", args=["openai-main"])

    response = client.post(
        url, {"op": "add", "subject": "team:ghosts", "role_id": "provider-account-access"}
    )

    assert response.status_code == 400
    assert response.context["form"].errors == {"subject": ["no team 'ghosts'"]}
    assert collaborators("openai-main") == ACCOUNT_START


@pytest.mark.parametrize("op", ["add", "remove"])
def test_plain_user_cannot_change_collaborators(client, people, op):
    client = login(client, people["ml_member"])
    subject = "team:research" if op == "add" else "team:ml-team"

    response = client.post(
        reverse("providers:provider_account_access", args=["openai-main"]),
        {"op": op, "subject": subject, "role_id": "provider-account-access"},
    )

    assert response.status_code == 403
    assert collaborators("openai-main") == ACCOUNT_START


def test_replace_key_keeps_the_secret_out_of_the_page_and_the_response(client, people):
    client = login(client, people["manager"])
    url = reverse("providers:provider_account_settings", args=["openai-main"])
    account = ProviderAccount.objects.get(name="openai-main")

    invalid = client.post(url, {"base_url": "ftp://nope", "replace_key": NEW_KEY})
    unchanged = services.secret_values(account)
    saved = client.post(url, {"base_url": account.base_url, "replace_key": NEW_KEY})
    page = client.get(url)

    assert invalid.status_code == 400
    assert invalid.context["form"].errors == {"base_url": ["must be an http:// or https:// URL"]}
    assert unchanged == {"api_key": CANARY_KEY}
    assert saved.status_code == 302
    account.refresh_from_db()
    assert services.secret_values(account) == {"api_key": NEW_KEY}
    assert account.auth_type == "api-key"
    assert "The key was replaced." in page.content.decode()
    for body in (invalid.content, saved.content, page.content):
        assert NEW_KEY not in body.decode()
        assert CANARY_KEY not in body.decode()
    event = AuditEvent.objects.get(action="provider_account.updated")
    assert NEW_KEY not in json.dumps([event.before, event.after])


def test_saving_settings_without_a_new_key_keeps_the_stored_key(client, people, fake_openai):
    client = login(client, people["manager"])
    url = reverse("providers:provider_account_settings", args=["openai-main"])

    response = client.post(url, {"base_url": fake_openai + "/", "replace_key": ""})

    account = ProviderAccount.objects.get(name="openai-main")
    assert response.status_code == 302
    assert account.base_url == fake_openai
    assert services.secret_values(account) == {"api_key": CANARY_KEY}


def test_plain_user_cannot_save_settings(client, people):
    client = login(client, people["ml_member"])

    response = client.post(
        reverse("providers:provider_account_settings", args=["openai-main"]),
        {"base_url": "https://example.com/v1", "replace_key": NEW_KEY},
    )

    assert response.status_code == 403
    account = ProviderAccount.objects.get(name="openai-main")
    assert services.secret_values(account) == {"api_key": CANARY_KEY}
    assert account.base_url.startswith("http://127.0.0.1:")


def test_test_connection_shows_the_ok_message(client, people):
    client = login(client, people["manager"])

    response = client.post(
        reverse("providers:provider_account_test", args=["openai-main"]), follow=True
    )

    assert response.redirect_chain == [("/models/openai-main/", 302)]
    assert [str(m) for m in response.context["messages"]] == [
        "Test connection: connected: the credentials work"
    ]
    assert '<div class="flash flash-success">' in response.content.decode()


def test_test_connection_reports_a_refused_key(client, people):
    account = ProviderAccount.objects.get(name="openai-main")
    services.provider_account_update(
        actor=principal_for_user(people["admin"]),
        account=account,
        auth={"type": "api-key", "api_key": "sk-wrong"},
    )
    client = login(client, people["manager"])

    response = client.post(
        reverse("providers:provider_account_test", args=["openai-main"]),
        {"next": "settings"},
        follow=True,
    )

    assert response.redirect_chain == [("/models/openai-main/settings/", 302)]
    assert [str(m) for m in response.context["messages"]] == [
        "Test connection: the provider refused the credentials (401)"
    ]


def test_test_connection_needs_the_rights_to_save(client, people):
    response = login(client, people["ml_member"]).post(
        reverse("providers:provider_account_test", args=["openai-main"])
    )

    assert response.status_code == 403
    assert "You don't have permission to do this" in response.content.decode()


def test_create_provider_account_makes_the_creator_its_manager(client, people):
    client = login(client, people["admin"])

    response = client.post(
        reverse("providers:provider_account_create"),
        {
            "name": "bedrock-main",
            "kind": "aws-bedrock",
            "region": "eu-west-1",
            "access_key_id": "AKIAIOSFODNN7EXAMPLE",
            "secret_access_key": NEW_KEY,
            "model_name": "claude",
            "model_id": "anthropic.claude-3-5-sonnet-20240620-v1:0",
        },
    )

    assert response.status_code == 302
    assert response["Location"] == "/models/bedrock-main/"
    account = ProviderAccount.objects.get(name="bedrock-main")
    assert (account.kind, account.region, account.auth_type) == (
        "aws-bedrock",
        "eu-west-1",
        "access-key-based",
    )
    assert account.auth_public == {
        "type": "access-key-based",
        "access_key_id": "AKIAIOSFODNN7EXAMPLE",
    }
    assert services.secret_values(account) == {"secret_access_key": NEW_KEY}
    assert list(account.models.values_list("name", "model_id")) == [
        ("claude", "anthropic.claude-3-5-sonnet-20240620-v1:0")
    ]
    assert collaborators("bedrock-main") == {("user:admin@example.com", "provider-account-manager")}


def test_create_form_errors_never_echo_the_key(client, people):
    client = login(client, people["admin"])

    response = client.post(
        reverse("providers:provider_account_create"),
        {"name": "openai-main", "kind": "openai", "api_key": NEW_KEY, "model_name": "x"},
    )

    assert response.status_code == 400
    assert response.context["form"].errors == {
        "model_id": ["Give both a model name and its provider model ID."]
    }
    assert NEW_KEY not in response.content.decode()
    duplicate = client.post(
        reverse("providers:provider_account_create"),
        {"name": "openai-main", "kind": "openai", "api_key": NEW_KEY},
    )
    assert duplicate.context["form"].errors == {
        "name": ["a provider account named 'openai-main' already exists"]
    }


def test_create_needs_the_create_permission(client, people):
    response = login(client, people["manager"]).post(
        reverse("providers:provider_account_create"),
        {"name": "mine", "kind": "openai", "api_key": NEW_KEY},
    )

    assert response.status_code == 403
    assert not ProviderAccount.objects.filter(name="mine").exists()


def test_delete_needs_the_tenant_permission(client, people):
    refused = login(client, people["manager"]).post(
        reverse("providers:provider_account_delete", args=["openai-main"])
    )
    deleted = login(client, people["admin"]).post(
        reverse("providers:provider_account_delete", args=["openai-main"])
    )

    assert refused.status_code == 403
    assert deleted.status_code == 302
    assert not ProviderAccount.objects.filter(name="openai-main").exists()


# --- MCP servers -----------------------------------------------------------------------------


class McpUnreachable(Exception):
    """Stands in for providers.mcp_client.McpUnreachable."""


def fake_mcp_client(monkeypatch, tools=None, error: str = "") -> None:
    module = types.ModuleType("providers.mcp_client")

    def mcp_server_tools(server: McpServer) -> list[dict[str, object]]:
        if error:
            raise McpUnreachable(error)
        return list(tools or [])

    module.McpUnreachable = McpUnreachable  # type: ignore[attr-defined]
    module.mcp_server_tools = mcp_server_tools  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "providers.mcp_client", module)


def test_mcp_server_page_shows_the_error_when_the_server_is_unreachable(
    client, people, monkeypatch
):
    fake_mcp_client(monkeypatch, error="could not connect to http://127.0.0.1:1/mcp")

    response = login(client, people["ml_member"]).get(
        reverse("providers:mcp_server_detail", args=["github-tools"])
    )

    assert response.status_code == 200
    assert response.context["tools_error"] == "could not connect to http://127.0.0.1:1/mcp"
    assert (
        "<strong>Could not list the tools.</strong> could not connect to http://127.0.0.1:1/mcp"
        in response.content.decode()
    )


def test_mcp_server_page_shows_the_real_clients_error_for_a_closed_port(client, people):
    pytest.importorskip("providers.mcp_client")

    response = login(client, people["ml_member"]).get(
        reverse("providers:mcp_server_detail", args=["github-tools"])
    )

    assert response.status_code == 200
    assert response.context["tools_error"] == "the MCP server could not be reached"
    assert "ghp-canary-mcp-44e1" not in response.content.decode()


def test_mcp_server_page_says_so_when_tool_discovery_is_missing(client, people, monkeypatch):
    monkeypatch.setitem(sys.modules, "providers.mcp_client", None)

    response = login(client, people["admin"]).get(
        reverse("providers:mcp_server_detail", args=["github-tools"])
    )

    assert response.context["tools_error"] == "Tool discovery is not available on this gateway yet."


def test_mcp_server_page_lists_tools_with_their_settings_and_the_endpoint(
    client, people, monkeypatch, settings
):
    settings.GATEWAY_PUBLIC_URL = "https://gw.example.com"
    fake_mcp_client(
        monkeypatch,
        tools=[
            {"name": "delete_repo", "description": "Delete.", "inputSchema": {}},
            {
                "name": "search_issues",
                "description": "Search.",
                "inputSchema": {"type": "object", "properties": {"q": {}, "repo": {}}},
            },
            {"name": "get_issue", "description": "One issue.", "inputSchema": {}},
        ],
    )

    response = login(client, people["manager"]).get(
        reverse("providers:mcp_server_detail", args=["github-tools"])
    )

    rows = [(t.exposed_name, t.name, t.params, t.disabled) for t in response.context["tools"]]
    assert rows == [
        ("delete_repo", "delete_repo", [], True),
        ("find_issues", "search_issues", ["q", "repo"], False),
        ("get_issue", "get_issue", [], False),
    ]
    html = response.content.decode()
    assert 'value="https://gw.example.com/mcp/v1/github-tools/mcp"' in html
    assert '<span class="badge badge-red">Disabled</span>' in html
    assert 'renamed from <span class="mono">search_issues</span>' in html
    assert "ghp-canary-mcp-44e1" not in html


def test_mcp_list_and_access_follow_collaborators(client, people, monkeypatch):
    fake_mcp_client(monkeypatch, tools=[])
    nobody = login(client, people["nobody"]).get(reverse("providers:mcp_server_list"))
    member = login(client, people["ml_member"])
    listing = member.get(reverse("providers:mcp_server_list"))
    url = reverse("providers:mcp_server_access", args=["github-tools"])
    refused = member.post(
        url, {"op": "add", "subject": "team:research", "role_id": "mcp-server-user"}
    )
    manager = login(client, people["manager"])
    added = manager.post(
        url, {"op": "add", "subject": "team:research", "role_id": "mcp-server-user"}
    )

    assert [s.name for s in nobody.context["page"]] == []
    assert [s.name for s in listing.context["page"]] == ["github-tools"]
    assert refused.status_code == 403
    assert added.status_code == 302
    server = McpServer.objects.get(name="github-tools")
    assert {
        (c.subject, c.role_id) for c in server.collaborators.select_related("team", "user")
    } == {
        ("team:ml-team", "mcp-server-user"),
        ("team:research", "mcp-server-user"),
        ("user:boss@example.com", "mcp-server-manager"),
    }
    assert services.secret_values(server) == {
        "headers": {"Authorization": "Bearer ghp-canary-mcp-44e1"}
    }


def test_mcp_yaml_page_shows_header_references(client, people):
    response = login(client, people["manager"]).get(
        reverse("providers:mcp_server_yaml", args=["github-tools"])
    )

    text = response.context["text"]
    assert "Authorization: gw-secret://mcp-server/remote/github-tools/headers.Authorization?v=" in (
        text
    )
    assert "ghp-canary-mcp-44e1" not in response.content.decode()
    assert response.context["can_change"] is True


# --- navigation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "shown"),
    [("admin", True), ("ml_member", True), ("nobody", False)],
)
def test_navigation_shows_models_and_mcp_servers_to_who_may_see_them(client, people, who, shown):
    html = login(client, people[who]).get(reverse("teams:team_list")).content.decode()

    assert ('<a class="nav-item" href="/models/">' in html) is shown
    assert ('<a class="nav-item" href="/mcp-servers/">' in html) is shown
    assert '<a class="nav-item" href="/apply/">' in html
