"""Users, roles, role bindings, personal access tokens, invitations and the audit log."""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

CREATED_VIA_CHOICES = [
    ("console", "Console"),
    ("api", "API"),
    ("apply", "Apply"),
    ("scim", "SCIM"),
    ("system", "System"),
]

TENANT_ADMIN = "tenant-admin"
MEMBER = "member"
TEAM_MANAGER = "team-manager"


class Role(models.Model):
    """A named set of permission strings; tenant roles apply tenant-wide, team roles per team."""

    class ResourceType(models.TextChoices):
        TENANT = "tenant", "Tenant"
        TEAM = "team", "Team"

    slug = models.SlugField(max_length=64, unique=True)
    display_name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    resource_type = models.CharField(max_length=16, choices=ResourceType.choices)
    permissions = models.JSONField(default=list)
    builtin = models.BooleanField(default=False)
    # Built-in tenant-admin and member are fixed; the built-in team-manager role is editable.
    editable = models.BooleanField(default=True)
    created_via = models.CharField(max_length=16, choices=CREATED_VIA_CHOICES, default="console")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering: ClassVar = ["slug"]

    def __str__(self) -> str:
        return self.slug

    @property
    def subject(self) -> str:
        return f"role:{self.slug}"


class UserManager(BaseUserManager["User"]):
    """Email is the login; it is stored lower-cased and looked up case-insensitively."""

    def get_by_natural_key(self, username: str | None) -> User:
        return self.get(email__iexact=(username or "").strip())

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> User:
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save(using=self._db)
        return user


class User(AbstractBaseUser):
    """A person. Exactly one tenant role; deactivation ends sessions and tokens at once."""

    email = models.EmailField(max_length=254, unique=True)
    display_name = models.CharField(max_length=150, blank=True)
    is_active = models.BooleanField(default=True)
    tenant_role = models.ForeignKey(
        "accounts.Role",
        on_delete=models.PROTECT,
        related_name="users",
        to_field="slug",
        default=MEMBER,
    )
    date_joined = models.DateTimeField(default=timezone.now)
    deactivated_at = models.DateTimeField(null=True, blank=True)
    created_via = models.CharField(max_length=16, choices=CREATED_VIA_CHOICES, default="console")
    # Bumped on deactivation and password change so stale snapshots can be told apart.
    auth_epoch = models.PositiveIntegerField(default=0)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        ordering: ClassVar = ["email"]
        constraints: ClassVar = [
            models.UniqueConstraint(Lower("email"), name="accounts_user_email_ci_unique"),
        ]

    def __str__(self) -> str:
        return self.email

    @property
    def subject(self) -> str:
        return f"user:{self.email}"

    @property
    def label(self) -> str:
        return self.display_name or self.email

    @property
    def is_tenant_admin(self) -> bool:
        return self.tenant_role_id == TENANT_ADMIN


class RoleBinding(models.Model):
    """Binds subjects (users, teams) to roles on resources (the tenant, or one team)."""

    name = models.SlugField(max_length=64, unique=True)
    description = models.TextField(blank=True)
    created_via = models.CharField(max_length=16, choices=CREATED_VIA_CHOICES, default="console")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering: ClassVar = ["name"]

    def __str__(self) -> str:
        return self.name


class RoleBindingSubject(models.Model):
    """One subject of a binding: exactly one of user or team is set."""

    binding = models.ForeignKey(RoleBinding, on_delete=models.CASCADE, related_name="subjects")
    user = models.ForeignKey(
        "accounts.User", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    team = models.ForeignKey(
        "teams.Team", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )

    class Meta:
        constraints: ClassVar = [
            models.CheckConstraint(
                condition=Q(user__isnull=False, team__isnull=True)
                | Q(user__isnull=True, team__isnull=False),
                name="accounts_rbsubject_one_kind",
            ),
            models.UniqueConstraint(
                fields=["binding", "user"], name="accounts_rbsubject_user_unique"
            ),
            models.UniqueConstraint(
                fields=["binding", "team"], name="accounts_rbsubject_team_unique"
            ),
        ]

    def __str__(self) -> str:
        return self.subject

    @property
    def subject(self) -> str:
        if self.user is not None:
            return self.user.subject
        return self.team.subject if self.team is not None else ""


class RoleBindingGrant(models.Model):
    """One `{resourceType, resourceFqn, role}` of a binding. Team scope resolves to a team row."""

    binding = models.ForeignKey(RoleBinding, on_delete=models.CASCADE, related_name="grants")
    role = models.ForeignKey(Role, on_delete=models.PROTECT, related_name="grants")
    resource_type = models.CharField(max_length=32, choices=Role.ResourceType.choices)
    resource_fqn = models.CharField(max_length=255)
    team = models.ForeignKey(
        "teams.Team", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["binding", "role", "resource_type", "resource_fqn"],
                name="accounts_rbgrant_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.resource_type}:{self.resource_fqn}:{self.role.slug}"


class PersonalAccessToken(models.Model):
    """A user's API token: carries exactly the user's access. Only a keyed hash is stored."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="personal_tokens")
    name = models.CharField(max_length=64)
    prefix = models.CharField(max_length=24)  # shown in lists to tell tokens apart
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering: ClassVar = ["-created_at"]
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["user", "name"],
                condition=Q(revoked_at__isnull=True),
                name="accounts_pat_name_unique_active",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def status(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.is_expired else "active"


class Invitation(models.Model):
    """A one-time link that lets an invited user set a password."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="invitations")
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    created_by = models.CharField(max_length=300)  # actor subject

    def __str__(self) -> str:
        return f"invitation for user {self.user_id}"


class AuditEvent(models.Model):
    """One recorded change: who, what, to which object, before/after (secrets masked), via."""

    class Source(models.TextChoices):
        CONSOLE = "console", "Console"
        API = "api", "API"
        SCIM = "scim", "SCIM"
        APPLY = "apply", "Apply"
        SYSTEM = "system", "System"

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor_kind = models.CharField(max_length=32)
    actor_id = models.BigIntegerField(default=0)
    actor = models.CharField(max_length=300, db_index=True)  # subject string
    action = models.CharField(max_length=100, db_index=True)  # "team.member_added"
    target_type = models.CharField(max_length=64)
    target_id = models.CharField(max_length=64)
    target = models.CharField(max_length=300)  # human label at the time of the change
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    source = models.CharField(max_length=16, choices=Source.choices, db_index=True)

    class Meta:
        ordering: ClassVar = ["-created_at", "-id"]
        indexes: ClassVar = [
            models.Index(fields=["target_type", "target_id"], name="accounts_audit_target_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.actor} {self.action} {self.target}"


class ConfigVersion(models.Model):
    """One row whose counter moves on every governed change (bumped with each audit record).

    Gateway processes poll it and drop their cached authentication and access decisions when
    it moves, which bounds how long a revoked token or removed grant keeps working.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    version = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"config version {self.version}"
