"""Console pages for teams: list, create, detail (description, members, managers), delete.

Each view parses input, takes the request's principal, calls one service or selector and
renders; teams.services decides what is allowed (accounts.console maps its errors).
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from accounts.console import ConsoleView, form_error_apply, paginate, sort_param
from accounts.console_yaml import ObjectYamlView, YamlTarget
from accounts.policy import Permission, Principal, require
from accounts.selectors import user_get_by_email
from gateway_project.errors import Conflict, ValidationFailed
from teams import selectors, services
from teams.forms import TeamCreateForm, TeamMemberAddForm, TeamMemberRemoveForm, TeamUpdateForm
from teams.models import Team, TeamMembership

INVALID_FORM = 400
MEMBER = TeamMembership.Role.MEMBER
MANAGER = TeamMembership.Role.MANAGER
TEAM_SORTS = {
    "name": "name",
    "members": "member_count",
    "managers": "manager_count",
    "created": "created_at",
}


class TeamListView(ConsoleView):
    """The teams the principal may see, with member and manager counts."""

    def get(self, request: HttpRequest) -> HttpResponse:
        """The list page."""
        search = request.GET.get("q", "").strip()
        sort, ordering = sort_param(request, TEAM_SORTS, "name")
        teams = selectors.team_list(self.principal, search=search, ordering=ordering)
        context = {
            "page": paginate(request, teams),
            "q": search,
            "sort": sort,
            "can_create": self.principal.holds(Permission.TEAM_CREATE),
        }
        return render(request, "teams/team_list.html", context)


class TeamCreateView(ConsoleView):
    """A new team with its first members and managers."""

    policy_permission = (Permission.TEAM_CREATE,)
    template_name = "teams/team_create.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        """The empty form."""
        return render(request, self.template_name, {"form": TeamCreateForm()})

    def post(self, request: HttpRequest) -> HttpResponse:
        """Create the team."""
        form = TeamCreateForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                team = services.team_create(
                    actor=self.principal,
                    name=data["name"].strip(),
                    description=data["description"],
                    members=data["members"],
                    managers=data["managers"],
                )
            except (ValidationFailed, Conflict) as exc:
                form_error_apply(form, exc)
            else:
                messages.success(request, f"Created team {team.name}.")
                return redirect("teams:team_detail", pk=team.pk)
        return render(request, self.template_name, {"form": form}, status=INVALID_FORM)


def membership_locked_reason(team: Team) -> str:
    """Why membership cannot be edited here, or "" when it can."""
    if team.is_everyone:
        return "everyone"
    if team.source == Team.Source.SCIM:
        return "scim"
    return ""


def team_detail_page(
    request: HttpRequest,
    principal: Principal,
    team: Team,
    *,
    update_form: TeamUpdateForm | None = None,
    add_form: TeamMemberAddForm | None = None,
    status: int = 200,
) -> HttpResponse:
    """The team page with the controls `principal` may use (uses prefetched memberships)."""
    rows = list(team.memberships.all())
    locked = membership_locked_reason(team)
    may_manage_team = principal.holds(Permission.TEAM_MANAGE, team_id=team.pk)
    adding_role = add_form.data.get("role") if add_form is not None else None
    context = {
        "team": team,
        "members": [m for m in rows if m.role == MEMBER],
        "managers": [m for m in rows if m.role == MANAGER],
        "locked": locked,
        "can_edit_description": may_manage_team and not team.is_everyone,
        "can_edit_members": may_manage_team and not locked,
        "can_edit_managers": principal.holds(Permission.TEAM_MANAGE) and not locked,
        "can_delete": principal.holds(Permission.TEAM_DELETE) and not team.is_everyone,
        "update_form": update_form or TeamUpdateForm(initial={"description": team.description}),
        "member_form": add_form
        if adding_role == MEMBER
        else TeamMemberAddForm(initial={"role": MEMBER}, auto_id="id_member_%s"),
        "manager_form": add_form
        if adding_role == MANAGER
        else TeamMemberAddForm(initial={"role": MANAGER}, auto_id="id_manager_%s"),
    }
    return render(request, "teams/team_detail.html", context, status=status)


class TeamDetailView(ConsoleView):
    """One team: description, members and managers."""

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The team page."""
        team = selectors.team_get_for(self.principal, pk=pk)
        return team_detail_page(request, self.principal, team)


