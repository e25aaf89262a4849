"""Console: Access > Virtual Account Tokens and Platform > Settings > Secret stores."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts import secret_store_services as store_services
from accounts import virtual_accounts as va
from accounts.console_yaml import starters
from accounts.models import Role, SecretStore, TokenSecret, User, VirtualAccount
from accounts.selectors import principal_for_user
from gateway_project import manifests
from gateway_project.manifest_io import parse_yaml
from proxy.auth import grant_for_token
from tests import factories
from tests.accounts.test_secret_stores import openbao  # noqa: F401 - fixture
from tests.processes import free_port

pytestmark = pytest.mark.django_db

PROVIDERS = """\
type: provider-account/openai
name: openai-main
auth_data: {type: api-key, api_key: sk-test}
base_url: http://127.0.0.1:9/v1
collaborators: [{subject: team:payments, role_id: provider-account-access}]
integrations:
  - {type: integration/model/openai, name: gpt-4o, model_id: gpt-4o}
  - {type: integration/model/openai, name: o1, model_id: o1}
---
type: provider-account/anthropic
name: anthropic-main
auth_data: {type: api-key, api_key: sk-ant-test}
base_url: http://127.0.0.1:9
integrations:
  - {type: integration/model/anthropic, name: claude, model_id: claude}
