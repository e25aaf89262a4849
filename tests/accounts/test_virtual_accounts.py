"""Virtual accounts: delegation, tokens shown once, regeneration with grace, expiry, manifests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from accounts import virtual_accounts as va
from accounts.models import AuditEvent, Role, TokenSecret, User, VirtualAccount
from accounts.policy import Permission, decide
from accounts.selectors import principal_for_user
from gateway_project import manifests
from gateway_project.manifest_io import ManifestError, parse_yaml
from providers.models import ProviderAccount
from proxy.auth import grant_for_token
from teams.models import Team
from tests import factories
from tests.conftest import bearer

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


def body(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "billing-bot",
        "ownedBy": {"team": "payments"},
        "permissions": [
            {
                "role_id": "provider-account-access",
                "resource_type": "provider-account",
                "resource_fqn": "openai-main",
            },
        ],
    }
    return {**base, **changes}


@pytest.fixture
def world(db: None) -> dict[str, Any]:
    payments = factories.TeamFactory(name="payments")
    research = factories.TeamFactory(name="research")
    admin = factories.tenant_admin()
    manifests.apply(parse_yaml(PROVIDERS), actor=principal_for_user(admin))
    return {
        "payments": payments,
        "admin": admin,
        "manager": factories.team_manager_of(payments),
        "member": factories.team_member_of(payments),
        "manager_elsewhere": factories.team_manager_of(research),
    }


def manager_without_va_permissions(world: dict[str, Any]) -> Any:
    Role.objects.filter(slug="team-manager").update(
        permissions=["team:ReadTeam", "team:ManageTeam"]
    )
    return world["manager"]


ACTORS: dict[str, Callable[[dict[str, Any]], User]] = {
    "admin": lambda w: w["admin"],
    "manager": lambda w: w["manager"],
    "manager_without_permissions": manager_without_va_permissions,
    "member": lambda w: w["member"],
    "manager_elsewhere": lambda w: w["manager_elsewhere"],
}
# create, read, regenerate, delete
EXPECTED = {
    "admin": (201, 200, 200, 204),
    "manager": (201, 200, 200, 204),
    "manager_without_permissions": (403, 404, 404, 404),
    "member": (403, 404, 404, 404),
    "manager_elsewhere": (403, 404, 404, 404),
}


@pytest.mark.parametrize("who", list(ACTORS))
def test_delegation_table(world, api_client, who):
    existing, _ = va.va_create(
        actor=principal_for_user(world["admin"]),
        spec=va.VirtualAccountSpec(
            name="existing-bot",
            owner_team="payments",
            permissions=[
                va.PermissionSpec("provider-account-access", "provider-account", "openai-main")
            ],
        ),
    )
    user = ACTORS[who](world)
    bearer(api_client, user)
    before = set(TokenSecret.objects.values_list("digest", flat=True))

    create = api_client.post("/api/v1/virtual-accounts", body(), format="json")
    read = api_client.get("/api/v1/virtual-accounts/existing-bot")
    regenerate = api_client.post(
        "/api/v1/virtual-accounts/existing-bot/regenerate-token",
        {"grace_period_days": 1},
        format="json",
    )
    after_regenerate = set(
        TokenSecret.objects.filter(token__account=existing).values_list("digest", flat=True)
    )
    delete = api_client.delete("/api/v1/virtual-accounts/existing-bot")

    statuses = (create.status_code, read.status_code, regenerate.status_code, delete.status_code)
    assert statuses == EXPECTED[who], [r.content for r in (create, read, regenerate, delete)]
    if EXPECTED[who][0] != 201:
        assert not VirtualAccount.objects.filter(name="billing-bot").exists()
    if EXPECTED[who][2] != 200:
        assert after_regenerate <= before
        assert VirtualAccount.objects.filter(name="existing-bot").exists()


def test_create_answers_the_token_once_and_it_carries_exactly_the_grants(world, api_client):
    bearer(api_client, world["manager"])
    created = api_client.post("/api/v1/virtual-accounts", body(), format="json")
    raw = created.json()["token"]
    assert raw.startswith("gw_va_billing-bot_")
    assert created["Cache-Control"] == "no-store"
    listing = api_client.get("/api/v1/virtual-accounts").content.decode()
    assert raw not in listing
    assert raw not in str(list(AuditEvent.objects.values_list("before", "after")))

    grant = grant_for_token(raw)
    assert grant is not None
    principal = grant.principal
    account = ProviderAccount.objects.get(name="openai-main")
    anthropic = ProviderAccount.objects.get(name="anthropic-main")
    assert principal.kind == "virtual_account"
    assert decide(principal, Permission.PROVIDER_ACCOUNT_USE, target=(account.pk, "gpt-4o")).allowed
    assert not decide(
        principal, Permission.PROVIDER_ACCOUNT_USE, target=(anthropic.pk, "claude")
    ).allowed
    assert not principal.holds(Permission.TEAM_MANAGE, world["payments"].pk)
    assert principal.member_team_ids == {world["payments"].pk}


def test_a_virtual_account_cannot_get_more_than_its_creator_can_use(world, api_client):
    bearer(api_client, world["manager"])  # payments can use openai-main, not anthropic-main
    response = api_client.post(
        "/api/v1/virtual-accounts",
        body(
            permissions=[
                {
                    "role_id": "provider-integration-access",
                    "resource_type": "provider-integration",
                    "resource_fqn": "anthropic-main/claude",
                }
            ]
        ),
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "permissions[0].resource_fqn": [
            "'anthropic-main/claude' does not exist or you cannot grant it"
        ]
    }
    assert not VirtualAccount.objects.exists()


def test_bad_manifest_fields_are_named(world, api_client):
    bearer(api_client, world["admin"])
    response = api_client.post(
        "/api/v1/virtual-accounts",
        body(name="Bad_Name", auto_rotate={"auto_rotate_interval": 7}),
        format="json",
    )
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert set(fields) == {"name", "auto_rotate.auto_rotate_interval"}
    assert (
        api_client.post("/api/v1/virtual-accounts", body(permissions=[]), format="json").status_code
        == 400
    )


def test_regenerate_keeps_the_old_token_for_the_grace_period(world):
    admin = principal_for_user(world["admin"])
    account, old = va.va_create(
        actor=admin,
        spec=va.VirtualAccountSpec(
            name="bot",
            owner_team="payments",
            permissions=[
                va.PermissionSpec("provider-account-access", "provider-account", "openai-main")
            ],
        ),
    )
    token_id = account.tokens.get().pk
    token, new = va.va_token_regenerate(actor=admin, account=account, grace_period_days=7)
    assert token.pk == token_id  # the id automation tracks does not change
    assert grant_for_token(new) is not None
    assert grant_for_token(old) is not None
    states = dict(TokenSecret.objects.values_list("state", "expires_at"))
    assert set(states) == {"current", "previous"}
    previous_end = states["previous"]
    assert previous_end is not None
    assert timedelta(days=6, hours=23) < previous_end - timezone.now() <= timedelta(days=7)
    TokenSecret.objects.filter(state="previous").update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert grant_for_token(old) is None
    assert grant_for_token(new) is not None


def test_regenerate_with_zero_grace_retires_the_old_token_at_once(world):
    admin = principal_for_user(world["admin"])
    account, old = va.va_create(
        actor=admin,
        spec=va.VirtualAccountSpec(
            name="bot",
            owner_team="payments",
            permissions=[
                va.PermissionSpec("provider-account-access", "provider-account", "openai-main")
            ],
        ),
    )
    _, new = va.va_token_regenerate(actor=admin, account=account, grace_period_days=0)
    assert grant_for_token(old) is None
    assert grant_for_token(new) is not None
    assert TokenSecret.objects.filter(state="current").count() == 1


def test_expiry_is_enforced_and_cannot_be_changed(world):
    admin = principal_for_user(world["admin"])
    expires = timezone.now().date() + timedelta(days=2)
    spec = va.VirtualAccountSpec(
        name="temp-bot",
        owner_team="payments",
        permissions=[
            va.PermissionSpec("provider-account-access", "provider-account", "openai-main")
        ],
        expiration_date=expires,
    )
    account, raw = va.va_create(actor=admin, spec=spec)
    grant = grant_for_token(raw)
    assert grant is not None
    assert grant.expires_at is not None
    from dataclasses import replace

    from gateway_project.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as info:
        va.va_update(
            actor=admin,
            account=account,
            spec=replace(spec, expiration_date=expires + timedelta(days=30)),
        )
    assert list(info.value.fields) == ["expiration_date"]
    TokenSecret.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert grant_for_token(raw) is None


def test_get_token_once_for_accounts_created_by_apply(world):
    admin = principal_for_user(world["admin"])
    text = """\
