"""Single sign-on: IdP configurations, the identities they assert, and IdP-issued JWTs.

`SsoConfig` drives console sign-in through django-allauth (see accounts.sso_adapters);
`ExternalIdentity` ties a user to an IdP's (issuer, subject), which is how SSO users are
recognised (never by email alone). `ExternalIdentityProvider` and `ExternalIdentityMapping`
let callers present an IdP-issued JWT at the API and the proxy (accounts.sso).
"""

from __future__ import annotations

from typing import ClassVar

from django.db import models
from django.db.models import Q
from django.utils import timezone

from gateway_project.fields import EncryptedTextField

__all__ = [
    "SSO_NAME_PATTERN",
    "ExternalIdentity",
    "ExternalIdentityMapping",
    "ExternalIdentityProvider",
    "SamlAssertionSeen",
    "SsoConfig",
]

SSO_NAME_PATTERN = r"^[a-z][a-z0-9-]{1,62}[a-z0-9]$"


class SsoConfig(models.Model):
    """One configured identity provider for console sign-in (OpenID Connect or SAML 2.0)."""

    class Provider(models.TextChoices):
        OKTA = "okta", "Okta"
        GOOGLE = "google", "Google"
        AZURE_AD = "azure-ad", "Azure AD (Entra ID)"
        CUSTOM = "custom", "Custom (Keycloak, Auth0, any standards-compliant IdP)"

    class Protocol(models.TextChoices):
        OIDC = "oidc", "OpenID Connect"
        SAML = "saml", "SAML 2.0"

    class Provisioning(models.TextChoices):
        JIT = "jit", "Just-in-time: the first sign-in creates the user"
        INVITE_ONLY = "invite_only", "Invite-only: only existing users may sign in"
        SCIM_ONLY = "scim_only", "SCIM-only: users come from SCIM provisioning"

    class LocalLogin(models.TextChoices):
        EVERYONE = "everyone", "Everyone with a password"
        BREAK_GLASS = "break_glass_admins", "Tenant admins only (break-glass)"

    name = models.CharField(max_length=64, unique=True)
    enabled = models.BooleanField(default=False)
    provider = models.CharField(max_length=16, choices=Provider.choices, default=Provider.CUSTOM)
    protocol = models.CharField(max_length=8, choices=Protocol.choices, default=Protocol.OIDC)
    # OpenID Connect
    client_id = models.CharField(max_length=255, blank=True)
    client_secret = EncryptedTextField(blank=True, default="")  # write-only
    issuer = models.URLField(max_length=500, blank=True)
    discover_endpoints = models.BooleanField(default=True)
    authorization_endpoint = models.URLField(max_length=500, blank=True)
    token_endpoint = models.URLField(max_length=500, blank=True)
    userinfo_endpoint = models.URLField(max_length=500, blank=True)
    jwks_uri = models.URLField(max_length=500, blank=True)
    scopes = models.CharField(max_length=500, default="openid email profile")
    # SAML 2.0
    idp_metadata_url = models.URLField(max_length=500, blank=True)
    idp_metadata_xml = models.TextField(blank=True)
    idp_entity_id = models.CharField(max_length=500, blank=True)
    idp_sso_url = models.URLField(max_length=500, blank=True)
    idp_certificate = models.TextField(blank=True)  # PEM
    sp_entity_id = models.CharField(max_length=500, blank=True)  # default: the SP metadata URL
    enable_scim = models.BooleanField(default=False)
    # Both
    button_text = models.CharField(max_length=100, blank=True)
    button_image_url = models.URLField(max_length=500, blank=True)
    email_claim = models.CharField(max_length=200, default="email")
    unique_id_claim = models.CharField(max_length=200, default="sub")
    groups_claim = models.CharField(max_length=200, blank=True)
    role_mapping = models.JSONField(default=dict, blank=True)  # {"tenant_admin": [group, ...]}
    provisioning = models.CharField(
        max_length=16, choices=Provisioning.choices, default=Provisioning.JIT
    )
    local_login = models.CharField(
        max_length=24, choices=LocalLogin.choices, default=LocalLogin.EVERYONE
    )
    last_test_ok = models.BooleanField(null=True, blank=True)
    last_test_message = models.TextField(blank=True)
    last_tested_at = models.DateTimeField(null=True, blank=True)
    created_via = models.CharField(max_length=16, default="console")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering: ClassVar = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def label(self) -> str:
        """The sign-in button's text."""
        return self.button_text or "Login with SSO"


class ExternalIdentity(models.Model):
    """A user as an IdP knows them: (issuer, subject) is unique and is how SSO finds users."""

    user = models.ForeignKey(
        "accounts.User", on_delete=models.CASCADE, related_name="external_identities"
    )
    config = models.ForeignKey(
        SsoConfig, null=True, blank=True, on_delete=models.SET_NULL, related_name="identities"
    )
    issuer = models.CharField(max_length=500)
    subject = models.CharField(max_length=255)
    email = models.CharField(max_length=254, blank=True)  # as asserted at the last sign-in
    created_at = models.DateTimeField(default=timezone.now)
    last_login_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering: ClassVar = ["issuer", "subject"]
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["issuer", "subject"], name="accounts_extidentity_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer}"


class SamlAssertionSeen(models.Model):
    """A consumed SAML assertion ID, kept until it expires so a replay is refused."""

    issuer = models.CharField(max_length=500)
    assertion_id = models.CharField(max_length=255)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["issuer", "assertion_id"], name="accounts_saml_assertion_once"
            ),
        ]

    def __str__(self) -> str:
        return self.assertion_id


class ExternalIdentityProvider(models.Model):
    """An IdP whose signed JWTs the API and the proxy accept as credentials."""

    name = models.CharField(max_length=64, unique=True)
    enabled = models.BooleanField(default=True)
    issuer = models.CharField(max_length=500)
    audience = models.CharField(max_length=500)
    jwks_uri = models.URLField(max_length=500)
    email_claim = models.CharField(max_length=200, default="email")
    unique_id_claim = models.CharField(max_length=200, default="sub")
    created_via = models.CharField(max_length=16, default="console")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering: ClassVar = ["name"]

    def __str__(self) -> str:
        return self.name


class ExternalIdentityMapping(models.Model):
    """Tokens whose claim `claim_key` holds one of `values` act as this user or account."""

    provider = models.ForeignKey(
        ExternalIdentityProvider, on_delete=models.CASCADE, related_name="mappings"
    )
    claim_key = models.CharField(max_length=200)
    values = models.JSONField(default=list)
    user = models.ForeignKey(
        "accounts.User", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    virtual_account = models.ForeignKey(
        "accounts.VirtualAccount",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
    )

    class Meta:
        ordering: ClassVar = ["provider", "id"]
        constraints: ClassVar = [
            models.CheckConstraint(
                condition=Q(user__isnull=False, virtual_account__isnull=True)
                | Q(user__isnull=True, virtual_account__isnull=False),
                name="accounts_extmapping_one_target",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.claim_key} in {self.values}"