class TeamUpdateView(ConsoleView):
    """Change a team's description."""

    http_method_names = ("post",)

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Save the description."""
        team = selectors.team_get_for(self.principal, pk=pk)
        form = TeamUpdateForm(request.POST)
        if form.is_valid():
            try:
                services.team_update(
                    actor=self.principal, team=team, description=form.cleaned_data["description"]
                )
            except (ValidationFailed, Conflict) as exc:
                form_error_apply(form, exc)
            else:
                messages.success(request, "Saved the description.")
                return redirect("teams:team_detail", pk=team.pk)
        return team_detail_page(
            request, self.principal, team, update_form=form, status=INVALID_FORM
        )


def require_membership_change(principal: Principal, team: Team, role: str) -> None:
    """The interface check before resolving an email, so outsiders cannot probe addresses.

    teams.services checks again (and forbids managers adding themselves).
    """
    if role == MANAGER:
        require(principal, Permission.TEAM_MANAGE)
    else:
        require(principal, Permission.TEAM_MANAGE, team_id=team.pk)


class TeamMemberAddView(ConsoleView):
    """Add a user, by email, as a member (team managers) or a manager (tenant-wide)."""

    http_method_names = ("post",)

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Add the membership."""
        team = selectors.team_get_for(self.principal, pk=pk)
        role = MANAGER if request.POST.get("role") == MANAGER else MEMBER
        require_membership_change(self.principal, team, role)
        form = TeamMemberAddForm(request.POST, auto_id=f"id_{role}_%s")
        if form.is_valid():
            try:
                user = user_get_by_email(form.cleaned_data["email"])
                created = services.team_membership_add(
                    actor=self.principal, team=team, user=user, role=role
                )
            except (ValidationFailed, Conflict) as exc:
                form_error_apply(form, exc)
            else:
                if created:
                    messages.success(request, f"Added {user.email} as {role}.")
                else:
                    messages.info(request, f"{user.email} is already a {role}.")
                return redirect("teams:team_detail", pk=team.pk)
        return team_detail_page(request, self.principal, team, add_form=form, status=INVALID_FORM)


class TeamMemberRemoveView(ConsoleView):
    """Remove a member or a manager."""

    http_method_names = ("post",)

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Remove the membership."""
        team = selectors.team_get_for(self.principal, pk=pk)
        form = TeamMemberRemoveForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Choose a member to remove.")
            return redirect("teams:team_detail", pk=team.pk)
        user_id, role = form.cleaned_data["user"], form.cleaned_data["role"]
        row = next(
            (m for m in team.memberships.all() if m.user_id == user_id and m.role == role), None
        )
        if row is None:
            messages.info(request, f"That user is not a {role} of {team.name}.")
            return redirect("teams:team_detail", pk=team.pk)
        try:
            services.team_membership_remove(
                actor=self.principal, team=team, user=row.user, role=role
            )
        except (ValidationFailed, Conflict) as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"Removed {row.user.email} as {role}.")
        return redirect("teams:team_detail", pk=team.pk)


class TeamDeleteView(ConsoleView):
    """Delete a team and its memberships."""

    policy_permission = (Permission.TEAM_DELETE,)

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Ask for confirmation."""
        team = selectors.team_get_for(self.principal, pk=pk)
        return render(request, "teams/team_delete.html", {"team": team})

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Delete the team."""
        team = selectors.team_get_for(self.principal, pk=pk)
        try:
            services.team_delete(actor=self.principal, team=team)
        except Conflict as exc:
            messages.error(request, exc.message)
            return redirect("teams:team_detail", pk=team.pk)
        messages.success(request, f"Deleted team {team.name}.")
        return redirect("teams:team_list")


# --- apply using YAML --------------------------------------------------------------------

TEAM_STARTER = """\
# A team. Members use what the team is granted; managers add and remove members.
type: team
name: my-team
description: What this team works on.
managers: []
members:
  - {email}
"""


class TeamYamlView(ObjectYamlView):
    """A team's manifest: view it, preview and apply changes."""

    manifest_types = ("team",)
    starter_label = "Team"
    starter = TEAM_STARTER

    def target(self, **kwargs: Any) -> YamlTarget:
        """The team named by the URL, if the principal may see it."""
        team = selectors.team_get_for(self.principal, pk=kwargs["pk"])
        may_manage = self.principal.holds(Permission.TEAM_MANAGE, team_id=team.pk)
        return YamlTarget(
            manifest_type="team",
            name=team.name,
            url=reverse("teams:team_detail", args=[team.pk]),
            can_change=may_manage and not team.is_everyone,
            breadcrumbs=(("Access", ""), ("Teams", reverse("teams:team_list"))),
        )

    @classmethod
    def url_for_name(cls, name: str) -> str | None:
        """The team page of the team called `name`."""
        pk = Team.objects.filter(name=name).values_list("pk", flat=True).first()
        return reverse("teams:team_detail", args=[pk]) if pk is not None else None
