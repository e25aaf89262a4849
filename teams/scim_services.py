"""SCIM services and selectors: the SCIM token, and users and teams as the IdP provisions them.

Provisioning services require `Permission.SCIM_PROVISION`, which only the SCIM token's
principal holds (and which holds nothing else). Token services require
`settings:ManageSettings`. Every change is audited; requests under /scim/ are audited with
source SCIM by accounts.middleware.
"""

from __future__ import annotations

import hmac
import logging
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Prefetch, ProtectedError, Q, QuerySet
from django.utils import timezone

from accounts.audit import audit_record
from accounts.models import PersonalAccessToken, User
from accounts.policy import Permission, Principal, require
from accounts.services import is_last_active_admin, switch_active, user_snapshot
from accounts.tokens import random_secret
from gateway_project.crypto import keyed_digest
from gateway_project.errors import Conflict, ObjectNotFound, ValidationFailed
from teams.models import EVERYONE, TEAM_NAME_PATTERN, Team, TeamMembership
from teams.scim_models import ScimGroup, ScimToken, ScimUser
from teams.services import team_snapshot

logger = logging.getLogger(__name__)

SCIM_TOKEN_PREFIX = "gw_scim_"  # noqa: S105 - a public marker, not a secret
VISIBLE_SECRET_CHARS = 6
MAX_GRACE_DAYS = 90
TEAM_NAME_MAX = 36
MEMBER = TeamMembership.Role.MEMBER

# Enterprise extension attribute (RFC 7643 §4.3) -> ScimUser field.
ENTERPRISE_FIELDS: Mapping[str, str] = {
    "employeeNumber": "employee_number",
    "costCenter": "cost_center",
    "organization": "organization",
    "division": "division",
    "department": "department",
}


class ScimUniquenessConflict(Conflict):
    """The userName is taken (RFC 7644 §3.3: 409 with scimType `uniqueness`)."""


# --- SSO configuration and tokens ----------------------------------------------------------


def scim_enabled_for(name: str) -> bool:
    """Whether SCIM is turned on (`enable_scim`) for the SSO configuration `name`.

    Reads `accounts.SsoConfig` when that model is installed. Without it (no SSO settings
    model in this build) SCIM is governed by its tokens alone: only a settings manager or
    `manage.py scim_token` can issue one.
    """
    try:
        model = apps.get_model("accounts", "SsoConfig")
    except LookupError:
        return True
    return bool(model._default_manager.filter(name=name, enable_scim=True).exists())


def scim_base_url() -> str:
    """The SCIM base URL to give the IdP (`GATEWAY_PUBLIC_URL` + `/scim/v2`)."""
    return str(settings.GATEWAY_PUBLIC_URL).rstrip("/") + "/scim/v2"


@dataclass(frozen=True)
class ScimTokenStatus:
    """What the console shows for one SSO configuration's SCIM."""

    sso_name: str
    enabled: bool
    base_url: str
    tokens: list[ScimToken]  # usable ones: active, or within their grace period

    @property
    def current(self) -> ScimToken | None:
        return next((t for t in self.tokens if t.status == "active"), None)


def scim_token_status(sso_name: str) -> ScimTokenStatus:
    """SCIM state of an SSO configuration: enabled?, base URL, tokens still accepted."""
    now = timezone.now()
    tokens = list(
        ScimToken.objects.filter(sso_name=sso_name, revoked_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .order_by("-created_at", "-id")
    )
    return ScimTokenStatus(sso_name, scim_enabled_for(sso_name), scim_base_url(), tokens)


def _token_snapshot(token: ScimToken) -> dict[str, Any]:
    return {
        "sso": token.sso_name,
        "prefix": token.prefix,
        "expires_at": token.expires_at.isoformat() if token.expires_at else None,
        "revoked": token.revoked_at is not None,
    }


@transaction.atomic
def scim_token_issue(
    *, actor: Principal, sso_name: str, grace_period_days: int = 1
) -> tuple[ScimToken, str]:
    """A new SCIM token for `sso_name`; older ones stay valid `grace_period_days` more.

    Returns the raw token once; only its keyed digest is stored.
    """
    require(actor, Permission.SETTINGS_MANAGE)
    name = (sso_name or "").strip()
    if not name or len(name) > 64:
        raise ValidationFailed.field("sso", "the name of an SSO configuration is required")
    if not 0 <= grace_period_days <= MAX_GRACE_DAYS:
        raise ValidationFailed.field("grace_period_days", f"0 to {MAX_GRACE_DAYS} days")
    if not scim_enabled_for(name):
        raise Conflict(f"SCIM is not turned on for SSO configuration '{name}' (enable_scim)")
    raw = SCIM_TOKEN_PREFIX + random_secret()
    token = ScimToken.objects.create(
        sso_name=name,
        prefix=raw[: len(SCIM_TOKEN_PREFIX) + VISIBLE_SECRET_CHARS],
        digest=keyed_digest(raw),
        created_by=actor.subject,
    )
    cutoff = timezone.now() + timedelta(days=grace_period_days)
    # Set-based, so a concurrent rotation cannot extend an older token's life.
    ScimToken.objects.filter(sso_name=name, revoked_at__isnull=True).exclude(pk=token.pk).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=cutoff)
    ).update(expires_at=cutoff)
    audit_record(
        actor=actor,
        action="scim_token.issued",
        target=token,
        after={**_token_snapshot(token), "grace_period_days": grace_period_days},
    )
    return token, raw


