"""Every write to users, roles, role bindings, tokens and invitations goes through here."""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify

from accounts.audit import audit_record
from accounts.models import (
    MEMBER,
    TENANT_ADMIN,
    Invitation,
    PersonalAccessToken,
    Role,
    RoleBinding,
    RoleBindingGrant,
    RoleBindingSubject,
    User,
)
from accounts.policy import (
    ALL_PERMISSIONS,
    TEAM_SCOPED_PERMISSIONS,
    Permission,
    PolicyDenied,
    Principal,
    can_administer_admins,
    missing_for_grant,
    require,
)
from accounts.tokens import opaque_token_generate, pat_generate
from gateway_project.crypto import keyed_digest
from gateway_project.errors import Conflict, ObjectNotFound, ValidationFailed
from teams.models import Team

logger = logging.getLogger(__name__)

ROLE_SLUG_PATTERN = r"^[a-z][a-z0-9-]{1,62}[a-z0-9]$"


# --- users -------------------------------------------------------------------------------


def user_snapshot(user: User) -> dict[str, Any]:
    """The audited fields of a user."""
    return {
        "email": user.email,
        "display_name": user.display_name,
        "tenant_role": user.tenant_role_id,
        "is_active": user.is_active,
    }


def normalize_email(email: str) -> str:
    """Lower-cased, stripped email, or ValidationFailed naming the field."""
    value = (email or "").strip().lower()
    try:
        validate_email(value)
    except DjangoValidationError as exc:
        raise ValidationFailed.field("email", "not a valid email") from exc
    return value


def _role_for_assignment(actor: Principal, role_slug: str, field: str = "tenant_role") -> Role:
    """The tenant role `actor` wants to hand out, refused if it would escalate."""
    role = Role.objects.filter(slug=role_slug, resource_type=Role.ResourceType.TENANT).first()
    if role is None:
        raise ValidationFailed.field(field, f"unknown tenant role '{role_slug}'")
    if role.slug == TENANT_ADMIN and not can_administer_admins(actor):
        raise PolicyDenied(Permission.TENANT_ASSIGN_ROLE, "only tenant admins make tenant admins")
    missing = missing_for_grant(actor, role.permissions)
    if missing:
        raise PolicyDenied(Permission.TENANT_ASSIGN_ROLE, f"would grant {missing}")
    return role


@dataclass(frozen=True)
class InviteResult:
    user: User
    link: str
    emailed: bool


@transaction.atomic
def user_invite(
    *,
    actor: Principal,
    email: str,
    display_name: str = "",
    tenant_role: str = MEMBER,
    created_via: str = "console",
) -> InviteResult:
    """Create a user who sets their password through a one-time link (mailed if SMTP is set)."""
    require(actor, Permission.USER_MANAGE)
    address = normalize_email(email)
    role = _role_for_assignment(actor, tenant_role)
    if User.objects.filter(email__iexact=address).exists():
        raise Conflict(f"a user with email {address} already exists")
    user = User.objects.create_user(
        address, display_name=display_name.strip(), tenant_role=role, created_via=created_via
    )
    audit_record(actor=actor, action="user.invited", target=user, after=user_snapshot(user))
    link = _invitation_issue(actor=actor, user=user)
    emailed = bool(settings.EMAIL_HOST)
    if emailed:
        from accounts.tasks import invitation_send_task

        # robust: with the broker down the invitation stands (Resend invite retries the mail).
        transaction.on_commit(lambda: invitation_send_task.delay(user.pk, link), robust=True)
    return InviteResult(user=user, link=link, emailed=emailed)


def _invitation_issue(*, actor: Principal, user: User) -> str:
    """A fresh one-time link for `user`; earlier unused links stop working."""
    Invitation.objects.filter(user=user, used_at__isnull=True).update(used_at=timezone.now())
    raw, digest = opaque_token_generate()
    Invitation.objects.create(
        user=user,
        digest=digest,
        expires_at=timezone.now() + timedelta(hours=settings.GATEWAY_INVITE_TTL_HOURS),
        created_by=actor.subject,
    )
    return str(settings.GATEWAY_PUBLIC_URL) + reverse("accounts:invitation_accept", args=[raw])


@transaction.atomic
def user_invitation_resend(*, actor: Principal, user: User) -> InviteResult:
    """A new invitation link for a user who has not set a password yet."""
    require(actor, Permission.USER_MANAGE)
    if user.has_usable_password():
        raise Conflict("this user has already set a password")
    link = _invitation_issue(actor=actor, user=user)
    audit_record(actor=actor, action="user.invitation_reissued", target=user)
    return InviteResult(user=user, link=link, emailed=False)


