"""Teams and their memberships (members and managers)."""

from __future__ import annotations

from typing import ClassVar

from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

TEAM_NAME_PATTERN = r"^[a-zA-Z][a-zA-Z0-9_-]{1,34}[a-zA-Z0-9]$"
EVERYONE = "everyone"

team_name_validator = RegexValidator(
    TEAM_NAME_PATTERN,
    "3-36 characters: letters, digits, '-' and '_', starting with a letter and ending with a "
    "letter or digit.",
)


class Team(models.Model):
    """A group of users. The built-in `everyone` team implicitly holds every user (no rows)."""

    class Source(models.TextChoices):
        MANUAL = "manual", "Manual"
        SCIM = "scim", "SCIM"
        SSO_GROUP = "sso-group", "SSO group"
        BUILTIN = "builtin", "Built-in"

    name = models.CharField(max_length=36, unique=True, validators=[team_name_validator])
    description = models.TextField(blank=True)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.MANUAL)
    external_id = models.CharField(max_length=255, blank=True)
    tags = models.JSONField(default=dict, blank=True)
    owned_by = models.JSONField(default=dict, blank=True)  # manifest `ownedBy`, kept verbatim
    created_via = models.CharField(max_length=16, default="console")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering: ClassVar = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def subject(self) -> str:
        return f"team:{self.name}"

    @property
    def is_everyone(self) -> bool:
        return self.name == EVERYONE


class TeamMembership(models.Model):
    """A user's place in a team: a member, a manager, or both (two rows)."""

    class Role(models.TextChoices):
        MEMBER = "member", "Member"
        MANAGER = "manager", "Manager"

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        "accounts.User", on_delete=models.CASCADE, related_name="team_memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering: ClassVar = ["team__name", "role"]
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["team", "user", "role"], name="teams_membership_unique"
            ),
        ]
        indexes: ClassVar = [models.Index(fields=["user", "role"], name="teams_member_user_idx")]

    def __str__(self) -> str:
        return f"{self.user_id} {self.role} of {self.team_id}"


from teams.scim_models import *  # noqa: E402,F403 - SCIM models live in their own module