@transaction.atomic
def scim_token_revoke(*, actor: Principal, token: ScimToken) -> ScimToken:
    """Stop a SCIM token at once. Idempotent."""
    require(actor, Permission.SETTINGS_MANAGE)
    if token.revoked_at is not None:
        return token
    before = _token_snapshot(token)
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    audit_record(
        actor=actor,
        action="scim_token.revoked",
        target=token,
        before=before,
        after=_token_snapshot(token),
    )
    return token


def scim_token_authenticate(raw: str) -> ScimToken | None:
    """The usable token for `raw` (not revoked, not past its grace period, SCIM enabled)."""
    if not raw.startswith(SCIM_TOKEN_PREFIX):
        return None
    digest = keyed_digest(raw)
    token = ScimToken.objects.filter(digest=digest, revoked_at__isnull=True).first()
    # The lookup is by keyed digest; compare again in constant time all the same.
    if token is None or not hmac.compare_digest(token.digest, digest):
        return None
    now = timezone.now()
    if token.expires_at is not None and token.expires_at <= now:
        return None
    if not scim_enabled_for(token.sso_name):
        return None
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ScimToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


def scim_principal_for(token: ScimToken) -> Principal:
    """The principal of a SCIM token: it holds SCIM_PROVISION and nothing else (policy.py)."""
    return Principal("scim_client", token.pk, f"scim:{token.sso_name}")


# --- users ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScimUserData:
    """A user as the IdP asserts it (already checked against the SCIM schema)."""

    user_name: str
    external_id: str = ""
    given_name: str = ""
    family_name: str = ""
    display_name: str = ""
    emails: Sequence[Mapping[str, Any]] = ()
    active: bool | None = True  # None: unassigned (RFC 7643 §2.5); the user stays as is
    enterprise: Mapping[str, str] = field(default_factory=dict)  # ScimUser field -> value


def _scim_memberships() -> Prefetch[Any]:
    return Prefetch(
        "team_memberships",
        queryset=TeamMembership.objects.filter(
            role=MEMBER, team__source=Team.Source.SCIM, team__scim_link__isnull=False
        )
        .select_related("team__scim_link")
        .order_by("team_id"),
        to_attr="scim_memberships",
    )


def scim_user_queryset() -> QuerySet[User]:
    """Users as SCIM sees them: everyone but those a SCIM DELETE removed."""
    return (
        User.objects.filter(Q(scim_link__isnull=True) | Q(scim_link__deleted_at__isnull=True))
        .select_related("scim_link")
        .prefetch_related(_scim_memberships())
    )


def scim_user_get(pk: int | None) -> User:
    """One user visible to SCIM, or ObjectNotFound."""
    user = scim_user_queryset().filter(pk=pk).first() if pk is not None else None
    if user is None:
        raise ObjectNotFound("user not found")
    return user


def scim_link_of(user: User) -> ScimUser | None:
    """The user's SCIM link row, if SCIM ever wrote to the user."""
    link: ScimUser | None = getattr(user, "scim_link", None)
    return link


def _user_name(value: str) -> str:
    address = (value or "").strip().lower()
    try:
        validate_email(address)
    except DjangoValidationError as exc:
        raise ValidationFailed.field(
            "userName", "must be an email address (it is the user's sign-in address)"
        ) from exc
    return address


