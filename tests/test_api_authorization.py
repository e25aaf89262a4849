"""Every role against every API action: allowed answers, and denials that change nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from rest_framework.test import APIClient

from accounts.models import (
    AuditEvent,
    PersonalAccessToken,
    Role,
    RoleBinding,
    RoleBindingGrant,
    User,
)
from teams.models import Team, TeamMembership
from tests import factories
from tests.conftest import bearer


@dataclass
class World:
    team: Team
    other_team: Team
    victim: User  # a plain member of `team`, target of user actions
    victim_pat: PersonalAccessToken
    custom_role: Role


@pytest.fixture
def world(db: None) -> World:
    team = factories.TeamFactory(name="payments")
    other = factories.TeamFactory(name="research")
    victim = factories.team_member_of(team)
    victim.email = "victim@example.com"
    victim.save()
    raw = factories.pat_for(victim, "victim-token")
    assert raw
    role = Role.objects.create(
        slug="auditor",
        display_name="Auditor",
        resource_type="tenant",
        permissions=["user:ListUsers"],
    )
    return World(team, other, victim, PersonalAccessToken.objects.get(user=victim), role)


def actor_admin(w: World) -> User:
    return factories.tenant_admin()


def actor_member(w: World) -> User:
    return factories.member()


def actor_team_member(w: World) -> User:
    return factories.team_member_of(w.team)


def actor_team_manager(w: World) -> User:
    return factories.team_manager_of(w.team)


def actor_manager_elsewhere(w: World) -> User:
    return factories.team_manager_of(w.other_team)


def actor_user_manager(w: World) -> User:
    """A custom tenant role holding user:ManageUsers only."""
    role = Role.objects.create(
        slug="user-admin",
        display_name="User admin",
        resource_type="tenant",
        permissions=["user:ManageUsers", "user:ListUsers"],
    )
    return factories.UserFactory(tenant_role_id=role.slug)


ACTORS: dict[str, Callable[[World], User]] = {
    "admin": actor_admin,
    "member": actor_member,
    "team_member": actor_team_member,
    "team_manager": actor_team_manager,
    "manager_elsewhere": actor_manager_elsewhere,
    "user_manager": actor_user_manager,
}


def state() -> tuple[Any, ...]:
    """Everything an action could change (audit events excluded: reads do not audit)."""
    return (
        sorted(User.objects.values_list("email", "tenant_role_id", "is_active", "display_name")),
        sorted(Team.objects.values_list("name", "description")),
        sorted(TeamMembership.objects.values_list("team__name", "user__email", "role")),
        sorted((r.slug, tuple(r.permissions), r.display_name) for r in Role.objects.all()),
        sorted(RoleBinding.objects.values_list("name")),
        sorted(RoleBindingGrant.objects.values_list("role_id", "resource_fqn")),
        sorted(PersonalAccessToken.objects.values_list("user__email", "name", "revoked_at")),
    )


Call = Callable[[APIClient, World], Any]

ACTIONS: dict[str, tuple[str, Call]] = {
    "list_users": ("GET", lambda c, w: c.get("/api/v1/users")),
    "view_user": ("GET", lambda c, w: c.get(f"/api/v1/users/{w.victim.pk}")),
    "invite_user": (
        "POST",
        lambda c, w: c.post("/api/v1/users", {"email": "new@example.com"}, format="json"),
    ),
    "make_admin": (
        "PATCH",
        lambda c, w: c.patch(
            f"/api/v1/users/{w.victim.pk}", {"tenant_role": "tenant-admin"}, format="json"
        ),
    ),
    "deactivate_user": (
        "PATCH",
        lambda c, w: c.patch(f"/api/v1/users/{w.victim.pk}", {"is_active": False}, format="json"),
    ),
    "list_teams": ("GET", lambda c, w: c.get("/api/v1/teams")),
    "view_team": ("GET", lambda c, w: c.get("/api/v1/teams/payments")),
    "create_team": (
        "POST",
        lambda c, w: c.post("/api/v1/teams", {"name": "new-team"}, format="json"),
    ),
    "update_team": (
        "PATCH",
        lambda c, w: c.patch("/api/v1/teams/payments", {"description": "x"}, format="json"),
    ),
    "delete_team": ("DELETE", lambda c, w: c.delete("/api/v1/teams/payments")),
    "add_member": (
        "POST",
        lambda c, w: c.post(
            "/api/v1/teams/payments/members", {"email": _spare_email()}, format="json"
        ),
    ),
    "remove_member": (
        "DELETE",
        lambda c, w: c.delete("/api/v1/teams/payments/members/victim@example.com"),
    ),
    "add_manager": (
        "POST",
        lambda c, w: c.post(
            "/api/v1/teams/payments/members",
            {"email": "victim@example.com", "role": "manager"},
            format="json",
        ),
    ),
    "list_roles": ("GET", lambda c, w: c.get("/api/v1/roles")),
    "create_role": (
        "POST",
        lambda c, w: c.post(
            "/api/v1/roles", {"name": "ops", "permissions": ["team:ReadTeam"]}, format="json"
        ),
    ),
    "edit_team_manager_role": (
        "PATCH",
        lambda c, w: c.patch(
            "/api/v1/roles/team-manager", {"permissions": ["team:ReadTeam"]}, format="json"
        ),
    ),
    "delete_role": ("DELETE", lambda c, w: c.delete("/api/v1/roles/auditor")),
    "bind_role": (
        "POST",
        lambda c, w: c.post(
            "/api/v1/role-bindings",
            {
                "name": "auditors",
                "subjects": [{"type": "team", "name": "payments"}],
                "permissions": [
                    {"resourceType": "tenant", "resourceFqn": "tenant", "role": "auditor"}
                ],
            },
            format="json",
        ),
    ),
    "list_own_pats": ("GET", lambda c, w: c.get("/api/v1/personal-access-tokens")),
    "create_pat": (
        "POST",
        lambda c, w: c.post("/api/v1/personal-access-tokens", {"name": "ci"}, format="json"),
    ),
    "revoke_others_pat": (
        "DELETE",
        lambda c, w: c.delete(f"/api/v1/personal-access-tokens/{w.victim_pat.pk}"),
    ),
    "list_audit": ("GET", lambda c, w: c.get("/api/v1/audit-events")),
}


def _spare_email() -> str:
    return User.objects.get(email="spare@example.com").email


# Expected status per (action, actor). 404: cannot see the object; 403: sees, may not act.
A, M, TM, TG, ME, UM = (
    "admin",
    "member",
    "team_member",
    "team_manager",
    "manager_elsewhere",
    "user_manager",
)
EXPECTED: dict[str, dict[str, int]] = {
    "list_users": {A: 200, M: 403, TM: 403, TG: 403, ME: 403, UM: 200},
    "view_user": {A: 200, M: 404, TM: 404, TG: 404, ME: 404, UM: 200},
    "invite_user": {A: 201, M: 403, TM: 403, TG: 403, ME: 403, UM: 201},
    "make_admin": {A: 200, M: 404, TM: 404, TG: 404, ME: 404, UM: 403},
    "deactivate_user": {A: 200, M: 404, TM: 404, TG: 404, ME: 404, UM: 200},
    "list_teams": {A: 200, M: 200, TM: 200, TG: 200, ME: 200, UM: 200},
    "view_team": {A: 200, M: 404, TM: 200, TG: 200, ME: 404, UM: 404},
    "create_team": {A: 201, M: 403, TM: 403, TG: 403, ME: 403, UM: 403},
    "update_team": {A: 200, M: 404, TM: 403, TG: 200, ME: 404, UM: 404},
    "delete_team": {A: 204, M: 404, TM: 403, TG: 403, ME: 404, UM: 404},
    "add_member": {A: 201, M: 404, TM: 403, TG: 201, ME: 404, UM: 404},
    "remove_member": {A: 204, M: 404, TM: 403, TG: 204, ME: 404, UM: 404},
    "add_manager": {A: 201, M: 404, TM: 403, TG: 403, ME: 404, UM: 404},
    "list_roles": {A: 200, M: 403, TM: 403, TG: 403, ME: 403, UM: 403},
    "create_role": {A: 201, M: 403, TM: 403, TG: 403, ME: 403, UM: 403},
    "edit_team_manager_role": {A: 200, M: 404, TM: 404, TG: 404, ME: 404, UM: 404},
    "delete_role": {A: 204, M: 404, TM: 404, TG: 404, ME: 404, UM: 404},
    "bind_role": {A: 201, M: 403, TM: 403, TG: 403, ME: 403, UM: 403},
    "list_own_pats": {A: 200, M: 200, TM: 200, TG: 200, ME: 200, UM: 200},
    "create_pat": {A: 201, M: 201, TM: 201, TG: 201, ME: 201, UM: 201},
    "revoke_others_pat": {A: 204, M: 404, TM: 404, TG: 404, ME: 404, UM: 204},
    "list_audit": {A: 200, M: 403, TM: 403, TG: 403, ME: 403, UM: 403},
}

CASES = [(action, actor) for action in ACTIONS for actor in ACTORS]


@pytest.mark.parametrize(("action", "actor"), CASES, ids=[f"{a}-{b}" for a, b in CASES])
def test_api_authorization_table(action, actor, world, api_client):
    factories.UserFactory(email="spare@example.com")
    user = ACTORS[actor](world)
    bearer(api_client, user)
    method, call = ACTIONS[action]
    before = state()
    audit_before = AuditEvent.objects.count()

    response = call(api_client, world)

    expected = EXPECTED[action][actor]
    assert response.status_code == expected, response.content
    if expected >= 400:
        assert state() == before
        assert AuditEvent.objects.count() == audit_before
        assert set(response.json()) == {"error"}
    elif method != "GET" and action != "create_pat":
        assert state() != before
        assert AuditEvent.objects.count() > audit_before


def test_table_covers_every_action_and_actor():
    assert set(EXPECTED) == set(ACTIONS)
    assert all(set(row) == set(ACTORS) for row in EXPECTED.values())


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/v1/me", "/api/v1/users", "/api/v1/teams"])
def test_anonymous_and_bad_tokens_get_the_same_401(path, api_client):
    anonymous = api_client.get(path)
    api_client.credentials(HTTP_AUTHORIZATION="Bearer gw_pat_notarealtoken")
    bad = api_client.get(path)
    api_client.credentials(HTTP_AUTHORIZATION="Bearer something-else-entirely")
    other_bad = api_client.get(path)
    assert anonymous.status_code == 401
    assert bad.status_code == 401
    assert (
        bad.json()
        == other_bad.json()
        == {"error": {"message": "Invalid or expired token.", "fields": {}}}
    )