"""
OPENAI_ACCESS = "provider-account-access|openai-main"
VAULT_TOKEN = "hvs.console-test-token-0123456789"


def raw_token(body: str) -> str:
    """The token a one-time page shows."""
    match = re.search(r'value="(gw_va_[a-z0-9-]+_[A-Za-z0-9]+)"[^>]*data-testid="raw-token"', body)
    assert match, "the page shows no token"
    return match.group(1)


def flashes(response: Any) -> list[str]:
    return [str(m) for m in response.wsgi_request._messages]


@pytest.fixture
def world(db: None) -> dict[str, Any]:
    payments = factories.TeamFactory(name="payments")
    research = factories.TeamFactory(name="research")
    admin = factories.tenant_admin()
    manifests.apply(parse_yaml(PROVIDERS), actor=principal_for_user(admin))
    return {
        "payments": payments,
        "research": research,
        "admin": admin,
        "manager": factories.team_manager_of(payments),
        "member": factories.team_member_of(payments),
        "manager_elsewhere": factories.team_manager_of(research),
    }


def create_account(
    world: dict[str, Any],
    name: str,
    team: str = "payments",
    created_via: str = "console",
    **spec: Any,
) -> tuple[VirtualAccount, str]:
    return va.va_create(
        actor=principal_for_user(world["admin"]),
        spec=va.VirtualAccountSpec(
            name=name,
            owner_team=team,
            permissions=[
                va.PermissionSpec("provider-account-access", "provider-account", "openai-main")
            ],
            **spec,
        ),
        created_via=created_via,
    )


def closed_vault_store(name: str = "vault-main") -> SecretStore:
    """A Vault store nothing listens at (writes fail fast with a safe message)."""
    return store_services.secret_store_put_config(
        actor=factories.principal(factories.tenant_admin()),
        name=name,
        kind="hashicorp/vault",
        config={"url": f"http://127.0.0.1:{free_port()}"},
        credentials={"token": VAULT_TOKEN},
    )


def login(client: Any, user: User) -> Any:
    client.force_login(user)
    return client


def state(account: VirtualAccount) -> list[tuple[str, str]]:
    return sorted(TokenSecret.objects.filter(token__account=account).values_list("digest", "state"))


# --- navigation and the list -------------------------------------------------------------------


def test_navigation_links_virtual_accounts_for_readers_only(client, world):
    login(client, world["manager"])
    page = client.get(reverse("teams:team_list")).content.decode()
    assert '<a class="nav-item" href="/access/virtual-accounts/">' in page
    assert "<span>Secret Stores</span>" not in page

    login(client, world["member"])
    page = client.get(reverse("teams:team_list")).content.decode()
    assert "<span>Virtual Account Tokens</span>" not in page

    login(client, world["admin"])
    page = client.get(reverse("accounts:virtual_account_list")).content.decode()
    assert 'href="/access/virtual-accounts/" aria-current="page"' in page
    assert '<a class="nav-item" href="/settings/secret-stores/">' in page


def test_manager_lists_only_their_teams_accounts(client, world):
    create_account(world, "pay-bot")
    create_account(world, "lab-bot", team="research")
    login(client, world["manager"])

    response = client.get(reverse("accounts:virtual_account_list"))

    body = response.content.decode()
    assert response.status_code == 200
    assert 'data-testid="va-pay-bot"' in body
    assert "lab-bot" not in body
    assert "team payments" in body
    assert "openai-main (every model)" in body
    assert 'href="/access/virtual-accounts/pay-bot/#manage-tokens">Manage tokens</a>' in body


def test_list_searches_and_paginates(client, world):
    for i in range(27):
        create_account(world, f"bot-{i:02d}")
    create_account(world, "lab-bot", team="research")
    login(client, world["admin"])

    first = client.get(reverse("accounts:virtual_account_list")).content.decode()
    second = client.get(reverse("accounts:virtual_account_list") + "?page=2").content.decode()
    found = client.get(reverse("accounts:virtual_account_list") + "?q=research").content.decode()

    assert "Showing 1\u201325 of 28" in first
    assert "Showing 26\u201328 of 28" in second
    assert re.findall(r"<tr data-testid=\"va-([a-z0-9-]+)\"", found) == ["lab-bot"]


def test_list_makes_no_query_per_row(client, world):
    login(client, world["admin"])
    url = reverse("accounts:virtual_account_list")
    create_account(world, "bot-a")
    client.get(url)  # warm caches (content types, sessions)

    with CaptureQueriesContext(connection) as one:
        client.get(url)
    for i in range(8):
        create_account(world, f"bot-more-{i}")
    with CaptureQueriesContext(connection) as nine:
        client.get(url)

    assert len(nine.captured_queries) == len(one.captured_queries)


def test_sync_status_badges(client, world):
    store = closed_vault_store()
    ok, _ = create_account(world, "ok-bot", secret_store=store.name, secret_path="gw/ok")
    bad, _ = create_account(world, "bad-bot", secret_store=store.name, secret_path="gw/bad")
    create_account(world, "new-bot", secret_store=store.name, secret_path="gw/new")
    VirtualAccount.objects.filter(pk=ok.pk).update(synced_at=timezone.now())
    VirtualAccount.objects.filter(pk=bad.pk).update(sync_error="could not reach Vault")
    login(client, world["admin"])

    body = client.get(reverse("accounts:virtual_account_list")).content.decode()

    badges = re.findall(
        r'<tr data-testid="va-([a-z-]+)".*?(?:data-testid="sync-status">([^<]+)<|</tr>)',
        body,
        re.S,
    )
    assert dict(badges) == {"bad-bot": "Sync failed", "new-bot": "Pending", "ok-bot": "Synced"}


# --- delegation --------------------------------------------------------------------------------


def manager_read_only(world: dict[str, Any]) -> User:
    Role.objects.filter(slug="team-manager").update(
        permissions=["team:ReadTeam", "virtual-account:ReadVirtualAccount"]
    )
    manager: User = world["manager"]
    return manager


ACTORS: dict[str, Callable[[dict[str, Any]], User]] = {
    "tenant admin": lambda w: w["admin"],
    "manager of the owning team": lambda w: w["manager"],
    "manager who may only read": manager_read_only,
    "member of the owning team": lambda w: w["member"],
    "manager of another team": lambda w: w["manager_elsewhere"],
}
# detail, regenerate, sync, delete (confirm page), delete
EXPECTED = {
    "tenant admin": (200, 200, 302, 200, 302),
    "manager of the owning team": (200, 200, 302, 200, 302),
    "manager who may only read": (200, 403, 403, 403, 403),
    "member of the owning team": (404, 404, 404, 404, 404),
    "manager of another team": (404, 404, 404, 404, 404),
}


@pytest.mark.parametrize("who", list(ACTORS))
def test_delegation(client, world, who, monkeypatch):
    store = closed_vault_store()
    account, _ = create_account(world, "pay-bot", secret_store=store.name, secret_path="gw/pay")
    queued: list[int] = []
    monkeypatch.setattr("accounts.tasks.secret_store_sync_task.delay", queued.append)
    login(client, ACTORS[who](world))
    before = state(account)
    name = account.name

    statuses = (
        client.get(reverse("accounts:virtual_account_detail", args=[name])).status_code,
        client.post(
            reverse("accounts:virtual_account_token_regenerate", args=[name]),
            {"grace_period_days": "1"},
        ).status_code,
        client.post(reverse("accounts:virtual_account_sync", args=[name])).status_code,
        client.get(reverse("accounts:virtual_account_delete", args=[name])).status_code,
    )
    after_regenerate = state(account)
    deleted = client.post(reverse("accounts:virtual_account_delete", args=[name])).status_code

    assert (*statuses, deleted) == EXPECTED[who]
    allowed = EXPECTED[who][1] == 200
    assert (after_regenerate != before) is allowed
    assert VirtualAccount.objects.filter(pk=account.pk).exists() is not allowed


def test_create_form_offers_only_what_the_manager_may_use(client, world):
    login(client, world["manager"])

    form = client.get(reverse("accounts:virtual_account_create")).context["form"]

    assert form.fields["owner_team"].choices == [("", "Choose a team"), ("payments", "payments")]
    assert form.fields["permissions"].choices == [
        ("Provider accounts", [(OPENAI_ACCESS, "openai-main (every model)")]),
        (
            "Models",
            [
                ("provider-integration-access|openai-main/gpt-4o", "openai-main/gpt-4o"),
                ("provider-integration-access|openai-main/o1", "openai-main/o1"),
            ],
        ),
    ]


def test_manager_cannot_create_for_another_team_or_grant_more(client, world):
    login(client, world["manager"])
    url = reverse("accounts:virtual_account_create")
    base = {"name": "pay-bot", "owner_team": "payments", "permissions": [OPENAI_ACCESS]}
    base |= {"expiration": "never"}

    other_team = client.post(url, base | {"owner_team": "research"})
    more = client.post(url, base | {"permissions": ["provider-account-access|anthropic-main"]})

    assert other_team.status_code == 400
    assert "Select a valid choice" in str(other_team.context["form"].errors["owner_team"])
    assert more.status_code == 400
    assert "permissions" in more.context["form"].errors
    assert not VirtualAccount.objects.exists()


# --- create: the token once --------------------------------------------------------------------


def test_create_shows_the_token_once(client, world):
    login(client, world["manager"])

    response = client.post(
        reverse("accounts:virtual_account_create"),
        {
            "name": "pay-bot",
            "owner_team": "payments",
            "permissions": [OPENAI_ACCESS, "provider-integration-access|openai-main/o1"],
            "expiration": "30",
            "auto_rotate": "on",
            "rotate_interval_days": "90",
            "grace_period_days": "7",
            "notify_type": "webhook",
            "webhook_url": "https://hooks.example.com/gw",
            "webhook_secret": "whsec-console-0123456789",
        },
    )

    body = response.content.decode()
    raw = raw_token(body)
    assert response.status_code == 200
    assert "It will not be shown again" in body
    assert 'data-copy="#raw-token"' in body
    assert "no-store" in response["Cache-Control"]
    assert raw.startswith("gw_va_pay-bot_")
    assert raw not in json.dumps(flashes(response))
    account = VirtualAccount.objects.get(name="pay-bot")
    assert account.owner_team == world["payments"]
    assert account.expiration_date == timezone.now().date() + timedelta(days=30)
    assert (account.auto_rotate_interval_days, account.grace_period_days) == (90, 7)
    assert account.notification_target == {
        "type": "webhook",
        "url": "https://hooks.example.com/gw",
        "secret": "whsec-console-0123456789",
    }
    assert sorted(account.permissions.values_list("role_id", "resource_fqn")) == [
        ("provider-account-access", "openai-main"),
        ("provider-integration-access", "openai-main/o1"),
    ]
    grant = grant_for_token(raw)
    assert grant is not None
    assert grant.principal.subject == "virtualaccount:pay-bot"
    assert TokenSecret.objects.get().undelivered == ""  # nothing kept to show again

    detail = client.get(reverse("accounts:virtual_account_detail", args=["pay-bot"]))
    page = detail.content.decode()
    assert raw not in page
    assert "whsec-console-0123456789" not in page
    assert "Webhook https://hooks.example.com/gw (signed)" in page
    assert "Get token" not in page
    again = client.post(reverse("accounts:virtual_account_token_get", args=["pay-bot"]))
    assert again.status_code == 302
    assert raw not in again.content.decode()


def test_create_errors_land_on_their_fields(client, world):
    login(client, world["admin"])
    create_account(world, "pay-bot")
    url = reverse("accounts:virtual_account_create")

    taken = client.post(
        url,
        {
            "name": "pay-bot",
            "owner_team": "payments",
            "permissions": [OPENAI_ACCESS],
            "expiration": "never",
        },
    )
    bad = client.post(
        url,
        {
            "name": "Bad_Name",
            "owner_team": "payments",
            "permissions": [OPENAI_ACCESS],
            "expiration": "never",
            "auto_rotate": "on",
            "rotate_interval_days": "7",
            "notify_type": "slack-webhook",
            "slack_webhook_url": "https://evil.example.com/x",
            "secret_store": "",
        },
    )

    assert taken.status_code == 400
    assert taken.context["form"].errors["name"] == [
        "a virtual account named 'pay-bot' already exists"
    ]
    assert bad.status_code == 400
    errors = bad.context["form"].errors
    assert set(errors) == {"rotate_interval_days", "grace_period_days", "slack_webhook_url"}
    assert VirtualAccount.objects.count() == 1


# --- manage tokens -----------------------------------------------------------------------------


def test_manage_tokens_lists_versions_without_values(client, world):
    account, raw = create_account(world, "pay-bot")
    login(client, world["manager"])
    va.va_token_regenerate(
        actor=principal_for_user(world["admin"]), account=account, grace_period_days=3
    )

    body = client.get(reverse("accounts:virtual_account_detail", args=["pay-bot"])).content
    page = body.decode()

    token = account.tokens.get()
    assert f'data-testid="token-id">{token.pk}<' in page
    prefixes = list(TokenSecret.objects.order_by("-created_at").values_list("prefix", "state"))
    rows = re.findall(r"<code>([^<]+)…</code></td>\s*<td><span class=\"badge [a-z-]+\">(\w+)", page)
    assert rows == prefixes
    assert raw not in page


def test_regenerate_with_zero_grace_retires_the_old_token(client, world):
    _account, old = create_account(world, "pay-bot")
    login(client, world["manager"])

    response = client.post(
        reverse("accounts:virtual_account_token_regenerate", args=["pay-bot"]),
        {"grace_period_days": "0"},
    )

    body = response.content.decode()
    new = raw_token(body)
    assert "no-store" in response["Cache-Control"]
    assert "stopped working now" in body
    assert grant_for_token(old) is None
    assert grant_for_token(new) is not None
    assert sorted(TokenSecret.objects.values_list("state", flat=True)) == ["current", "retired"]


def test_regenerate_keeps_the_old_token_for_the_chosen_grace(client, world):
    _account, old = create_account(world, "pay-bot")
    login(client, world["manager"])
    default = client.get(reverse("accounts:virtual_account_detail", args=["pay-bot"]))
    assert default.context["regenerate_form"].initial == {"grace_period_days": 30}

    response = client.post(
        reverse("accounts:virtual_account_token_regenerate", args=["pay-bot"]),
        {"grace_period_days": "2"},
    )

    new = raw_token(response.content.decode())
    assert grant_for_token(old) is not None
    assert grant_for_token(new) is not None
    previous = TokenSecret.objects.get(state="previous")
    assert previous.expires_at is not None
    assert timedelta(days=1, hours=23) < previous.expires_at - timezone.now() <= timedelta(days=2)


def test_regenerate_refuses_a_bad_grace_period(client, world):
    account, _ = create_account(world, "pay-bot")
    login(client, world["manager"])
    before = state(account)

    response = client.post(
        reverse("accounts:virtual_account_token_regenerate", args=["pay-bot"]),
        {"grace_period_days": "-1"},
    )

    assert response.status_code == 400
    assert response.context["regenerate_form"].errors["grace_period_days"]
    assert state(account) == before


def test_get_token_once_for_an_account_created_from_yaml(client, world):
    _account, _ = create_account(world, "gitops-bot", created_via="apply")
    login(client, world["manager"])
    detail = client.get(reverse("accounts:virtual_account_detail", args=["gitops-bot"]))
    assert "Get token" in detail.content.decode()

    first = client.post(reverse("accounts:virtual_account_token_get", args=["gitops-bot"]))
    second = client.post(reverse("accounts:virtual_account_token_get", args=["gitops-bot"]))

    raw = raw_token(first.content.decode())
    assert "no-store" in first["Cache-Control"]
    assert grant_for_token(raw) is not None
    assert second.status_code == 302
    assert flashes(second) == ["this token was already delivered; regenerate it to get a new one"]
    after = client.get(reverse("accounts:virtual_account_detail", args=["gitops-bot"]))
    assert "Get token" not in after.content.decode()


def test_sync_now_queues_a_store_write(
    client, world, monkeypatch, django_capture_on_commit_callbacks
):
    store = closed_vault_store()
    account, _ = create_account(world, "pay-bot", secret_store=store.name, secret_path="gw/pay")
    plain, _ = create_account(world, "plain-bot")
    VirtualAccount.objects.filter(pk=account.pk).update(sync_error="could not reach Vault")
    queued: list[int] = []
    monkeypatch.setattr("accounts.tasks.secret_store_sync_task.delay", queued.append)
    login(client, world["manager"])
    page = client.get(reverse("accounts:virtual_account_detail", args=["pay-bot"])).content
    assert b'data-testid="sync-error"' in page
    assert b"could not reach Vault" in page
    assert b"Sync now" in page
    assert (
        b"Sync now"
        not in client.get(reverse("accounts:virtual_account_detail", args=["plain-bot"])).content
    )

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("accounts:virtual_account_sync", args=["pay-bot"]))
    with django_capture_on_commit_callbacks(execute=True):
        refused = client.post(reverse("accounts:virtual_account_sync", args=["plain-bot"]))

    assert response.status_code == 302
    assert queued == [account.pk]
    assert flashes(response) == ["Sync queued: the token is being written to the secret store."]
    assert flashes(refused)[-1] == "secret_store_config: this account has no secret store"
    assert plain.pk not in queued


def test_delete_asks_then_deletes(client, world):
    _account, raw = create_account(world, "pay-bot")
    login(client, world["manager"])

    confirm = client.get(reverse("accounts:virtual_account_delete", args=["pay-bot"]))
    deleted = client.post(reverse("accounts:virtual_account_delete", args=["pay-bot"]))

    assert "Delete virtual account" in confirm.content.decode()
    assert deleted["Location"] == reverse("accounts:virtual_account_list")
    assert not VirtualAccount.objects.exists()
    assert grant_for_token(raw) is None


def test_yaml_page_shows_and_applies_the_manifest(client, world):
    create_account(world, "pay-bot")
    login(client, world["manager"])
    url = reverse("accounts:virtual_account_yaml", args=["pay-bot"])

    shown = client.get(url)
    text = html.unescape(shown.content.decode())
    applied = client.post(
        url,
        {
            "action": "apply",
            "manifest": (
                "type: virtual-account\nname: pay-bot\nownedBy: {team: payments}\n"
                "permissions:\n  - {role_id: provider-integration-access, resource_type: "
                "provider-integration, resource_fqn: openai-main/o1}\n"
            ),
        },
    )

    assert shown.status_code == 200
    assert "resource_fqn: openai-main" in text
    assert applied.status_code == 302
    assert applied["Location"] == reverse("accounts:virtual_account_detail", args=["pay-bot"])
    assert list(
        VirtualAccount.objects.get().permissions.values_list("resource_fqn", flat=True)
    ) == ["openai-main/o1"]


# --- secret stores -----------------------------------------------------------------------------


def vault_form(url: str, **extra: str) -> dict[str, str]:
    return {
        "name": "vault-main",
        "kind": "hashicorp/vault",
        "vault_url": url,
        "vault_mount": "",
        "vault_namespace": "",
        "vault_token": VAULT_TOKEN,
        **extra,
    }


def test_secret_store_pages_need_settings_permissions(client, world):
    closed_vault_store()
    login(client, world["manager"])

    statuses = [
        client.get(reverse("accounts:secret_store_list")).status_code,
        client.get(reverse("accounts:secret_store_detail", args=["vault-main"])).status_code,
        client.get(reverse("accounts:secret_store_create")).status_code,
        client.post(reverse("accounts:secret_store_test", args=["vault-main"])).status_code,
        client.post(reverse("accounts:secret_store_delete", args=["vault-main"])).status_code,
    ]

    assert statuses == [403, 403, 403, 403, 403]
    assert SecretStore.objects.filter(name="vault-main").exists()


def test_secret_store_credentials_are_write_only(client, world):
    login(client, world["admin"])
    url = f"http://127.0.0.1:{free_port()}"

    created = client.post(reverse("accounts:secret_store_create"), vault_form(url))

    assert created.status_code == 302
    assert created["Location"] == reverse("accounts:secret_store_detail", args=["vault-main"])
    store = SecretStore.objects.get(name="vault-main")
    assert store.config == {"url": url}
    assert json.loads(store.credentials) == {"type": "token", "token": VAULT_TOKEN}
    pages = {
        "list": client.get(reverse("accounts:secret_store_list")),
        **{
            name: client.get(reverse(f"accounts:secret_store_{name}", args=["vault-main"]))
            for name in ("detail", "edit", "yaml")
        },
    }
    for name, page in pages.items():
        assert page.status_code == 200, name
        assert VAULT_TOKEN not in page.content.decode(), name
    assert "(set)" in pages["detail"].content.decode()
    assert "(set)" in pages["edit"].content.decode()
    assert "no-store" in pages["edit"]["Cache-Control"]

    kept = client.post(
        reverse("accounts:secret_store_edit", args=["vault-main"]),
        vault_form(url, vault_token="", vault_mount="kv"),
    )
    store.refresh_from_db()
    assert kept.status_code == 302
    assert store.config == {"url": url, "mount": "kv"}
    assert json.loads(store.credentials)["token"] == VAULT_TOKEN

    client.post(
        reverse("accounts:secret_store_edit", args=["vault-main"]),
        vault_form(url, vault_token="hvs.replaced-0123456789", vault_mount="kv"),
    )
    store.refresh_from_db()
    assert json.loads(store.credentials)["token"] == "hvs.replaced-0123456789"


def test_secret_store_form_errors_land_on_the_kinds_fields(client, world):
    login(client, world["admin"])
    closed_vault_store()

    missing = client.post(
        reverse("accounts:secret_store_create"),
        {"name": "aws-main", "kind": "aws/secrets-manager", "aws_region": "mars"},
    )
    taken = client.post(reverse("accounts:secret_store_create"), vault_form("http://127.0.0.1:1"))

    assert missing.status_code == 400
    assert set(missing.context["form"].errors) == {"aws_access_key_id", "aws_secret_access_key"}
    invalid = client.post(
        reverse("accounts:secret_store_create"),
        {
            "name": "aws-main",
            "kind": "aws/secrets-manager",
            "aws_region": "mars",
            "aws_access_key_id": "AKIAIOSFODNN7EXAMPLE",
            "aws_secret_access_key": "x" * 40,
        },
    )
    assert invalid.status_code == 400
    assert list(invalid.context["form"].errors) == ["aws_region"]
    assert taken.status_code == 400
    assert taken.context["form"].errors["name"] == ["A secret store with this name already exists."]
    assert list(SecretStore.objects.values_list("name", flat=True)) == ["vault-main"]


def test_test_connection_reports_a_failure_safely(client, world):
    closed_vault_store()
    login(client, world["admin"])

    response = client.post(reverse("accounts:secret_store_test", args=["vault-main"]))

    assert response.status_code == 302
    assert flashes(response) == [
        "Test connection failed: secret store 'vault-main': could not reach Vault"
    ]


@pytest.mark.slow
def test_test_connection_succeeds_against_openbao(client, world, openbao):  # noqa: F811
    login(client, world["admin"])
    client.post(reverse("accounts:secret_store_create"), vault_form(openbao, vault_token="root"))

    response = client.post(reverse("accounts:secret_store_test", args=["vault-main"]))

    assert flashes(response)[-1] == (
        "Test connection: connected to Vault; token valid (policies: root)"
    )


def test_delete_of_a_store_in_use_is_refused_with_the_reason(client, world):
    store = closed_vault_store()
    create_account(world, "pay-bot", secret_store=store.name, secret_path="gw/pay")
    login(client, world["admin"])

    refused = client.post(reverse("accounts:secret_store_delete", args=["vault-main"]))

    assert refused.status_code == 302
    assert flashes(refused) == [
        "secret store 'vault-main' is used by virtual accounts: pay-bot."
        " Move them to another store first."
    ]
    assert SecretStore.objects.filter(name="vault-main").exists()
    VirtualAccount.objects.all().delete()
    deleted = client.post(reverse("accounts:secret_store_delete", args=["vault-main"]))
    assert deleted["Location"] == reverse("accounts:secret_store_list")
    assert not SecretStore.objects.exists()


def test_secret_store_credential_shapes_switch_without_keeping_the_old_secret(client, world):
    login(client, world["admin"])
    form = {
        "name": "azure-main",
        "kind": "azure/vault",
        "azure_vault_url": "https://gw.vault.azure.net",
        "azure_verify_challenge_resource": "on",
        "azure_auth_type": "access-token",
        "azure_access_token": "eyJ.azure-token-0123456789",
    }

    created = client.post(reverse("accounts:secret_store_create"), form)
    store = SecretStore.objects.get(name="azure-main")
    switched = client.post(
        reverse("accounts:secret_store_edit", args=["azure-main"]),
        form
        | {
            "azure_auth_type": "client-secret",
            "azure_access_token": "",
            "azure_tenant_id": "tenant-1",
            "azure_client_id": "client-1",
        },
    )

    assert created.status_code == 302
    assert store.config == {"vault_url": "https://gw.vault.azure.net"}
    assert json.loads(store.credentials) == {
        "type": "access-token",
        "access_token": "eyJ.azure-token-0123456789",
    }
    assert switched.status_code == 400
    assert switched.context["form"].errors == {"azure_client_secret": ["This field is required."]}
    store.refresh_from_db()
    assert json.loads(store.credentials)["type"] == "access-token"


def test_new_from_yaml_starters_validate(client, world):
    principal = principal_for_user(world["admin"])
    login(client, world["admin"])
    page = client.get(reverse("accounts:manifest_apply")).content.decode()  # loads the views
    mine = {
        s.manifest_type: s
        for s in starters()
        if s.manifest_type in ("virtual-account", "integration/secret-store/hashicorp/vault")
    }

    assert sorted(mine) == ["integration/secret-store/hashicorp/vault", "virtual-account"]
    for manifest_type, starter in mine.items():
        [item] = manifests.validate_all(parse_yaml(starter.render(principal)))
        assert item.kind.manifest_type == manifest_type
        assert f'href="?type={manifest_type}"' in page