def invitation_find(raw: str) -> Invitation:
    """The valid, unused invitation for a raw link token."""
    invitation = (
        Invitation.objects.select_related("user")
        .filter(digest=keyed_digest(raw), used_at__isnull=True, expires_at__gt=timezone.now())
        .first()
    )
    if invitation is None or not invitation.user.is_active:
        raise ObjectNotFound("this invitation link is invalid or has expired")
    return invitation


@transaction.atomic
def invitation_accept(*, raw: str, password: str) -> User:
    """Set the invited user's password and spend the link."""
    invitation = invitation_find(raw)
    user = invitation.user
    try:
        validate_password(password, user)
    except DjangoValidationError as exc:
        raise ValidationFailed("password is too weak", {"password": exc.messages}) from exc
    updated = Invitation.objects.filter(pk=invitation.pk, used_at__isnull=True).update(
        used_at=timezone.now()
    )
    if updated != 1:  # spent concurrently
        raise ObjectNotFound("this invitation link is invalid or has expired")
    user.set_password(password)
    user.save(update_fields=["password"])
    actor = Principal("user", user.pk, user.subject)
    audit_record(actor=actor, action="user.invitation_accepted", target=user)
    return user


def _active_admin_count() -> int:
    return User.objects.filter(tenant_role__slug=TENANT_ADMIN, is_active=True).count()


def is_last_active_admin(user: User) -> bool:
    """True when `user` is the only active tenant admin, who must stay one and stay active."""
    return user.tenant_role_id == TENANT_ADMIN and user.is_active and _active_admin_count() <= 1


def _guard_last_admin(user: User) -> None:
    if is_last_active_admin(user):
        raise Conflict("this is the last active tenant admin; make another admin first")


def _guard_admin_target(actor: Principal, user: User) -> None:
    if user.tenant_role_id == TENANT_ADMIN and not can_administer_admins(actor):
        raise PolicyDenied(Permission.USER_MANAGE, "only tenant admins change tenant admins")


@transaction.atomic
def user_update(
    *,
    actor: Principal,
    user: User,
    display_name: str | None = None,
    tenant_role: str | None = None,
    is_active: bool | None = None,
) -> User:
    """Change a user's display name, tenant role and/or active flag, all or nothing.

    Never beyond the actor's own rights.
    """
    user = User.objects.select_for_update().get(pk=user.pk)
    before = user_snapshot(user)
    if display_name is not None and display_name != user.display_name:
        if not (actor.kind == "user" and actor.id == user.pk):
            require(actor, Permission.USER_MANAGE)
        user.display_name = display_name.strip()
    if tenant_role is not None and tenant_role != user.tenant_role_id:
        require(actor, Permission.TENANT_ASSIGN_ROLE)
        _guard_admin_target(actor, user)
        role = _role_for_assignment(actor, tenant_role)
        _guard_last_admin(user)
        user.tenant_role = role
    after = user_snapshot(user)
    if after != before:
        user.save()
        audit_record(actor=actor, action="user.updated", target=user, before=before, after=after)
    if is_active is not None:
        user = user_set_active(actor=actor, user=user, active=is_active)
    return user


@transaction.atomic
def user_set_active(*, actor: Principal, user: User, active: bool) -> User:
    """Deactivate (sessions and tokens stop working at once) or reactivate a user."""
    require(actor, Permission.USER_MANAGE)
    user = User.objects.select_for_update().get(pk=user.pk)
    if user.is_active == active:
        return user
    if not active:
        if actor.kind == "user" and actor.id == user.pk:
            raise Conflict("you cannot deactivate yourself")
        _guard_admin_target(actor, user)
        _guard_last_admin(user)
    switch_active(actor=actor, user=user, active=active)
    return user


def switch_active(*, actor: Principal, user: User, active: bool) -> None:
    """(De)activate a locked `user` and audit it; whether the actor may is the caller's check.

    Deactivation: console sessions stop at their next request (the auth backend refuses
    inactive users) and tokens in the proxy within its stated bound (the new auth epoch and
    the audit record move the config version its caches poll).
    """
    before = user_snapshot(user)
    user.is_active = active
    user.deactivated_at = None if active else timezone.now()
    user.auth_epoch += 1
    user.save(update_fields=["is_active", "deactivated_at", "auth_epoch"])
    action = "user.reactivated" if active else "user.deactivated"
    audit_record(actor=actor, action=action, target=user, before=before, after=user_snapshot(user))


