"""Users, roles, role bindings, personal access tokens, invitations and the audit log."""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

from gateway_project.fields import EncryptedJSONField, EncryptedTextField

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


VIRTUAL_ACCOUNT_NAME_PATTERN = r"^[a-z][a-z0-9-]{1,34}[a-z0-9]$"


class SecretStore(models.Model):
    """An external secret store that virtual account tokens are written to."""

    class Kind(models.TextChoices):
        AWS_SECRETS_MANAGER = "aws/secrets-manager", "AWS Secrets Manager"
        HASHICORP_VAULT = "hashicorp/vault", "HashiCorp Vault (KV v2)"
        GCP_GSM = "gcp/gsm", "Google Secret Manager"
        AZURE_VAULT = "azure/vault", "Azure Key Vault"

    name = models.CharField(max_length=64, unique=True)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    config = models.JSONField(default=dict, blank=True)  # region, url, mount, project...
    credentials = EncryptedTextField(blank=True, default="")  # JSON, write-only
    created_via = models.CharField(max_length=16, default="console")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering: ClassVar = ["name"]

    def __str__(self) -> str:
        return self.name


class VirtualAccount(models.Model):
    """A service identity for an application, owned by a team, with its own grants."""

    name = models.CharField(max_length=36, unique=True)
    owner_team = models.ForeignKey(
        "teams.Team", on_delete=models.PROTECT, related_name="virtual_accounts"
    )
    owned_by_account = models.CharField(max_length=200, blank=True)  # `ownedBy.account`
    expiration_date = models.DateField(null=True, blank=True)  # cannot change after creation
    auto_rotate_interval_days = models.PositiveIntegerField(null=True, blank=True)
    grace_period_days = models.PositiveIntegerField(default=30)
    rotation_due_at = models.DateTimeField(null=True, blank=True, db_index=True)
    notification_target = EncryptedJSONField(null=True, blank=True)  # webhook secrets inside
    secret_store = models.ForeignKey(
        SecretStore, null=True, blank=True, on_delete=models.PROTECT, related_name="accounts"
    )
    secret_path = models.CharField(max_length=500, blank=True)
    tags = models.JSONField(default=dict, blank=True)
    created_by = models.CharField(max_length=300)
    created_via = models.CharField(max_length=16, default="console")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    sync_error = models.CharField(max_length=500, blank=True)  # last secret-store failure
    synced_at = models.DateTimeField(null=True, blank=True)
    expiry_notified = models.JSONField(default=list, blank=True)  # days already warned about

    class Meta:
        ordering: ClassVar = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def subject(self) -> str:
        return f"virtualaccount:{self.name}"

    @property
    def is_expired(self) -> bool:
        return self.expiration_date is not None and self.expiration_date < timezone.now().date()


class VirtualAccountPermission(models.Model):
    """One `{role_id, resource_type, resource_fqn}` grant of a virtual account."""

    account = models.ForeignKey(
        VirtualAccount, on_delete=models.CASCADE, related_name="permissions"
    )
    role_id = models.CharField(max_length=64)
    resource_type = models.CharField(max_length=32)
    resource_fqn = models.CharField(max_length=300)
    provider_account = models.ForeignKey(
        "providers.ProviderAccount",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
    )
    provider_model = models.ForeignKey(
        "providers.ProviderModel",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
    )
    mcp_server = models.ForeignKey(
        "providers.McpServer", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )

    def __str__(self) -> str:
        return f"{self.role_id} on {self.resource_fqn}"


class VirtualAccountToken(models.Model):
    """The account's token: its id stays the same across rotations; secrets are its versions."""

    account = models.ForeignKey(VirtualAccount, on_delete=models.CASCADE, related_name="tokens")
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"token {self.pk} of {self.account_id}"


class TokenSecret(models.Model):
    """One version of a virtual account token. Only a keyed digest identifies it.

    States: `next` (issued, being written to the secret store; valid), `current`, `previous`
    (valid until `expires_at`, the end of the grace period), `retired`.
    """

    class State(models.TextChoices):
        NEXT = "next", "Next"
        CURRENT = "current", "Current"
        PREVIOUS = "previous", "Previous"
        RETIRED = "retired", "Retired"

    token = models.ForeignKey(VirtualAccountToken, on_delete=models.CASCADE, related_name="secrets")
    state = models.CharField(max_length=16, choices=State.choices)
    prefix = models.CharField(max_length=64)
    digest = models.CharField(max_length=64, unique=True)
    # The raw token, encrypted, while it may still have to be delivered: until "Get token"
    # fetches it once (accounts without a secret store), or, for accounts with a store, while
    # it is current, so "Sync now" can write it again. Emptied when it stops being current.
    undelivered = EncryptedTextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    notified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering: ClassVar = ["-created_at"]
        constraints: ClassVar = [
            # At most one current and one next version per token: rotation can never leave two.
            models.UniqueConstraint(
                fields=["token"], condition=Q(state="current"), name="accounts_secret_one_current"
            ),
            models.UniqueConstraint(
                fields=["token"], condition=Q(state="next"), name="accounts_secret_one_next"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.state})"


from accounts.sso_models import *  # noqa: E402,F403 - SSO models live in their own module
