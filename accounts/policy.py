"""The one authorization module: every "may this principal do this" question is answered here.

Pure functions over a `Principal` snapshot (no ORM, no I/O), so sync views, DRF, SCIM, `apply`,
tasks and the async proxy share the same answers. Deny by default.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal


class Permission(StrEnum):
    """Permission strings `resource-type:ActionInCamelCase`, as the mirrored product names them."""

    PROVIDER_ACCOUNT_CREATE = "provider-account:CreateProviderAccount"
    PROVIDER_ACCOUNT_READ = "provider-account:ReadProviderAccount"
    PROVIDER_ACCOUNT_MANAGE = "provider-account:ManageProviderAccount"
    PROVIDER_ACCOUNT_DELETE = "provider-account:DeleteProviderAccount"
    PROVIDER_ACCOUNT_USE = "provider-account:UseIntegrations"
    MCP_SERVER_CREATE = "mcp-server:CreateMcpServer"
    MCP_SERVER_READ = "mcp-server:ReadMcpServer"
    MCP_SERVER_USE = "mcp-server:UseMcpServer"
    MCP_SERVER_MANAGE = "mcp-server:ManageMcpServer"
    MCP_SERVER_DELETE = "mcp-server:DeleteMcpServer"
    VIRTUAL_ACCOUNT_CREATE = "virtual-account:CreateVirtualAccount"
    VIRTUAL_ACCOUNT_READ = "virtual-account:ReadVirtualAccount"
    VIRTUAL_ACCOUNT_MANAGE = "virtual-account:ManageVirtualAccount"
    VIRTUAL_ACCOUNT_DELETE = "virtual-account:DeleteVirtualAccount"
    TEAM_CREATE = "team:CreateTeam"
    TEAM_READ = "team:ReadTeam"
    TEAM_MANAGE = "team:ManageTeam"
    TEAM_DELETE = "team:DeleteTeam"
    GATEWAY_CONTROLS_MANAGE = "gateway-controls:ManageGatewayControls"
    GATEWAY_CONTROLS_LIST = "gateway-controls:ListGatewayControls"
    USER_MANAGE = "user:ManageUsers"
    USER_LIST = "user:ListUsers"
    ROLE_MANAGE = "role:ManageRoles"
    ROLE_LIST = "role:ListRoles"
    TENANT_ASSIGN_ROLE = "tenant:AssignRole"
    SETTINGS_LIST = "settings:ListSettings"
    SETTINGS_MANAGE = "settings:ManageSettings"
    EXTERNAL_IDENTITY_LIST = "external-identity:ListExternalIdentities"
    EXTERNAL_IDENTITY_MANAGE = "external-identity:ManageExternalIdentities"
    # Not a role permission: only the SCIM bearer token holds it.
    SCIM_PROVISION = "scim:Provision"


ALL_PERMISSIONS: frozenset[Permission] = frozenset(Permission) - {Permission.SCIM_PROVISION}

# Permissions that make sense inside one team (the Team Manager role and team-scoped bindings).
TEAM_SCOPED_PERMISSIONS: frozenset[Permission] = frozenset(
    {
        Permission.TEAM_READ,
        Permission.TEAM_MANAGE,
        Permission.VIRTUAL_ACCOUNT_CREATE,
        Permission.VIRTUAL_ACCOUNT_READ,
        Permission.VIRTUAL_ACCOUNT_MANAGE,
        Permission.VIRTUAL_ACCOUNT_DELETE,
    }
)

# Resource-level roles (collaborators on a provider account or MCP server) and what they allow
# on that one resource.
RESOURCE_ROLE_PERMISSIONS: Mapping[str, frozenset[Permission]] = {
    "provider-account-manager": frozenset(
        {
            Permission.PROVIDER_ACCOUNT_READ,
            Permission.PROVIDER_ACCOUNT_MANAGE,
            Permission.PROVIDER_ACCOUNT_USE,
        }
    ),
    "provider-account-access": frozenset(
        {Permission.PROVIDER_ACCOUNT_READ, Permission.PROVIDER_ACCOUNT_USE}
    ),
    "mcp-server-manager": frozenset(
        {Permission.MCP_SERVER_READ, Permission.MCP_SERVER_MANAGE, Permission.MCP_SERVER_USE}
    ),
    "mcp-server-user": frozenset({Permission.MCP_SERVER_READ, Permission.MCP_SERVER_USE}),
}

Resource = tuple[str, int]  # ("provider-account", id) or ("mcp-server", id)

PrincipalKind = Literal["user", "virtual_account", "scim_client", "system", "anonymous"]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking. Loaded once per request by accounts.selectors.principal_for_*()."""

    kind: PrincipalKind
    id: int
    subject: str  # "user:alice@example.com", "virtualaccount:billing-bot", "system"
    is_tenant_admin: bool = False
    tenant_permissions: frozenset[Permission] = frozenset()
    team_permissions: Mapping[int, frozenset[Permission]] = field(default_factory=dict)
    member_team_ids: frozenset[int] = frozenset()  # teams one belongs to (member or manager)
    managed_team_ids: frozenset[int] = frozenset()
    invokable: frozenset[tuple[int, str]] = frozenset()  # (provider_account_id, model name)
    resource_roles: Mapping[Resource, frozenset[str]] = field(default_factory=dict)
    roles: frozenset[str] = frozenset()  # tenant role slugs (own and bound), for `role:` subjects

    @classmethod
    def system(cls) -> Principal:
        """The actor for scheduled work, audited as 'system'."""
        return cls("system", 0, "system")

    @classmethod
    def anonymous(cls) -> Principal:
        """Nobody: every decision denies."""
        return cls("anonymous", 0, "anonymous")

    @property
    def is_user(self) -> bool:
        return self.kind == "user"

    def holds(
        self, permission: Permission, team_id: int | None = None, resource: Resource | None = None
    ) -> bool:
        """Shorthand for `decide(...).allowed`."""
        return decide(self, permission, team_id=team_id, resource=resource).allowed


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str  # logs and audit only, never shown to the caller