@transaction.atomic
def tenant_admin_ensure(*, email: str, password: str = "") -> tuple[User, str | None]:
    """Make sure a tenant admin exists; create `email` as one if none does.

    Returns the admin and the generated password (None when given or when one already existed).
    """
    existing = User.objects.filter(tenant_role__slug=TENANT_ADMIN, is_active=True).first()
    if existing is not None:
        return existing, None
    address = normalize_email(email)
    generated = None if password else secrets.token_urlsafe(18)
    user = User.objects.filter(email__iexact=address).first()
    if user is None:
        user = User.objects.create_user(
            address, password or generated, tenant_role_id=TENANT_ADMIN, created_via="system"
        )
    else:
        user.tenant_role_id = TENANT_ADMIN
        user.is_active = True
        user.set_password(password or generated)
        user.save()
    audit_record(
        actor=Principal.system(),
        action="user.bootstrap_admin",
        target=user,
        after=user_snapshot(user),
    )
    return user, generated


# --- roles -------------------------------------------------------------------------------


def role_snapshot(role: Role) -> dict[str, Any]:
    """The audited fields of a role."""
    return {
        "slug": role.slug,
        "display_name": role.display_name,
        "description": role.description,
        "resource_type": role.resource_type,
        "permissions": sorted(role.permissions),
    }


def _validate_permissions(
    actor: Principal, permissions: Iterable[str], resource_type: str
) -> list[str]:
    """Known, in-scope permission strings the actor could grant; else a field error."""
    values = sorted(set(permissions))
    known = {p.value for p in ALL_PERMISSIONS}
    unknown = [p for p in values if p not in known]
    if unknown:
        raise ValidationFailed.field("permissions", f"unknown permission(s): {', '.join(unknown)}")
    if resource_type == Role.ResourceType.TEAM:
        scoped = {p.value for p in TEAM_SCOPED_PERMISSIONS}
        outside = [p for p in values if p not in scoped]
        if outside:
            raise ValidationFailed.field(
                "permissions", f"not valid in a team role: {', '.join(outside)}"
            )
    missing = missing_for_grant(actor, values)
    if missing:
        raise PolicyDenied(Permission.ROLE_MANAGE, f"would grant {missing}")
    return values


@transaction.atomic
def role_create(
    *,
    actor: Principal,
    slug: str,
    display_name: str,
    description: str = "",
    resource_type: str = Role.ResourceType.TENANT,
    permissions: Sequence[str] = (),
    created_via: str = "console",
) -> Role:
    """A custom role; its permissions must all be held by the actor."""
    require(actor, Permission.ROLE_MANAGE)
    if not re.fullmatch(ROLE_SLUG_PATTERN, slug or ""):
        raise ValidationFailed.field(
            "name", "3-64 lower-case letters, digits and '-', starting with a letter"
        )
    if resource_type not in Role.ResourceType.values:
        raise ValidationFailed.field("resourceType", "must be 'tenant' or 'team'")
    values = _validate_permissions(actor, permissions, resource_type)
    if Role.objects.filter(slug=slug).exists():
        raise Conflict(f"a role named '{slug}' already exists")
    role = Role.objects.create(
        slug=slug,
        display_name=display_name.strip() or slug,
        description=description,
        resource_type=resource_type,
        permissions=values,
        created_via=created_via,
    )
    audit_record(actor=actor, action="role.created", target=role, after=role_snapshot(role))
    return role


@transaction.atomic
def role_update(
    *,
    actor: Principal,
    role: Role,
    display_name: str | None = None,
    description: str | None = None,
    permissions: Sequence[str] | None = None,
) -> Role:
    """Edit a role (the built-in Team Manager role included); fixed roles refuse."""
    require(actor, Permission.ROLE_MANAGE)
    role = Role.objects.select_for_update().get(pk=role.pk)
    before = role_snapshot(role)
    if display_name is not None:
        role.display_name = display_name.strip() or role.slug
    if description is not None:
        role.description = description
    if permissions is not None:
        role.permissions = sorted(set(permissions))
    after = role_snapshot(role)
    if after == before:
        return role
    if not role.editable:
        raise Conflict(f"the built-in role '{role.slug}' cannot be edited")
    values = _validate_permissions(actor, role.permissions, role.resource_type)
    # Removing a permission you do not hold would also be an act on others' rights.
    missing = missing_for_grant(actor, sorted(set(before["permissions"]) - set(values)))
    if missing:
        raise PolicyDenied(Permission.ROLE_MANAGE, f"would revoke {missing}")
    role.save()
    audit_record(actor=actor, action="role.updated", target=role, before=before, after=after)
    return role


