"""SCIM provisioning state: bearer tokens, and what the IdP asserted about users and teams.

The User and Team rows stay the gateway's own; these tables hold the SCIM-only attributes
(RFC 7643 §4.1, §4.2 and the enterprise extension §4.3) that the endpoint stores and returns.
"""

from __future__ import annotations

from typing import ClassVar

from django.db import models
from django.utils import timezone

__all__ = ["ScimGroup", "ScimToken", "ScimUser"]


class ScimToken(models.Model):
    """A bearer token that lets one SSO configuration's IdP call SCIM. Only a keyed digest is kept.

    Regenerating sets `expires_at` on the older tokens (the grace period during which the IdP
    still uses the old one); `revoked_at` stops a token at once.
    """

    sso_name = models.CharField(max_length=64, db_index=True)
    prefix = models.CharField(max_length=24)  # shown in lists to tell tokens apart
    digest = models.CharField(max_length=64, unique=True)
    created_by = models.CharField(max_length=300)  # actor subject
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering: ClassVar = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"SCIM token {self.prefix}… of {self.sso_name}"

    @property
    def status(self) -> str:
        """`revoked`, `expired`, `grace` (valid until expires_at) or `active`."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is None:
            return "active"
        return "expired" if self.expires_at <= timezone.now() else "grace"


class ScimUser(models.Model):
    """The SCIM side of a user: external id, name parts, emails, enterprise attributes.

    `deleted_at` marks a SCIM DELETE: the user is deactivated and hidden from SCIM, but the row
    (and everything that points at it) stays. `active_asserted` is False after a PATCH that
    removes `active` (RFC 7643 §2.5: the attribute is then unassigned).
    """

    user = models.OneToOneField("accounts.User", on_delete=models.CASCADE, related_name="scim_link")
    external_id = models.CharField(max_length=255, blank=True, db_index=True)
    given_name = models.CharField(max_length=150, blank=True)
    family_name = models.CharField(max_length=150, blank=True)
    display_name = models.CharField(max_length=150, blank=True)  # as the IdP sent it
    emails = models.JSONField(default=list, blank=True)  # [{value, type, primary}]
    active_asserted = models.BooleanField(default=True)
    employee_number = models.CharField(max_length=255, blank=True)
    cost_center = models.CharField(max_length=255, blank=True)
    organization = models.CharField(max_length=255, blank=True)
    division = models.CharField(max_length=255, blank=True)
    department = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)  # set by every SCIM change
    deleted_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"SCIM link of user {self.user_id}"


class ScimGroup(models.Model):
    """The SCIM side of a team: the IdP group's own displayName, kept beside the team name.

    The team name is the displayName when it fits the team name rule, else a mapped name; the
    team keeps its name when the group is renamed, since `team:<name>` is referenced elsewhere.
    """

    team = models.OneToOneField("teams.Team", on_delete=models.CASCADE, related_name="scim_link")
    display_name = models.CharField(max_length=255)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)  # set by every SCIM change

    def __str__(self) -> str:
        return f"{self.display_name} -> team {self.team_id}"