type: virtual-account
name: gitops-bot
ownedBy: {team: payments}
permissions:
  - role_id: provider-integration-access
    resource_type: provider-integration
    resource_fqn: openai-main/gpt-4o
auto_rotate: {auto_rotate_interval: 90, grace_period: 7}
tags: {cost-center: "42"}
"""
    results = manifests.apply(parse_yaml(text), actor=admin)
    assert results[0].notes == ["token issued: fetch it from 'Get token' (once)"]
    account = VirtualAccount.objects.get(name="gitops-bot")
    raw = va.va_token_reveal(actor=admin, account=account)
    assert grant_for_token(raw) is not None
    from gateway_project.errors import Conflict

    with pytest.raises(Conflict):
        va.va_token_reveal(actor=admin, account=account)
    again = manifests.apply(parse_yaml(text), actor=admin)
    assert [r.action for r in again] == ["unchanged"]
    exported = manifests.kinds()["virtual-account"].current("gitops-bot")
    assert exported == parse_yaml(text)[0].data


def test_manifest_owner_must_exist_and_everyone_cannot_own(world):
    admin = principal_for_user(world["admin"])
    text = """\
type: virtual-account
name: orphan-bot
ownedBy: {team: everyone}
permissions:
  - {role_id: provider-account-access, resource_type: provider-account, resource_fqn: openai-main}
