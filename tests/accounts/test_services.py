"""Service rules that span rows: escalation, last admin, deactivation, bindings, audit."""

from __future__ import annotations

import pytest

from accounts import selectors, services
from accounts.models import AuditEvent, PersonalAccessToken, Role, RoleBinding, User
from accounts.policy import Permission, PolicyDenied, Principal
from gateway_project.errors import Conflict, ValidationFailed
from teams import services as team_services
from teams.models import Team
from tests import factories

pytestmark = pytest.mark.django_db


def test_user_manager_cannot_invite_a_tenant_admin():
    role = Role.objects.create(
        slug="user-admin",
        display_name="U",
        resource_type="tenant",
        permissions=["user:ManageUsers"],
    )
    actor = factories.principal(factories.UserFactory(tenant_role_id=role.slug))

    with pytest.raises(PolicyDenied):
        services.user_invite(actor=actor, email="x@example.com", tenant_role="tenant-admin")

    assert not User.objects.filter(email="x@example.com").exists()


def test_role_holder_cannot_create_a_role_with_permissions_they_lack():
    role = Role.objects.create(
        slug="role-admin",
        display_name="R",
        resource_type="tenant",
        permissions=["role:ManageRoles", "team:ReadTeam"],
    )
    actor = factories.principal(factories.UserFactory(tenant_role_id=role.slug))

    allowed = services.role_create(
        actor=actor, slug="readers", display_name="Readers", permissions=["team:ReadTeam"]
    )
    with pytest.raises(PolicyDenied):
        services.role_create(
            actor=actor, slug="sneaky", display_name="S", permissions=["user:ManageUsers"]
        )

    assert allowed.permissions == ["team:ReadTeam"]
    assert not Role.objects.filter(slug="sneaky").exists()


def test_unknown_permission_is_a_field_error():
    admin = factories.principal(factories.tenant_admin())
    with pytest.raises(ValidationFailed) as info:
        services.role_create(
            actor=admin, slug="bad", display_name="B", permissions=["READ_ACCOUNT"]
        )
    assert info.value.fields == {"permissions": ["unknown permission(s): READ_ACCOUNT"]}


def test_team_role_accepts_only_team_scoped_permissions():
    admin = factories.principal(factories.tenant_admin())
    with pytest.raises(ValidationFailed) as info:
        services.role_create(
            actor=admin,
            slug="tm2",
            display_name="T",
            resource_type="team",
            permissions=["user:ManageUsers"],
        )
    assert info.value.fields == {"permissions": ["not valid in a team role: user:ManageUsers"]}


def test_builtin_fixed_roles_cannot_be_edited_but_team_manager_can():
    admin = factories.principal(factories.tenant_admin())
    with pytest.raises(Conflict):
        services.role_update(
            actor=admin, role=Role.objects.get(slug="member"), permissions=["team:ReadTeam"]
        )
    updated = services.role_update(
        actor=admin, role=Role.objects.get(slug="team-manager"), permissions=["team:ReadTeam"]
    )
    assert updated.permissions == ["team:ReadTeam"]
    assert Role.objects.get(slug="member").permissions == []


def test_team_manager_role_edit_changes_what_managers_may_do():
    team = factories.TeamFactory()
    manager = factories.team_manager_of(team)
    assert factories.principal(manager).holds(Permission.VIRTUAL_ACCOUNT_CREATE, team.pk)

    admin = factories.principal(factories.tenant_admin())
    services.role_update(
        actor=admin,
        role=Role.objects.get(slug="team-manager"),
        permissions=["team:ManageTeam", "team:ReadTeam"],
    )

    after = factories.principal(manager)
    assert not after.holds(Permission.VIRTUAL_ACCOUNT_CREATE, team.pk)
    assert after.holds(Permission.TEAM_MANAGE, team.pk)
    assert not after.holds(Permission.TEAM_MANAGE, None)


def test_last_active_admin_cannot_be_demoted_or_deactivated():
    only_admin = factories.tenant_admin()
    actor = factories.principal(only_admin)
    with pytest.raises(Conflict):
        services.user_update(actor=actor, user=only_admin, tenant_role="member")
    second = factories.tenant_admin()
    with pytest.raises(Conflict):
        services.user_set_active(actor=actor, user=only_admin, active=False)  # self
    services.user_set_active(actor=factories.principal(second), user=only_admin, active=False)
    with pytest.raises(Conflict):
        services.user_set_active(actor=actor, user=second, active=False)
    assert User.objects.get(pk=second.pk).is_active is True


def test_deactivated_user_tokens_stop_working_and_reactivation_restores_them():
    admin = factories.principal(factories.tenant_admin())
    user = factories.member()
    raw = factories.pat_for(user)
    assert selectors.pat_authenticate(raw) is not None

    services.user_set_active(actor=admin, user=user, active=False)
    assert selectors.pat_authenticate(raw) is None
    assert selectors.principal_for_user(User.objects.get(pk=user.pk)).kind == "anonymous"

    services.user_set_active(actor=admin, user=user, active=True)
    assert selectors.pat_authenticate(raw) is not None


