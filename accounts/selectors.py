"""Reads of accounts data used outside the app: principals, users, roles, tokens, audit."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.models import (
    TEAM_MANAGER,
    TENANT_ADMIN,
    AuditEvent,
    PersonalAccessToken,
    Role,
    RoleBinding,
    RoleBindingGrant,
    User,
)
from accounts.policy import (
    RESOURCE_ROLE_PERMISSIONS,
    Permission,
    PolicyDenied,
    Principal,
    Resource,
    holds_any,
    require_any,
)
from gateway_project.crypto import keyed_digest
from gateway_project.errors import ObjectNotFound, ValidationFailed
from providers.models import Collaborator
from providers.selectors import resource_grants_for
from teams.models import EVERYONE, Team, TeamMembership


def _permissions(names: list[str]) -> frozenset[Permission]:
    """Known permission strings only: an unknown string in a stored role grants nothing."""
    known = {p.value for p in Permission}
    return frozenset(Permission(n) for n in names if n in known)


def principal_for_user(user: User) -> Principal:
    """Snapshot of everything `user` may do: tenant role, team roles and role bindings."""
    if not user.is_active:
        return Principal.anonymous()
    memberships = list(TeamMembership.objects.filter(user=user).values_list("team_id", "role"))
    member_ids = frozenset(t for t, r in memberships if r == TeamMembership.Role.MEMBER)
    managed_ids = frozenset(t for t, r in memberships if r == TeamMembership.Role.MANAGER)
    everyone_id = Team.objects.filter(name=EVERYONE).values_list("id", flat=True).first()
    # A team's grants reach its managers as well as its members: both belong to the team.
    subject_teams = set(member_ids | managed_ids) | ({everyone_id} if everyone_id else set())

    roles_tenant: set[str] = {user.tenant_role.slug}
    tenant_perms: set[Permission] = set(_permissions(user.tenant_role.permissions))
    team_perms: dict[int, set[Permission]] = defaultdict(set)
    if managed_ids:
        manager_role = Role.objects.filter(slug=TEAM_MANAGER).first()
        granted = _permissions(manager_role.permissions) if manager_role else frozenset()
        for team_id in managed_ids:
            team_perms[team_id] |= granted

    grants = (
        RoleBindingGrant.objects.filter(
            Q(binding__subjects__user=user) | Q(binding__subjects__team_id__in=subject_teams)
        )
        .select_related("role")
        .distinct()
    )
    for grant in grants:
        perms = _permissions(grant.role.permissions)
        if grant.resource_type == Role.ResourceType.TENANT:
            roles_tenant.add(grant.role.slug)
            tenant_perms |= perms
        elif grant.team_id is not None:
            team_perms[grant.team_id] |= perms

    team_names = Team.objects.filter(pk__in=subject_teams).values_list("name", flat=True)
    subjects = [user.subject, *(f"team:{name}" for name in team_names)]
    resource_roles, invokable = resource_grants_for(
        user_id=user.pk, team_ids=subject_teams, subjects=subjects
    )
    return Principal(
        kind="user",
        id=user.pk,
        subject=user.subject,
        resource_roles=resource_roles,
        invokable=invokable,
        is_tenant_admin=TENANT_ADMIN in roles_tenant,
        roles=frozenset(roles_tenant),
        tenant_permissions=frozenset(tenant_perms),
        team_permissions={k: frozenset(v) for k, v in team_perms.items()},
        member_team_ids=member_ids | managed_ids,
        managed_team_ids=managed_ids,
    )


@dataclass(frozen=True)
class MembershipGrant:
    """Permissions that belonging to a team hands over, and where they apply."""

    permissions: frozenset[Permission]
    team_id: int | None = None
    resource: Resource | None = None
    tenant_admin: bool = False


def team_membership_grants(team: Team, role: str) -> list[MembershipGrant]:
    """What joining `team` as `role` gives: its role bindings, its collaborator roles on
    provider accounts and MCP servers, and for managers the Team Manager role on it.
    """
    grants = [
        MembershipGrant(
            _permissions(grant.role.permissions),
            team_id=grant.team_id if grant.resource_type == Role.ResourceType.TEAM else None,
            tenant_admin=grant.role.slug == TENANT_ADMIN,
        )
        for grant in RoleBindingGrant.objects.filter(binding__subjects__team=team)
        .select_related("role")
        .distinct()
    ]
    for account_id, server_id, role_id in Collaborator.objects.filter(team=team).values_list(
        "provider_account_id", "mcp_server_id", "role_id"
    ):
        resource: Resource = (
            ("provider-account", account_id) if account_id else ("mcp-server", server_id)
        )
        perms = RESOURCE_ROLE_PERMISSIONS.get(role_id, frozenset())
        grants.append(MembershipGrant(frozenset(perms), resource=resource))
    if role == TeamMembership.Role.MANAGER:
        manager_role = Role.objects.filter(slug=TEAM_MANAGER).first()
        perms = _permissions(manager_role.permissions) if manager_role else frozenset()
        grants.append(MembershipGrant(perms, team_id=team.pk))
    return grants


def pat_authenticate(raw: str) -> PersonalAccessToken | None:
    """The active PAT for `raw` (with its user), or None; records last use."""
    token = (
        PersonalAccessToken.objects.select_related("user", "user__tenant_role")
        .filter(digest=keyed_digest(raw), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if token is None or token.is_expired:
        return None
    now = timezone.now()
    # Coarse last-used bookkeeping: one write a minute per token at most.
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        PersonalAccessToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def user_list(principal: Principal, *, search: str = "", ordering: str = "email") -> QuerySet[User]:
    """Users, for those who may list them."""
    require_any(principal, Permission.USER_LIST, Permission.USER_MANAGE)
    qs = User.objects.select_related("tenant_role")
    if search:
        qs = qs.filter(Q(email__icontains=search) | Q(display_name__icontains=search))
    return qs.order_by(ordering, "pk")


def user_get_for(principal: Principal, pk: int) -> User:
    """One user: yourself always; anyone if you may list users; else 404."""
    if principal.kind == "user" and principal.id == pk:
        return User.objects.select_related("tenant_role").get(pk=pk)
    if not holds_any(principal, Permission.USER_LIST, Permission.USER_MANAGE):
        raise ObjectNotFound("user not found")
    user = User.objects.select_related("tenant_role").filter(pk=pk).first()
    if user is None:
        raise ObjectNotFound("user not found")
    return user


def role_list(principal: Principal) -> QuerySet[Role]:
    """Roles, for those who may list or manage them."""
    require_any(principal, Permission.ROLE_LIST, Permission.ROLE_MANAGE)
    return Role.objects.order_by("-builtin", "slug")


def role_get_for(principal: Principal, slug: str) -> Role:
    """One role by slug, 404 when missing or when the principal may not list roles."""
    if not holds_any(principal, Permission.ROLE_LIST, Permission.ROLE_MANAGE):
        raise ObjectNotFound("role not found")
    role = Role.objects.filter(slug=slug).first()
    if role is None:
        raise ObjectNotFound("role not found")
    return role


def assignable_tenant_roles(principal: Principal) -> list[Role]:
    """Tenant roles whose every permission the principal holds (what they may hand out)."""
    roles = Role.objects.filter(resource_type=Role.ResourceType.TENANT).order_by("slug")
    result = []
    for role in roles:
        if role.slug == TENANT_ADMIN and not principal.is_tenant_admin:
            continue
        if all(principal.holds(p) for p in _permissions(role.permissions)):
            result.append(role)
    return result


def role_binding_list(principal: Principal) -> QuerySet[RoleBinding]:
    """Role bindings with their subjects and grants prefetched."""
    require_any(principal, Permission.ROLE_LIST, Permission.ROLE_MANAGE)
    return RoleBinding.objects.prefetch_related(
        "subjects__user", "subjects__team", "grants__role"
    ).order_by("name")


def role_binding_get_for(principal: Principal, name: str) -> RoleBinding:
    """One binding by name, 404 when missing or hidden."""
    try:
        qs = role_binding_list(principal)
    except PolicyDenied as exc:
        raise ObjectNotFound("role binding not found") from exc
    binding = qs.filter(name=name).first()
    if binding is None:
        raise ObjectNotFound("role binding not found")
    return binding


def pat_list(principal: Principal, *, all_users: bool = False) -> QuerySet[PersonalAccessToken]:
    """The principal's own tokens; every user's for those who manage users."""
    qs = PersonalAccessToken.objects.select_related("user")
    if all_users and principal.holds(Permission.USER_MANAGE):
        return qs.order_by("-created_at")
    if principal.kind != "user":
        return qs.none()
    return qs.filter(user_id=principal.id).order_by("-created_at")


def pat_get_for(principal: Principal, pk: int) -> PersonalAccessToken:
    """One token: your own, or anyone's if you manage users; 404 otherwise."""
    token = PersonalAccessToken.objects.select_related("user").filter(pk=pk).first()
    if token is None:
        raise ObjectNotFound("token not found")
    if principal.kind == "user" and token.user_id == principal.id:
        return token
    if principal.holds(Permission.USER_MANAGE):
        return token
    raise ObjectNotFound("token not found")


