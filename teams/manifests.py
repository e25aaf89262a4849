"""`type: team` manifests."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from pydantic import AfterValidator, Field

from accounts import services as account_services
from accounts.models import User
from accounts.policy import Permission, Principal
from gateway_project.errors import ObjectNotFound
from gateway_project.manifests import Kind, ManifestModel, register
from teams import selectors, services
from teams.models import TEAM_NAME_PATTERN, Team, TeamMembership


def _email(value: str) -> str:
    address = value.strip().lower()
    try:
        validate_email(address)
    except DjangoValidationError as exc:
        raise ValueError(f"'{value}' is not a valid email") from exc
    return address


Email = Annotated[str, AfterValidator(_email)]


class TeamManifest(ManifestModel):
    """As the mirrored product writes it; `description` is ours and optional."""

    type: Literal["team"]
    name: str = Field(pattern=TEAM_NAME_PATTERN)
    description: str = ""
    managers: list[Email] = Field(default_factory=list)
    members: list[Email]
    ownedBy: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)


class TeamKind(Kind):
    """Teams: membership is made exactly the manifest's; unknown emails are invited."""

    manifest_type: ClassVar[str] = "team"
    schema: ClassVar[type[ManifestModel]] = TeamManifest
    rank: ClassVar[int] = 10
    directory: ClassVar[str] = "teams"
    read_permission: ClassVar[Permission] = Permission.TEAM_READ

    def current(self, name: str) -> dict[str, Any] | None:
        team = Team.objects.filter(name=name).prefetch_related("memberships__user").first()
        if team is None or team.is_everyone:
            return None
        out: dict[str, Any] = {"type": self.manifest_type, "name": team.name}
        if team.description:
            out["description"] = team.description
        out["managers"] = selectors.team_members(team, TeamMembership.Role.MANAGER)
        out["members"] = selectors.team_members(team, TeamMembership.Role.MEMBER)
        if team.owned_by:
            out["ownedBy"] = team.owned_by
        if team.tags:
            out["tags"] = team.tags
        return out

    def apply(self, actor: Principal, manifest: Any) -> list[str]:
        m: TeamManifest = manifest
        notes = self._invite_unknown(actor, [*m.managers, *m.members])
        team = Team.objects.filter(name=m.name).first()
        if team is None:
            services.team_create(
                actor=actor,
                name=m.name,
                description=m.description,
                members=m.members,
                managers=m.managers,
                tags=m.tags,
                owned_by=m.ownedBy,
                created_via="apply",
            )
            return notes
        if team.is_everyone:
            raise ObjectNotFound("the 'everyone' team is built in and cannot be applied")
        team = selectors.team_get_for(actor, pk=team.pk)
        services.team_update(
            actor=actor, team=team, description=m.description, tags=m.tags, owned_by=m.ownedBy
        )
        services.team_memberships_set(
            actor=actor, team=team, members=m.members, managers=m.managers
        )
        return notes

    def _invite_unknown(self, actor: Principal, emails: list[str]) -> list[str]:
        notes = []
        known = set(User.objects.filter(email__in=emails).values_list("email", flat=True))
        for email in dict.fromkeys(e for e in emails if e not in known):
            result = account_services.user_invite(actor=actor, email=email, created_via="apply")
            how = "emailed" if result.emailed else f"invitation link: {result.link}"
            notes.append(f"invited {email} ({how})")
        return notes

    def delete(self, actor: Principal, name: str) -> None:
        services.team_delete(actor=actor, team=selectors.team_get_for(actor, name=name))

    def names(self, *, created_by_apply_only: bool) -> list[str]:
        qs = Team.objects.exclude(source=Team.Source.BUILTIN).exclude(source=Team.Source.SCIM)
        if created_by_apply_only:
            qs = qs.filter(created_via="apply")
        return list(qs.values_list("name", flat=True))


register(TeamKind())
