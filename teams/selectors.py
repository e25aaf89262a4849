"""Reads of teams: what a principal may see, with members and managers prefetched."""

from __future__ import annotations

from django.db.models import Count, Prefetch, Q, QuerySet

from accounts.policy import Permission, Principal, holds_any
from gateway_project.errors import ObjectNotFound
from teams.models import EVERYONE, Team, TeamMembership


def team_sees_all(principal: Principal) -> bool:
    """Tenant-wide team readers see every team; others see the teams they belong to."""
    return holds_any(principal, Permission.TEAM_READ, Permission.TEAM_MANAGE)


def team_list(principal: Principal, *, search: str = "", ordering: str = "name") -> QuerySet[Team]:
    """Visible teams with member and manager counts (no query per row)."""
    qs = Team.objects.annotate(
        member_count=Count("memberships", filter=Q(memberships__role="member"), distinct=True),
        manager_count=Count("memberships", filter=Q(memberships__role="manager"), distinct=True),
    )
    if not team_sees_all(principal):
        if principal.kind != "user":
            # A virtual account is owned by its team, not a member of it: its token calls
            # models and reads its own data, never the team's roster (issue #10).
            return qs.none()
        mine = principal.member_team_ids | principal.managed_team_ids
        qs = qs.filter(Q(pk__in=mine) | Q(name=EVERYONE))
    if search:
        qs = qs.filter(Q(name__icontains=search) | Q(description__icontains=search))
    return qs.order_by(ordering, "pk")


def team_get_for(principal: Principal, *, pk: int | None = None, name: str | None = None) -> Team:
    """One visible team with its memberships; 404 whether it is missing or hidden."""
    qs = team_list(principal).prefetch_related(
        Prefetch(
            "memberships",
            queryset=TeamMembership.objects.select_related("user").order_by("user__email"),
        )
    )
    team = qs.filter(pk=pk).first() if pk is not None else qs.filter(name=name).first()
    if team is None:
        raise ObjectNotFound("team not found")
    return team


def team_members(team: Team, role: str) -> list[str]:
    """Emails of the team's members or managers, sorted (uses prefetched memberships)."""
    return sorted(m.user.email for m in team.memberships.all() if m.role == role)