class PolicyDenied(Exception):
    """The principal may see the object but not do this to it (HTTP 403)."""

    def __init__(self, permission: Permission | str, reason: str) -> None:
        super().__init__(f"permission denied: {permission}")
        self.permission = permission
        self.reason = reason


def decide(
    principal: Principal,
    permission: Permission,
    *,
    team_id: int | None = None,
    target: tuple[int, str] | None = None,
    resource: Resource | None = None,
) -> Decision:
    """Pure: no ORM, no I/O, so sync views and the async proxy share it.

    `team_id` scopes team permissions, `resource` collaborator roles on one resource, and
    `target` a model invocation `(provider_account_id, model name)`.
    """
    if principal.kind == "anonymous":
        return Decision(False, "anonymous")
    if permission is Permission.SCIM_PROVISION:
        # Only the SCIM token provisions, and it may do nothing else (not even as system).
        return Decision(principal.kind == "scim_client", principal.kind)
    if principal.kind == "scim_client":
        return Decision(False, "scim token is limited to SCIM")
    if principal.kind == "system" or principal.is_tenant_admin:
        return Decision(True, principal.kind if principal.kind == "system" else "tenant-admin")
    if permission in principal.tenant_permissions:
        return Decision(True, "tenant role")
    if permission is Permission.PROVIDER_ACCOUNT_USE and target is not None:
        # Per-model: account grants narrowed by each model's authorized_subjects.
        return Decision(target in principal.invokable, f"target={target}")
    if resource is not None:
        roles = principal.resource_roles.get(resource, frozenset())
        if any(permission in RESOURCE_ROLE_PERMISSIONS.get(r, frozenset()) for r in roles):
            return Decision(True, f"collaborator on {resource}")
    if team_id is None:
        return Decision(False, "no team in scope")
    granted = principal.team_permissions.get(team_id, frozenset())
    return Decision(permission in granted, f"team={team_id}")


def require(
    principal: Principal,
    permission: Permission,
    *,
    team_id: int | None = None,
    target: tuple[int, str] | None = None,
    resource: Resource | None = None,
) -> None:
    """Raise PolicyDenied unless `decide` allows."""
    decision = decide(principal, permission, team_id=team_id, target=target, resource=resource)
    if not decision.allowed:
        raise PolicyDenied(permission, decision.reason)


def missing_for_grant(
    principal: Principal, permissions: Iterable[str], *, team_id: int | None = None
) -> list[str]:
    """The permissions in `permissions` that `principal` could not grant (no self-escalation).

    A grantor may hand out only what they hold themselves, tenant-wide or in the team in scope.
    """
    missing = []
    for name in permissions:
        try:
            permission = Permission(name)
        except ValueError:
            missing.append(name)
            continue
        if not decide(principal, permission, team_id=team_id).allowed:
            missing.append(name)
    return sorted(missing)


# Reading a resource is allowed by its Read or its Manage permission (as the list selectors do).
_READ_OR_MANAGE = {
    Permission.PROVIDER_ACCOUNT_READ: Permission.PROVIDER_ACCOUNT_MANAGE,
    Permission.MCP_SERVER_READ: Permission.MCP_SERVER_MANAGE,
}


def missing_for_resource_role(
    principal: Principal, role_id: str, resource: Resource
) -> Permission | None:
    """A permission the resource role `role_id` gives on `resource` that `principal` lacks
    (Manage counts as Read), or None: a grant may not exceed its grantor. Use alone does not
    let one grant `provider-account-access` (it gives Read too), nor does Manage alone let one
    grant a role that may call the models.
    """
    for permission in sorted(RESOURCE_ROLE_PERMISSIONS.get(role_id, frozenset())):
        alternatives = (permission, _READ_OR_MANAGE.get(permission, permission))
        if not any(decide(principal, p, resource=resource).allowed for p in alternatives):
            return permission
    return None


def can_administer_admins(principal: Principal) -> bool:
    """Only tenant admins (and system work) may create, change or remove tenant admins."""
    return principal.kind == "system" or (principal.kind == "user" and principal.is_tenant_admin)


def holds_any(principal: Principal, *permissions: Permission, team_id: int | None = None) -> bool:
    """True when any of `permissions` is allowed (e.g. List or Manage for reading a list)."""
    return any(decide(principal, p, team_id=team_id).allowed for p in permissions)


def require_any(principal: Principal, *permissions: Permission) -> None:
    """Raise PolicyDenied unless one of `permissions` is allowed tenant-wide."""
    if not holds_any(principal, *permissions):
        raise PolicyDenied(permissions[0], "none of the permissions held")
