"""Provider accounts and their models, MCP servers, and who may use or manage them."""

from __future__ import annotations

from typing import ClassVar

from django.db import models
from django.db.models import Q
from django.utils import timezone

from gateway_project.fields import EncryptedTextField

PROVIDER_ACCOUNT_NAME_PATTERN = r"^[a-z][a-z0-9\-]{1,30}[a-z0-9]$"
MODEL_NAME_PATTERN = r"^[a-zA-Z](?:[a-zA-Z0-9\-._]{0,60}[a-zA-Z0-9])?$"
MCP_SERVER_NAME_PATTERN = r"^[a-z][a-z0-9\-]{1,71}[a-z0-9]$"

PROVIDER_ACCOUNT_MANAGER = "provider-account-manager"
PROVIDER_ACCOUNT_ACCESS = "provider-account-access"
MCP_SERVER_MANAGER = "mcp-server-manager"
MCP_SERVER_USER = "mcp-server-user"


class ProviderAccount(models.Model):
    """Credentials for one provider (an OpenAI key, an AWS identity...) and its models."""

    class Kind(models.TextChoices):
        OPENAI = "openai", "OpenAI"
        ANTHROPIC = "anthropic", "Anthropic"
        AWS_BEDROCK = "aws-bedrock", "AWS Bedrock"

    name = models.CharField(max_length=32, unique=True)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    base_url = models.URLField(max_length=500, blank=True)
    region = models.CharField(max_length=32, blank=True)
    auth_type = models.CharField(max_length=32)
    # Non-secret parts of auth_data (access_key_id, assumed_role_arn, external_id...).
    auth_public = models.JSONField(default=dict, blank=True)
    # Secret parts of auth_data as encrypted JSON: write-only, never rendered.
    auth_secret = EncryptedTextField(blank=True, default="")
    tags = models.JSONField(default=dict, blank=True)
    created_via = models.CharField(max_length=16, default="console")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering: ClassVar = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def manifest_type(self) -> str:
        return f"provider-account/{self.kind}"


class ProviderModel(models.Model):
    """A model (an `integration`) offered by an account, called as `<account>/<name>`."""

    account = models.ForeignKey(ProviderAccount, on_delete=models.CASCADE, related_name="models")
    name = models.CharField(max_length=62)
    model_id = models.CharField(max_length=255)
    model_types = models.JSONField(default=list)
    cost = models.JSONField(default=dict, blank=True)
    # None: everyone with access to the account; a list of subjects narrows it.
    authorized_subjects = models.JSONField(null=True, blank=True)
    region = models.CharField(max_length=32, blank=True)  # Bedrock per-model override
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering: ClassVar = ["account__name", "name"]
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["account", "name"], name="providers_model_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.account.name}/{self.name}"


class McpServer(models.Model):
    """A remote MCP server the gateway fronts at `/mcp/v1/<name>/mcp`."""

    class AuthType(models.TextChoices):
        NONE = "none", "None"
        HEADER = "header", "Headers"
        PASSTHROUGH = "passthrough", "Pass the caller's gateway token"
        OAUTH2 = "oauth2", "OAuth 2.0 (per user)"

    name = models.CharField(max_length=73, unique=True)
    kind = models.CharField(max_length=16, default="remote")
    description = models.TextField()
    url = models.URLField(max_length=500)
    auth_type = models.CharField(max_length=16, choices=AuthType.choices, default=AuthType.NONE)
    auth_public = models.JSONField(default=dict, blank=True)
    auth_secret = EncryptedTextField(blank=True, default="")
    tool_settings = models.JSONField(default=list, blank=True)
    tls_settings = models.JSONField(default=dict, blank=True)
    tags = models.JSONField(default=dict, blank=True)
    created_via = models.CharField(max_length=16, default="console")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering: ClassVar = ["name"]

    def __str__(self) -> str:
        return self.name


class Collaborator(models.Model):
    """`{subject, role_id}` on a provider account or an MCP server."""

    provider_account = models.ForeignKey(
        ProviderAccount,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="collaborators",
    )
    mcp_server = models.ForeignKey(
        McpServer, null=True, blank=True, on_delete=models.CASCADE, related_name="collaborators"
    )
    user = models.ForeignKey(
        "accounts.User", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    team = models.ForeignKey(
        "teams.Team", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    role_id = models.CharField(max_length=64)

    class Meta:
        constraints: ClassVar = [
            models.CheckConstraint(
                condition=Q(provider_account__isnull=False, mcp_server__isnull=True)
                | Q(provider_account__isnull=True, mcp_server__isnull=False),
                name="providers_collab_one_resource",
            ),
            models.CheckConstraint(
                condition=Q(user__isnull=False, team__isnull=True)
                | Q(user__isnull=True, team__isnull=False),
                name="providers_collab_one_subject",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.subject} {self.role_id}"

    @property
    def subject(self) -> str:
        if self.user is not None:
            return self.user.subject
        return self.team.subject if self.team is not None else ""


class McpUserToken(models.Model):
    """One user's OAuth tokens for one `oauth2` MCP server (authorization code with PKCE)."""

    server = models.ForeignKey(McpServer, on_delete=models.CASCADE, related_name="user_tokens")
    user = models.ForeignKey("accounts.User", on_delete=models.CASCADE, related_name="+")
    access_token = EncryptedTextField()
    refresh_token = EncryptedTextField(blank=True, default="")
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["server", "user"], name="providers_mcp_user_token_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"token of user {self.user_id} for server {self.server_id}"
