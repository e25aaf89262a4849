"""Subject strings: `user:<email>`, `team:<name>`, `virtualaccount:<name>`, `role:<id>`."""

from __future__ import annotations

from dataclasses import dataclass

from accounts.models import User
from gateway_project.errors import ValidationFailed
from teams.models import Team

SUBJECT_KINDS = ("user", "team", "virtualaccount", "role")


@dataclass(frozen=True)
class ResolvedSubject:
    """A subject string and the row it names (exactly one of user or team for now)."""

    text: str
    user: User | None = None
    team: Team | None = None


def subject_parse(text: str, *, field: str = "subject") -> tuple[str, str]:
    """`team:ml` -> ("team", "ml"); a field error for anything else."""
    kind, sep, name = (text or "").strip().partition(":")
    if kind == "virtual-account":  # the guardrails docs' spelling; S3 says `virtualaccount`
        kind = "virtualaccount"
    if not sep or kind not in SUBJECT_KINDS or not name:
        raise ValidationFailed.field(
            field, f"'{text}' is not a subject (user:<email>, team:<name>, virtualaccount:<name>)"
        )
    return kind, name


def subject_resolve(text: str, *, field: str = "subject") -> ResolvedSubject:
    """The user or team a subject string names, or a field error."""
    kind, name = subject_parse(text, field=field)
    if kind == "user":
        user = User.objects.filter(email__iexact=name).first()
        if user is None:
            raise ValidationFailed.field(field, f"no user '{name}'")
        return ResolvedSubject(user.subject, user=user)
    if kind == "team":
        team = Team.objects.filter(name=name).first()
        if team is None:
            raise ValidationFailed.field(field, f"no team '{name}'")
        return ResolvedSubject(team.subject, team=team)
    raise ValidationFailed.field(field, f"{kind} subjects are not supported here yet")