@transaction.atomic
def role_delete(*, actor: Principal, role: Role) -> None:
    """Delete a custom role that nobody holds."""
    require(actor, Permission.ROLE_MANAGE)
    if role.builtin:
        raise Conflict(f"the built-in role '{role.slug}' cannot be deleted")
    missing = missing_for_grant(actor, role.permissions)
    if missing:
        raise PolicyDenied(Permission.ROLE_MANAGE, f"role holds {missing}")
    if role.users.exists() or role.grants.exists():
        raise Conflict(f"role '{role.slug}' is still assigned; unassign it first")
    audit_record(actor=actor, action="role.deleted", target=role, before=role_snapshot(role))
    role.delete()


# --- role bindings -----------------------------------------------------------------------


@dataclass(frozen=True)
class SubjectRef:
    """`{type: user|team|virtualaccount, name}` from a manifest or form."""

    type: str
    name: str


@dataclass(frozen=True)
class GrantRef:
    """`{resourceType, resourceFqn, role}` from a manifest or form."""

    resource_type: str
    resource_fqn: str
    role: str


def role_binding_snapshot(binding: RoleBinding) -> dict[str, Any]:
    """The audited fields of a binding."""
    return {
        "name": binding.name,
        "subjects": sorted(s.subject for s in binding.subjects.select_related("user", "team")),
        "permissions": sorted(
            f"{g.resource_type}:{g.resource_fqn}:{g.role.slug}"
            for g in binding.grants.select_related("role")
        ),
    }


def _resolve_subjects(subjects: Sequence[SubjectRef]) -> list[tuple[User | None, Team | None]]:
    if not subjects:
        raise ValidationFailed.field("subjects", "at least one subject is required")
    resolved: list[tuple[User | None, Team | None]] = []
    for index, ref in enumerate(subjects):
        path = f"subjects[{index}]"
        if ref.type == "user":
            user = User.objects.filter(email__iexact=ref.name.strip()).first()
            if user is None:
                raise ValidationFailed.field(f"{path}.name", f"no user '{ref.name}'")
            resolved.append((user, None))
        elif ref.type == "team":
            team = Team.objects.filter(name=ref.name).first()
            if team is None:
                raise ValidationFailed.field(f"{path}.name", f"no team '{ref.name}'")
            resolved.append((None, team))
        elif ref.type == "virtualaccount":
            raise ValidationFailed.field(f"{path}.type", "virtual accounts are not available yet")
        else:
            raise ValidationFailed.field(f"{path}.type", "must be user, team or virtualaccount")
    return resolved


def _resolve_grants(
    actor: Principal, grants: Sequence[GrantRef]
) -> list[tuple[Role, str, str, Team | None]]:
    if not grants:
        raise ValidationFailed.field("permissions", "at least one permission is required")
    resolved: list[tuple[Role, str, str, Team | None]] = []
    for index, ref in enumerate(grants):
        path = f"permissions[{index}]"
        role = Role.objects.filter(slug=ref.role).first()
        if role is None:
            raise ValidationFailed.field(f"{path}.role", f"no role '{ref.role}'")
        if ref.resource_type != role.resource_type:
            raise ValidationFailed.field(
                f"{path}.resourceType", f"role '{role.slug}' applies to '{role.resource_type}'"
            )
        team = None
        if ref.resource_type == Role.ResourceType.TEAM:
            team = Team.objects.filter(name=ref.resource_fqn).first()
            if team is None:
                raise ValidationFailed.field(f"{path}.resourceFqn", f"no team '{ref.resource_fqn}'")
        if role.slug == TENANT_ADMIN and not can_administer_admins(actor):
            raise PolicyDenied(Permission.TENANT_ASSIGN_ROLE, "only admins bind tenant-admin")
        missing = missing_for_grant(actor, role.permissions, team_id=team.pk if team else None)
        if missing:
            raise PolicyDenied(Permission.TENANT_ASSIGN_ROLE, f"would grant {missing}")
        resolved.append((role, ref.resource_type, ref.resource_fqn, team))
    return resolved