def test_revoked_and_expired_pats_are_refused():
    from datetime import timedelta

    from django.utils import timezone

    user = factories.member()
    actor = factories.principal(user)
    token, raw = services.pat_create(
        actor=actor, user=user, name="short", expires_at=timezone.now() + timedelta(days=1)
    )
    assert raw.startswith("gw_pat_")
    assert token.prefix == raw[:13]
    assert token.digest != raw
    assert raw not in token.digest
    PersonalAccessToken.objects.filter(pk=token.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert selectors.pat_authenticate(raw) is None

    token2, raw2 = services.pat_create(actor=actor, user=user, name="other")
    services.pat_revoke(actor=actor, token=token2)
    assert selectors.pat_authenticate(raw2) is None


def test_nobody_mints_a_pat_for_someone_else():
    admin_user = factories.tenant_admin()
    victim = factories.member()
    with pytest.raises(PolicyDenied):
        services.pat_create(actor=factories.principal(admin_user), user=victim, name="x")
    assert not PersonalAccessToken.objects.filter(user=victim).exists()


def test_duplicate_active_pat_name_is_a_conflict_but_revoked_names_are_reusable():
    user = factories.member()
    actor = factories.principal(user)
    token, _ = services.pat_create(actor=actor, user=user, name="ci")
    with pytest.raises(Conflict):
        services.pat_create(actor=actor, user=user, name="ci")
    services.pat_revoke(actor=actor, token=token)
    _, raw = services.pat_create(actor=actor, user=user, name="ci")
    assert selectors.pat_authenticate(raw) is not None


def test_tenant_role_bound_to_a_team_reaches_its_members_only():
    admin = factories.principal(factories.tenant_admin())
    team = factories.TeamFactory(name="auditors")
    inside = factories.team_member_of(team)
    outside = factories.member()
    Role.objects.create(
        slug="auditor", display_name="A", resource_type="tenant", permissions=["user:ListUsers"]
    )
    services.role_binding_put(
        actor=admin,
        name="auditors-bind",
        subjects=[services.SubjectRef("team", "auditors")],
        grants=[services.GrantRef("tenant", "tenant", "auditor")],
    )
    assert factories.principal(inside).holds(Permission.USER_LIST)
    assert not factories.principal(outside).holds(Permission.USER_LIST)


def test_team_scoped_binding_grants_within_that_team_only():
    admin = factories.principal(factories.tenant_admin())
    team = factories.TeamFactory(name="alpha")
    other = factories.TeamFactory(name="beta")
    user = factories.member()
    services.role_binding_put(
        actor=admin,
        name="alpha-managers",
        subjects=[services.SubjectRef("user", user.email)],
        grants=[services.GrantRef("team", "alpha", "team-manager")],
    )
    p = factories.principal(user)
    assert p.holds(Permission.TEAM_MANAGE, team.pk)
    assert not p.holds(Permission.TEAM_MANAGE, other.pk)


def test_binding_to_everyone_reaches_every_user():
    admin = factories.principal(factories.tenant_admin())
    Role.objects.create(
        slug="lister", display_name="L", resource_type="tenant", permissions=["team:ReadTeam"]
    )
    services.role_binding_put(
        actor=admin,
        name="all-read",
        subjects=[services.SubjectRef("team", "everyone")],
        grants=[services.GrantRef("tenant", "tenant", "lister")],
    )
    assert factories.principal(factories.member()).holds(Permission.TEAM_READ)


def test_binding_errors_name_the_field_and_save_nothing():
    admin = factories.principal(factories.tenant_admin())
    with pytest.raises(ValidationFailed) as info:
        services.role_binding_put(
            actor=admin,
            name="b1",
            subjects=[services.SubjectRef("user", "ghost@example.com")],
            grants=[services.GrantRef("tenant", "tenant", "member")],
        )
    assert info.value.fields == {"subjects[0].name": ["no user 'ghost@example.com'"]}
    with pytest.raises(ValidationFailed) as info:
        services.role_binding_put(
            actor=admin,
            name="b1",
            subjects=[services.SubjectRef("team", "everyone")],
            grants=[services.GrantRef("team", "everyone", "member")],
        )
    assert info.value.fields == {
        "permissions[0].resourceType": ["role 'member' applies to 'tenant'"]
    }
    assert not RoleBinding.objects.exists()


def test_manager_cannot_bind_tenant_admin_or_join_other_teams():
    team = factories.TeamFactory()
    manager_user = factories.team_manager_of(team)
    manager = factories.principal(manager_user)
    with pytest.raises(PolicyDenied):
        services.role_binding_put(
            actor=manager,
            name="grab",
            subjects=[services.SubjectRef("user", manager_user.email)],
            grants=[services.GrantRef("tenant", "tenant", "tenant-admin")],
        )
    with pytest.raises(PolicyDenied):
        team_services.team_membership_add(actor=manager, team=team, user=manager_user)
    other = factories.TeamFactory()
    with pytest.raises(PolicyDenied):
        team_services.team_membership_add(actor=manager, team=other, user=factories.member())
    assert not RoleBinding.objects.exists()
    assert not team.memberships.filter(user=manager_user, role="member").exists()


def test_scim_and_everyone_teams_refuse_console_membership_edits():
    admin = factories.principal(factories.tenant_admin())
    scim_team = factories.TeamFactory(source=Team.Source.SCIM)
    everyone = Team.objects.get(name="everyone")
    user = factories.member()
    with pytest.raises(Conflict) as info:
        team_services.team_membership_add(actor=admin, team=scim_team, user=user)
    assert "identity provider" in info.value.message
    with pytest.raises(Conflict):
        team_services.team_membership_add(actor=admin, team=everyone, user=user)
    with pytest.raises(Conflict):
        team_services.team_delete(actor=admin, team=everyone)


def test_team_name_rules():
    admin = factories.principal(factories.tenant_admin())
    for bad in ["ab", "1team", "team-", "a" * 37, "Everyone", "has space"]:
        with pytest.raises(ValidationFailed) as info:
            team_services.team_create(actor=admin, name=bad)
        assert list(info.value.fields) == ["name"]
    team_services.team_create(actor=admin, name="Ml_team-1")
    with pytest.raises(Conflict):
        team_services.team_create(actor=admin, name="ml_team-1")


def test_team_create_names_the_unknown_member_and_saves_nothing():
    admin = factories.principal(factories.tenant_admin())
    known = factories.member()
    with pytest.raises(ValidationFailed) as info:
        team_services.team_create(
            actor=admin, name="backend", members=[known.email, "nobody@example.com"]
        )
    assert info.value.fields == {"members[1]": ["no user with email 'nobody@example.com'"]}
    assert not Team.objects.filter(name="backend").exists()


def test_audit_records_actor_source_and_before_after():
    from accounts.audit import audit_source

    admin_user = factories.tenant_admin()
    admin = factories.principal(admin_user)
    user = factories.member()
    with audit_source("apply"):
        services.user_update(actor=admin, user=user, tenant_role="tenant-admin")
    event = AuditEvent.objects.get(action="user.updated")
    assert event.actor == admin_user.subject
    assert event.source == "apply"
    assert event.target == user.email
    assert event.before == {**user_snapshot_of(user), "tenant_role": "member"}
    assert event.after == {**user_snapshot_of(user), "tenant_role": "tenant-admin"}


def user_snapshot_of(user: User) -> dict[str, object]:
    return {"email": user.email, "display_name": user.display_name, "is_active": True}


def test_audit_masks_secret_values():
    from gateway_project.manifest_io import mask_secrets

    assert mask_secrets({"api_key": "sk-1", "nested": [{"client_secret": "s", "ok": 1}]}) == {
        "api_key": "********",
        "nested": [{"client_secret": "********", "ok": 1}],
    }


def test_tenant_admin_ensure_creates_once_and_reports_generated_password():
    user, generated = services.tenant_admin_ensure(email="Boot@Example.com")
    assert user.email == "boot@example.com"
    assert generated is not None
    assert user.check_password(generated)
    again, second = services.tenant_admin_ensure(email="other@example.com")
    assert again.pk == user.pk
    assert second is None


def test_invitation_accept_sets_password_once():
    admin = factories.principal(factories.tenant_admin())
    User.objects.create_user("inv@example.com")
    user = User.objects.get(email="inv@example.com")
    link = services.user_invitation_resend(actor=admin, user=user).link
    raw = link.rstrip("/").rsplit("/", 1)[-1]
    with pytest.raises(ValidationFailed) as info:
        services.invitation_accept(raw=raw, password="short")
    assert list(info.value.fields) == ["password"]
    services.invitation_accept(raw=raw, password="a-much-better-passphrase")
    assert User.objects.get(pk=user.pk).check_password("a-much-better-passphrase")
    from gateway_project.errors import ObjectNotFound

    with pytest.raises(ObjectNotFound):
        services.invitation_accept(raw=raw, password="another-good-passphrase")


def test_system_principal_is_audited_as_system():
    services.tenant_admin_ensure(email="a@example.com", password="x-very-long-password")
    event = AuditEvent.objects.get(action="user.bootstrap_admin")
    assert (event.actor, event.source) == ("system", "system")
    assert Principal.system().subject == "system"