"""
    with pytest.raises(ManifestError) as info:
        manifests.apply(parse_yaml(text), actor=admin)
    assert [p.path for p in info.value.problems] == ["ownedBy.team"]
    assert not VirtualAccount.objects.exists()


def test_virtual_account_tokens_authenticate_the_api_with_no_rights(world, api_client):
    _, raw = va.va_create(
        actor=principal_for_user(world["admin"]),
        spec=va.VirtualAccountSpec(
            name="bot",
            owner_team="payments",
            permissions=[
                va.PermissionSpec("provider-account-access", "provider-account", "openai-main")
            ],
        ),
    )
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api_client.get("/api/v1/me").json() == {
        "subject": "virtualaccount:bot",
        "kind": "virtual_account",
    }
    assert api_client.get("/api/v1/users").status_code == 403
    assert (
        api_client.post("/api/v1/personal-access-tokens", {"name": "x"}, format="json").status_code
        == 403
    )
    assert api_client.post("/api/v1/teams", {"name": "grab"}, format="json").status_code == 403
    assert not Team.objects.filter(name="grab").exists()


def test_notification_target_secrets_export_as_references_and_round_trip(world):
    admin = principal_for_user(world["admin"])
    text = """\
type: virtual-account
name: hooked-bot
ownedBy: {team: payments}
permissions:
  - {role_id: provider-account-access, resource_type: provider-account, resource_fqn: openai-main}
notification_target: {type: webhook, url: "https://hooks.example.com/in", secret: "whsec-canary-1"}
"""
    manifests.apply(parse_yaml(text), actor=admin)
    exported = manifests.kinds()["virtual-account"].current("hooked-bot")
    assert exported is not None
    target = exported["notification_target"]
    assert target["secret"].startswith("gw-secret://virtual-account/hooked-bot/")
    assert "whsec-canary-1" not in str(exported)
    from gateway_project.manifest_io import Document

    results = manifests.apply([Document(exported)], actor=admin)
    assert [r.action for r in results] == ["unchanged"]
    stored = VirtualAccount.objects.get(name="hooked-bot").notification_target
    assert stored == {
        "type": "webhook",
        "url": "https://hooks.example.com/in",
        "secret": "whsec-canary-1",
    }


def test_bad_notification_target_names_the_field(world):
    admin = principal_for_user(world["admin"])
    from gateway_project.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as info:
        va.va_create(
            actor=admin,
            spec=va.VirtualAccountSpec(
                name="bad-target",
                owner_team="payments",
                permissions=[
                    va.PermissionSpec("provider-account-access", "provider-account", "openai-main")
                ],
                notification_target={"type": "email", "to_emails": ["not-an-email"]},
            ),
        )
    assert list(info.value.fields) == ["notification_target.to_emails.0"]
    assert not VirtualAccount.objects.filter(name="bad-target").exists()