@transaction.atomic
def role_binding_put(
    *,
    actor: Principal,
    name: str,
    subjects: Sequence[SubjectRef],
    grants: Sequence[GrantRef],
    description: str = "",
    created_via: str = "console",
) -> tuple[RoleBinding, bool]:
    """Create or replace a role binding. Returns (binding, created)."""
    require(actor, Permission.ROLE_MANAGE)
    require(actor, Permission.TENANT_ASSIGN_ROLE)
    if slugify(name) != name or not name:
        raise ValidationFailed.field("name", "lower-case letters, digits and '-' only")
    resolved_subjects = _resolve_subjects(subjects)
    resolved_grants = _resolve_grants(actor, grants)
    binding = RoleBinding.objects.select_for_update().filter(name=name).first()
    created = binding is None
    before = None if binding is None else role_binding_snapshot(binding)
    if binding is None:
        binding = RoleBinding.objects.create(
            name=name, description=description, created_via=created_via
        )
    else:
        # Replacing a binding revokes its old grants: the actor must be able to grant those too.
        for grant in binding.grants.select_related("role"):
            missing = missing_for_grant(actor, grant.role.permissions, team_id=grant.team_id)
            if missing:
                raise PolicyDenied(Permission.TENANT_ASSIGN_ROLE, f"would revoke {missing}")
        binding.description = description
        binding.save()
        binding.subjects.all().delete()
        binding.grants.all().delete()
    for user, team in resolved_subjects:
        RoleBindingSubject.objects.create(binding=binding, user=user, team=team)
    for role, resource_type, fqn, team in resolved_grants:
        RoleBindingGrant.objects.create(
            binding=binding, role=role, resource_type=resource_type, resource_fqn=fqn, team=team
        )
    after = role_binding_snapshot(binding)
    if before != after:
        action = "role_binding.created" if created else "role_binding.updated"
        audit_record(actor=actor, action=action, target=binding, before=before, after=after)
    return binding, created


@transaction.atomic
def role_binding_delete(*, actor: Principal, binding: RoleBinding) -> None:
    """Remove a binding; the actor must hold what it grants."""
    require(actor, Permission.ROLE_MANAGE)
    for grant in binding.grants.select_related("role"):
        missing = missing_for_grant(actor, grant.role.permissions, team_id=grant.team_id)
        if missing:
            raise PolicyDenied(Permission.TENANT_ASSIGN_ROLE, f"would revoke {missing}")
    before = role_binding_snapshot(binding)
    audit_record(actor=actor, action="role_binding.deleted", target=binding, before=before)
    binding.delete()


# --- personal access tokens --------------------------------------------------------------


def pat_snapshot(token: PersonalAccessToken) -> dict[str, Any]:
    """The audited fields of a PAT (never the token)."""
    return {
        "name": token.name,
        "prefix": token.prefix,
        "user": token.user.email,
        "expires_at": token.expires_at.isoformat() if token.expires_at else None,
        "revoked": token.revoked_at is not None,
    }


@transaction.atomic
def pat_create(
    *, actor: Principal, user: User, name: str, expires_at: datetime | None = None
) -> tuple[PersonalAccessToken, str]:
    """A new PAT for the actor themselves. Returns the raw token once."""
    if not (actor.kind == "user" and actor.id == user.pk):
        # Minting a token for someone else would let the actor act as them.
        raise PolicyDenied("pat:create", "tokens are created by their owner only")
    if not user.is_active:
        raise PolicyDenied("pat:create", "inactive user")
    clean = (name or "").strip()
    if not clean or len(clean) > 64:
        raise ValidationFailed.field("name", "1-64 characters required")
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationFailed.field("expires_at", "must be in the future")
    if PersonalAccessToken.objects.filter(user=user, name=clean, revoked_at__isnull=True).exists():
        raise Conflict(f"you already have an active token named '{clean}'")
    raw, prefix, digest = pat_generate()
    try:
        with transaction.atomic():
            token = PersonalAccessToken.objects.create(
                user=user, name=clean, prefix=prefix, digest=digest, expires_at=expires_at
            )
    except IntegrityError as exc:
        raise Conflict(f"you already have an active token named '{clean}'") from exc
    audit_record(actor=actor, action="pat.created", target=token, after=pat_snapshot(token))
    return token, raw


@transaction.atomic
def pat_revoke(*, actor: Principal, token: PersonalAccessToken) -> PersonalAccessToken:
    """Revoke a token: its owner, or anyone who manages users. Idempotent."""
    if not (actor.kind == "user" and actor.id == token.user_id):
        require(actor, Permission.USER_MANAGE)
    if token.revoked_at is not None:
        return token
    before = pat_snapshot(token)
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    audit_record(
        actor=actor, action="pat.revoked", target=token, before=before, after=pat_snapshot(token)
    )
    return token