def _clean_emails(emails: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    cleaned = []
    for index, item in enumerate(emails):
        value = str(item.get("value", "")).strip()
        try:
            validate_email(value)
        except DjangoValidationError as exc:
            raise ValidationFailed.field(f"emails[{index}].value", "not an email address") from exc
        entry: dict[str, Any] = {"value": value}
        if item.get("type"):
            entry["type"] = str(item["type"])
        if item.get("primary") is not None:
            entry["primary"] = bool(item["primary"])
        cleaned.append(entry)
    return cleaned


def _scim_snapshot(user: User, link: ScimUser) -> dict[str, Any]:
    return {
        **user_snapshot(user),
        "external_id": link.external_id,
        "given_name": link.given_name,
        "family_name": link.family_name,
        "emails": [e.get("value") for e in link.emails],
        "active_asserted": link.active_asserted,
        **{name: getattr(link, name) for name in ENTERPRISE_FIELDS.values()},
    }


def _set_active(actor: Principal, user: User, active: bool) -> None:
    """Same state change as accounts.services.user_set_active, under SCIM_PROVISION.

    Nothing the user's teams own is touched.
    """
    if user.is_active == active:
        return
    if not active and is_last_active_admin(user):
        raise Conflict("this is the last active tenant admin; it cannot be deactivated")
    switch_active(actor=actor, user=user, active=active)


def _limited(value: str, limit: int, field_name: str) -> str:
    text = (value or "").strip()
    if len(text) > limit:
        raise ValidationFailed.field(field_name, f"at most {limit} characters")
    return text


def _apply_user(
    actor: Principal, user: User, link: ScimUser, data: ScimUserData, *, audit: bool = True
) -> bool:
    """Write `data` onto the user and its link; True when anything changed.

    Attribute changes are audited as `user.scim_updated`, an `active` change as
    `user.deactivated` / `user.reactivated` (the verbs the console uses).
    """
    address = _user_name(data.user_name)
    emails = _clean_emails(data.emails)
    given = _limited(data.given_name, 150, "name.givenName")
    family = _limited(data.family_name, 150, "name.familyName")
    display = _limited(data.display_name, 150, "displayName")
    external_id = _limited(data.external_id, 255, "externalId")
    enterprise = {
        name: _limited(str(data.enterprise.get(name, "")), 255, attr)
        for attr, name in ENTERPRISE_FIELDS.items()
    }
    before = _scim_snapshot(user, link)
    if address != user.email:
        if User.objects.filter(email__iexact=address).exclude(pk=user.pk).exists():
            raise ScimUniquenessConflict(f"a user with userName {address} already exists")
        user.email = address
    user.display_name = (display or f"{given} {family}".strip())[:150]
    link.external_id = external_id
    link.given_name = given
    link.family_name = family
    link.display_name = display
    link.emails = emails
    for name, value in enterprise.items():
        setattr(link, name, value)
    link.active_asserted = data.active is not None
    after = _scim_snapshot(user, link)
    changed = before != after
    try:
        with transaction.atomic():
            user.save(update_fields=["email", "display_name"])
    except IntegrityError as exc:
        raise ScimUniquenessConflict(f"a user with userName {address} already exists") from exc
    if changed and audit:
        audit_record(
            actor=actor, action="user.scim_updated", target=user, before=before, after=after
        )
    if data.active is not None and data.active != user.is_active:
        _set_active(actor, user, data.active)
        changed = True
    if changed or link.pk is None:
        link.updated_at = timezone.now()
    link.save()
    return changed


@transaction.atomic
def scim_user_create(*, actor: Principal, data: ScimUserData) -> User:
    """Create a user pushed by the IdP; 409 when the userName is taken.

    A user that SCIM deleted earlier comes back (same row, same id): the gateway identifies
    people by email, and their audit trail should continue.
    """
    require(actor, Permission.SCIM_PROVISION)
    address = _user_name(data.user_name)
    existing = User.objects.select_for_update().filter(email__iexact=address).first()
    if existing is not None:
        link = ScimUser.objects.filter(user=existing).first()
        if link is None or link.deleted_at is None:
            raise ScimUniquenessConflict(f"a user with userName {address} already exists")
        user = existing
        link.deleted_at = None
        link.created_at = timezone.now()
        if data.active is None and not user.is_active:
            _set_active(actor, user, True)
    else:
        try:
            with transaction.atomic():
                user = User.objects.create_user(address, created_via="scim")
        except IntegrityError as exc:  # a concurrent identical create won
            raise ScimUniquenessConflict(f"a user with userName {address} already exists") from exc
        link = ScimUser(user=user)
    _apply_user(actor, user, link, data, audit=False)
    audit_record(
        actor=actor,
        action="user.scim_created",
        target=user,
        after=_scim_snapshot(user, link),
    )
    return scim_user_get(user.pk)


@transaction.atomic
def scim_user_replace(*, actor: Principal, user: User, data: ScimUserData) -> User:
    """Make the user exactly what the IdP asserts (PUT, and PATCH once applied)."""
    require(actor, Permission.SCIM_PROVISION)
    locked = User.objects.select_for_update().get(pk=user.pk)
    link = ScimUser.objects.filter(user=locked).first() or ScimUser(user=locked)
    if link.deleted_at is not None:
        raise ObjectNotFound("user not found")
    _apply_user(actor, locked, link, data)
    return scim_user_get(locked.pk)


@transaction.atomic
def scim_user_delete(*, actor: Principal, user: User) -> None:
    """SCIM DELETE: deactivate, revoke PATs, leave SCIM teams, hide from SCIM. Keep the row.

    The user's own data (audit trail, request logs, resource roles) stays, and virtual
    accounts belong to teams, so they keep working.
    """
    require(actor, Permission.SCIM_PROVISION)
    locked = User.objects.select_for_update().get(pk=user.pk)
    link = ScimUser.objects.filter(user=locked).first() or ScimUser(user=locked)
    if link.deleted_at is not None:
        raise ObjectNotFound("user not found")
    before = _scim_snapshot(locked, link)
    _set_active(actor, locked, False)
    left = TeamMembership.objects.filter(user=locked, role=MEMBER, team__source=Team.Source.SCIM)
    teams = sorted(left.values_list("team__name", flat=True))
    left.delete()
    revoked = PersonalAccessToken.objects.filter(user=locked, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    now = timezone.now()
    link.deleted_at = now
    link.updated_at = now
    link.save()
    audit_record(
        actor=actor,
        action="user.scim_deleted",
        target=locked,
        before={**before, "scim_teams": teams},
        after={**user_snapshot(locked), "pats_revoked": revoked},
    )


# --- groups (teams) ------------------------------------------------------------------------


@dataclass(frozen=True)
class ScimGroupData:
    """A group as the IdP asserts it: member ids are user primary keys."""

    display_name: str
    external_id: str = ""
    member_ids: Sequence[int] = ()


def _scim_members() -> Prefetch[Any]:
    return Prefetch(
        "memberships",
        queryset=TeamMembership.objects.filter(role=MEMBER).order_by("user_id"),
        to_attr="scim_members",
    )


def scim_group_queryset() -> QuerySet[Team]:
    """Teams provisioned by SCIM, with their SCIM link and member rows."""
    return (
        Team.objects.filter(source=Team.Source.SCIM, scim_link__isnull=False)
        .select_related("scim_link")
        .prefetch_related(_scim_members())
    )


def scim_group_get(pk: int | None) -> Team:
    """One SCIM team, or ObjectNotFound."""
    team = scim_group_queryset().filter(pk=pk).first() if pk is not None else None
    if team is None:
        raise ObjectNotFound("group not found")
    return team


def scim_group_mappings() -> list[ScimGroup]:
    """IdP group name -> team name, for the console (names that had to be mapped first)."""
    rows = list(ScimGroup.objects.select_related("team").order_by("team__name"))
    return sorted(rows, key=lambda g: (g.display_name == g.team.name, g.team.name))


def _slug(display_name: str) -> str:
    ascii_name = (
        unicodedata.normalize("NFKD", display_name).encode("ascii", "ignore").decode("ascii")
    )
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", ascii_name).strip("-_")
    slug = re.sub(r"-{2,}", "-", slug)
    if not slug or not slug[0].isalpha():
        slug = f"group-{slug}" if slug else "group"
    return slug[:TEAM_NAME_MAX].rstrip("-_")


def scim_team_name_for(display_name: str, *, taken: Iterable[str] | None = None) -> str:
    """The team name for an IdP group: its displayName when valid, else a slug of it.

    Deterministic: the same displayName and the same existing names give the same result.
    A name in use (case-insensitively) or reserved gets `-2`, `-3`, … appended.
    """
    used = (
        {n.lower() for n in taken}
        if taken is not None
        else {n.lower() for n in Team.objects.values_list("name", flat=True)}
    )
    used.add(EVERYONE)
    fits = re.fullmatch(TEAM_NAME_PATTERN, display_name) is not None
    base = display_name if fits else _slug(display_name)
    if len(base) < 3:
        base = f"{base}-group" if base else "group"
    if base.lower() not in used:
        return base
    for number in range(2, 10_000):
        suffix = f"-{number}"
        candidate = base[: TEAM_NAME_MAX - len(suffix)].rstrip("-_") + suffix
        if candidate.lower() not in used:
            return candidate
    raise Conflict("no free team name for this group")


def _display_name(value: str) -> str:
    name = (value or "").strip()
    if not name or len(name) > 255:
        raise ValidationFailed.field("displayName", "1-255 characters required")
    return name


def _member_users(member_ids: Sequence[int]) -> dict[int, User]:
    wanted = list(dict.fromkeys(member_ids))
    found = {u.pk: u for u in scim_user_queryset().filter(pk__in=wanted)}
    missing = [pk for pk in wanted if pk not in found]
    if missing:
        raise ValidationFailed.field("members", f"{len(missing)} member(s) are not known users")
    return found


def _group_snapshot(team: Team, display_name: str) -> dict[str, Any]:
    return {
        **team_snapshot(team),
        "scim_display_name": display_name,
        "external_id": team.external_id,
    }


@transaction.atomic
def scim_group_create(*, actor: Principal, data: ScimGroupData) -> Team:
    """A team for an IdP group, named after it (mapped when the name does not fit)."""
    require(actor, Permission.SCIM_PROVISION)
    display = _display_name(data.display_name)
    members = _member_users(data.member_ids)
    team = None
    for _attempt in range(5):
        name = scim_team_name_for(display)
        try:
            with transaction.atomic():
                team = Team.objects.create(
                    name=name,
                    source=Team.Source.SCIM,
                    external_id=data.external_id,
                    created_via="scim",
                )
        except IntegrityError:  # a concurrent create took the name: map again
            continue
        break
    if team is None:
        raise Conflict("could not find a free team name for this group; retry")
    ScimGroup.objects.create(team=team, display_name=display)
    TeamMembership.objects.bulk_create(
        [TeamMembership(team=team, user=u, role=MEMBER) for u in members.values()]
    )
    audit_record(
        actor=actor, action="team.created", target=team, after=_group_snapshot(team, display)
    )
    return scim_group_get(team.pk)


@transaction.atomic
def scim_group_replace(*, actor: Principal, team: Team, data: ScimGroupData) -> Team:
    """Make the team's displayName, externalId and members what the IdP asserts.

    The team keeps its name when the group is renamed: `team:<name>` is referenced by
    manifests, rules and bindings. Membership changes are written set-wise, so a large PATCH
    batch costs a few queries, and audited as one event.
    """
    require(actor, Permission.SCIM_PROVISION)
    locked = Team.objects.select_for_update().get(pk=team.pk)
    link = ScimGroup.objects.get(team=locked)
    display = _display_name(data.display_name)
    members = _member_users(data.member_ids)
    current = dict(
        TeamMembership.objects.filter(team=locked, role=MEMBER).values_list(
            "user_id", "user__email"
        )
    )
    added = [members[pk] for pk in members if pk not in current]
    removed = [pk for pk in current if pk not in members]
    before = {"scim_display_name": link.display_name, "external_id": locked.external_id}
    after = {"scim_display_name": display, "external_id": data.external_id}
    if not added and not removed and before == after:
        return scim_group_get(locked.pk)
    TeamMembership.objects.bulk_create(
        [TeamMembership(team=locked, user=u, role=MEMBER) for u in added]
    )
    TeamMembership.objects.filter(team=locked, role=MEMBER, user_id__in=removed).delete()
    locked.external_id = data.external_id
    locked.save(update_fields=["external_id", "updated_at"])
    link.display_name = display
    link.updated_at = timezone.now()
    link.save(update_fields=["display_name", "updated_at"])
    audit_record(
        actor=actor,
        action="team.scim_updated",
        target=locked,
        before={**before, "members_removed": sorted(current[pk] for pk in removed)},
        after={**after, "members_added": sorted(u.email for u in added)},
    )
    return scim_group_get(locked.pk)


@transaction.atomic
def scim_group_delete(*, actor: Principal, team: Team) -> None:
    """SCIM DELETE of a group: delete the team, or detach it when it owns virtual accounts.

    Virtual accounts must keep working, so a team that owns some stays, as a manual team
    (its members kept) that admins can then manage or delete.
    """
    require(actor, Permission.SCIM_PROVISION)
    locked = Team.objects.select_for_update().get(pk=team.pk)
    link = ScimGroup.objects.get(team=locked)
    snapshot = _group_snapshot(locked, link.display_name)
    try:
        with transaction.atomic():
            audit_record(actor=actor, action="team.deleted", target=locked, before=snapshot)
            locked.delete()
    except ProtectedError:
        link.delete()
        locked.source = Team.Source.MANUAL
        locked.external_id = ""
        locked.save(update_fields=["source", "external_id", "updated_at"])
        audit_record(
            actor=actor,
            action="team.scim_detached",
            target=locked,
            before=snapshot,
            after={**team_snapshot(locked), "source": locked.source},
        )
