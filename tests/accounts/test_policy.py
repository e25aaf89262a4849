"""The pure policy: decisions as a table."""

from __future__ import annotations

import pytest

from accounts.policy import (
    ALL_PERMISSIONS,
    Permission,
    PolicyDenied,
    Principal,
    decide,
    missing_for_grant,
    require,
)

TEAM = 7
OTHER_TEAM = 8

ADMIN = Principal("user", 1, "user:admin@example.com", is_tenant_admin=True)
MEMBER = Principal("user", 2, "user:m@example.com", member_team_ids=frozenset({TEAM}))
MANAGER = Principal(
    "user",
    3,
    "user:mgr@example.com",
    team_permissions={TEAM: frozenset({Permission.TEAM_MANAGE, Permission.TEAM_READ})},
    managed_team_ids=frozenset({TEAM}),
)
USER_ADMIN = Principal(
    "user", 4, "user:ua@example.com", tenant_permissions=frozenset({Permission.USER_MANAGE})
)
SCIM = Principal("scim_client", 1, "scim")
ANON = Principal.anonymous()
SYSTEM = Principal.system()


@pytest.mark.parametrize(
    ("principal", "permission", "team_id", "allowed"),
    [
        (ADMIN, Permission.USER_MANAGE, None, True),
        (ADMIN, Permission.TEAM_MANAGE, OTHER_TEAM, True),
        (SYSTEM, Permission.ROLE_MANAGE, None, True),
        (MEMBER, Permission.TEAM_MANAGE, TEAM, False),
        (MEMBER, Permission.USER_LIST, None, False),
        (MANAGER, Permission.TEAM_MANAGE, TEAM, True),
        (MANAGER, Permission.TEAM_MANAGE, OTHER_TEAM, False),
        (MANAGER, Permission.TEAM_MANAGE, None, False),
        (MANAGER, Permission.VIRTUAL_ACCOUNT_CREATE, TEAM, False),
        (USER_ADMIN, Permission.USER_MANAGE, None, True),
        (USER_ADMIN, Permission.USER_MANAGE, TEAM, True),
        (USER_ADMIN, Permission.ROLE_MANAGE, None, False),
        (SCIM, Permission.SCIM_PROVISION, None, True),
        (SCIM, Permission.USER_LIST, None, False),
        (ADMIN, Permission.SCIM_PROVISION, None, False),
        (SYSTEM, Permission.SCIM_PROVISION, None, False),
        (ANON, Permission.TEAM_READ, TEAM, False),
    ],
)
def test_decide_table(principal, permission, team_id, allowed):
    assert decide(principal, permission, team_id=team_id).allowed is allowed


def test_require_raises_policy_denied_with_reason():
    with pytest.raises(PolicyDenied) as info:
        require(MEMBER, Permission.USER_MANAGE)
    assert info.value.permission == Permission.USER_MANAGE
    assert info.value.reason == "no team in scope"


def test_missing_for_grant_names_what_the_grantor_lacks():
    wanted = [Permission.TEAM_MANAGE.value, Permission.USER_MANAGE.value, "bogus:Thing"]
    assert missing_for_grant(MANAGER, wanted, team_id=TEAM) == ["bogus:Thing", "user:ManageUsers"]
    assert missing_for_grant(ADMIN, [p.value for p in ALL_PERMISSIONS]) == []


def test_scim_permission_is_never_grantable():
    assert Permission.SCIM_PROVISION not in ALL_PERMISSIONS
    assert missing_for_grant(ADMIN, [Permission.SCIM_PROVISION.value]) == ["scim:Provision"]