def audit_event_list(
    principal: Principal,
    *,
    actor: str = "",
    action: str = "",
    target_type: str = "",
    target: str = "",
    source: str = "",
) -> QuerySet[AuditEvent]:
    """The audit log, filtered; for tenant admins and holders of `settings:ListSettings`."""
    if not principal.holds(Permission.SETTINGS_LIST):
        raise PolicyDenied(Permission.SETTINGS_LIST, "cannot read the audit log")
    qs = AuditEvent.objects.all()
    if actor:
        qs = qs.filter(actor__icontains=actor)
    if action:
        qs = qs.filter(action__icontains=action)
    if target_type:
        qs = qs.filter(target_type=target_type)
    if target:
        qs = qs.filter(target__icontains=target)
    if source:
        qs = qs.filter(source=source)
    return qs


# --- console helpers ---------------------------------------------------------------------


@dataclass(frozen=True)
class UserDetail:
    """A user with their team memberships and number of usable personal access tokens."""

    user: User
    memberships: list[TeamMembership]
    active_token_count: int


def user_detail_get_for(principal: Principal, pk: int) -> UserDetail:
    """One user (visibility as `user_get_for`) with their teams and active PAT count."""
    user = user_get_for(principal, pk)
    memberships = list(
        TeamMembership.objects.filter(user=user).select_related("team").order_by("team__name")
    )
    active_tokens = (
        PersonalAccessToken.objects.filter(user=user, revoked_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
        .count()
    )
    return UserDetail(user=user, memberships=memberships, active_token_count=active_tokens)


def user_get_by_email(email: str) -> User:
    """The user with `email` (case-insensitive), or ValidationFailed on the `email` field.

    Services that take a user check the actor's rights; this only resolves the address.
    """
    address = (email or "").strip()
    user = User.objects.filter(email__iexact=address).first() if address else None
    if user is None:
        raise ValidationFailed.field("email", f"no user with email '{address}'")
    return user


def audit_event_get_for(principal: Principal, pk: int) -> AuditEvent:
    """One audit event, 404 when missing or when the principal may not read the audit log."""
    if not principal.holds(Permission.SETTINGS_LIST):
        raise ObjectNotFound("audit event not found")
    event = AuditEvent.objects.filter(pk=pk).first()
    if event is None:
        raise ObjectNotFound("audit event not found")
    return event
