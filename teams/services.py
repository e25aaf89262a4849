"""Every write to teams and their memberships goes through here."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from django.db import transaction

from accounts.audit import audit_record
from accounts.models import User
from accounts.policy import (
    Permission,
    PolicyDenied,
    Principal,
    can_administer_admins,
    decide,
    require,
)
from accounts.selectors import team_membership_grants
from gateway_project.errors import Conflict, ValidationFailed
from teams.models import EVERYONE, TEAM_NAME_PATTERN, Team, TeamMembership

MEMBER = TeamMembership.Role.MEMBER
MANAGER = TeamMembership.Role.MANAGER


def team_snapshot(team: Team) -> dict[str, Any]:
    """The audited fields of a team."""
    rows = team.memberships.select_related("user").order_by("user__email")
    return {
        "name": team.name,
        "description": team.description,
        "tags": team.tags,
        "members": [m.user.email for m in rows if m.role == MEMBER],
        "managers": [m.user.email for m in rows if m.role == MANAGER],
    }


def _validate_name(name: str) -> str:
    if not re.fullmatch(TEAM_NAME_PATTERN, name or ""):
        raise ValidationFailed.field(
            "name",
            "3-36 characters: letters, digits, '-' and '_', starting with a letter and ending "
            "with a letter or digit",
        )
    if name.lower() == EVERYONE:
        raise ValidationFailed.field("name", "'everyone' is reserved for the implicit team")
    return name


def _users_by_email(emails: Sequence[str], field: str) -> list[User]:
    """Existing users for `emails`, or a field error naming the first unknown one."""
    wanted = [e.strip().lower() for e in emails]
    found = {u.email: u for u in User.objects.filter(email__in=wanted)}
    for index, email in enumerate(wanted):
        if email not in found:
            raise ValidationFailed.field(f"{field}[{index}]", f"no user with email '{email}'")
    return [found[e] for e in dict.fromkeys(wanted)]


def _guard_editable_membership(team: Team) -> None:
    if team.is_everyone:
        raise Conflict("the 'everyone' team holds every user; its membership cannot be edited")
    if team.source == Team.Source.SCIM:
        raise Conflict(
            "this team is provisioned by your identity provider over SCIM; change its "
            "membership in the identity provider"
        )


def _require_membership_change(actor: Principal, team: Team, user: User, role: str) -> None:
    """Managers change members of their teams; managers are set tenant-wide; no self-joining."""
    if role == MANAGER:
        require(actor, Permission.TEAM_MANAGE)  # tenant-wide only: managers are appointed
        return
    require(actor, Permission.TEAM_MANAGE, team_id=team.pk)


def _require_may_hand_over(actor: Principal, team: Team, user: User, role: str) -> None:
    """Adding someone to a team hands them its grants (and its data): no escalation (#10).

    Nobody but a tenant admin adds themselves (a team's data comes with it), and the actor
    must hold every permission the membership gives, where it gives it.
    """
    if actor.kind == "system" or actor.is_tenant_admin:
        return
    if actor.kind == "user" and actor.id == user.pk:
        raise PolicyDenied(Permission.TEAM_MANAGE, "only tenant admins add themselves to teams")
    for grant in team_membership_grants(team, role):
        if grant.tenant_admin and not can_administer_admins(actor):
            raise PolicyDenied(Permission.TENANT_ASSIGN_ROLE, "the team holds tenant-admin")
        missing = [
            p
            for p in grant.permissions
            if not decide(actor, p, team_id=grant.team_id, resource=grant.resource).allowed
        ]
        if missing:
            raise PolicyDenied(Permission.TENANT_ASSIGN_ROLE, f"the team grants {sorted(missing)}")


@transaction.atomic
def team_create(
    *,
    actor: Principal,
    name: str,
    description: str = "",
    members: Sequence[str] = (),
    managers: Sequence[str] = (),
    source: str = Team.Source.MANUAL,
    tags: dict[str, str] | None = None,
    owned_by: dict[str, str] | None = None,
    created_via: str = "console",
) -> Team:
    """A new team with its first members and managers."""
    require(actor, Permission.TEAM_CREATE)
    _validate_name(name)
    if Team.objects.filter(name__iexact=name).exists():
        raise Conflict(f"a team named '{name}' already exists")
    member_users = _users_by_email(members, "members")
    manager_users = _users_by_email(managers, "managers")
    team = Team.objects.create(
        name=name,
        description=description,
        source=source,
        tags=tags or {},
        owned_by=owned_by or {},
        created_via=created_via,
    )
    TeamMembership.objects.bulk_create(
        [TeamMembership(team=team, user=u, role=MEMBER) for u in member_users]
        + [TeamMembership(team=team, user=u, role=MANAGER) for u in manager_users]
    )
    audit_record(actor=actor, action="team.created", target=team, after=team_snapshot(team))
    return team


@transaction.atomic
def team_update(
    *,
    actor: Principal,
    team: Team,
    description: str | None = None,
    tags: dict[str, str] | None = None,
    owned_by: dict[str, str] | None = None,
) -> Team:
    """Change a team's description, tags or owner (its name is its identity)."""
    require(actor, Permission.TEAM_MANAGE, team_id=team.pk)
    before = team_snapshot(team)
    changes = {"description": description, "tags": tags, "owned_by": owned_by}
    fields = [k for k, v in changes.items() if v is not None and v != getattr(team, k)]
    for name in fields:
        setattr(team, name, changes[name])
    if fields:
        team.save(update_fields=[*fields, "updated_at"])
        audit_record(
            actor=actor,
            action="team.updated",
            target=team,
            before=before,
            after=team_snapshot(team),
        )
    return team


@transaction.atomic
def team_delete(*, actor: Principal, team: Team) -> None:
    """Delete a team and its memberships."""
    require(actor, Permission.TEAM_DELETE)
    if team.is_everyone:
        raise Conflict("the 'everyone' team cannot be deleted")
    owned = sorted(team.virtual_accounts.values_list("name", flat=True))
    if owned:
        # The accounts' owner is protected: without this the delete failed with a 500.
        raise Conflict(f"team '{team.name}' owns virtual accounts: {', '.join(owned)}")
    audit_record(actor=actor, action="team.deleted", target=team, before=team_snapshot(team))
    team.delete()


@transaction.atomic
def team_membership_add(*, actor: Principal, team: Team, user: User, role: str = MEMBER) -> bool:
    """Add `user` as member or manager. Returns False when already there."""
    if role not in (MEMBER, MANAGER):
        raise ValidationFailed.field("role", "must be 'member' or 'manager'")
    _require_membership_change(actor, team, user, role)
    _guard_editable_membership(team)
    if not TeamMembership.objects.filter(team=team, user=user, role=role).exists():
        _require_may_hand_over(actor, team, user, role)
    _, created = TeamMembership.objects.get_or_create(team=team, user=user, role=role)
    if created:
        audit_record(
            actor=actor,
            action=f"team.{role}_added",
            target=team,
            after={"user": user.email, "role": role},
        )
    return created


@transaction.atomic
def team_membership_remove(*, actor: Principal, team: Team, user: User, role: str = MEMBER) -> bool:
    """Remove `user` as member or manager. Returns False when they were not."""
    if role not in (MEMBER, MANAGER):
        raise ValidationFailed.field("role", "must be 'member' or 'manager'")
    _require_membership_change(actor, team, user, role)
    _guard_editable_membership(team)
    deleted, _ = TeamMembership.objects.filter(team=team, user=user, role=role).delete()
    if deleted:
        audit_record(
            actor=actor,
            action=f"team.{role}_removed",
            target=team,
            before={"user": user.email, "role": role},
        )
    return bool(deleted)


@transaction.atomic
def team_memberships_set(
    *,
    actor: Principal,
    team: Team,
    members: Sequence[str] | None = None,
    managers: Sequence[str] | None = None,
) -> bool:
    """Make the team's members and/or managers exactly these (used by apply). True if changed."""
    changed = False
    for role, emails, field in ((MEMBER, members, "members"), (MANAGER, managers, "managers")):
        if emails is None:
            continue
        wanted = {u.pk: u for u in _users_by_email(emails, field)}
        current = {
            m.user_id: m.user for m in team.memberships.select_related("user").filter(role=role)
        }
        for pk in wanted.keys() - current.keys():
            changed |= team_membership_add(actor=actor, team=team, user=wanted[pk], role=role)
        for pk in current.keys() - wanted.keys():
            changed |= team_membership_remove(actor=actor, team=team, user=current[pk], role=role)
    return changed
