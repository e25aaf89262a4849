"""Console forms for provider accounts and MCP servers: create, settings, collaborators."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from django import forms

from providers.kinds import AWS_REGIONS, KINDS
from providers.models import (
    MCP_SERVER_MANAGER,
    MCP_SERVER_USER,
    PROVIDER_ACCOUNT_ACCESS,
    PROVIDER_ACCOUNT_MANAGER,
    ProviderAccount,
)
from providers.services import ModelSpec

BEDROCK = ProviderAccount.Kind.AWS_BEDROCK.value
API_KEY_TYPES = ("api-key", "openai-api-key")
ACCESS_KEY = "access-key-based"
ACCESS_KEY_ID_LENGTH = (16, 128)  # as the Bedrock manifest schema requires
REGION_CHOICES = [("", "Choose a region"), *((r, r) for r in AWS_REGIONS)]

PROVIDER_ROLE_CHOICES = [
    (PROVIDER_ACCOUNT_ACCESS, "User: may call the models"),
    (PROVIDER_ACCOUNT_MANAGER, "Manager: may change the account"),
]
MCP_ROLE_CHOICES = [
    (MCP_SERVER_USER, "User: may call the tools"),
    (MCP_SERVER_MANAGER, "Manager: may change the server"),
]


def secret_field_of(auth_type: str) -> str:
    """The auth_data field that holds the key for an auth type ("" when it has none)."""
    if auth_type in API_KEY_TYPES:
        return "api_key"
    return "secret_access_key" if auth_type == ACCESS_KEY else ""


def _secret_input(placeholder: str) -> forms.PasswordInput:
    """A password box that never renders a submitted value back into the page."""
    return forms.PasswordInput(
        render_value=False, attrs={"autocomplete": "new-password", "placeholder": placeholder}
    )


class ProviderAccountCreateForm(forms.Form):
    """A new OpenAI, Anthropic or Bedrock account with an optional first model."""

    name = forms.CharField(
        max_length=32,
        help_text="3-32 lower-case letters, digits and '-'. Models are called as <name>/<model>.",
    )
    kind = forms.ChoiceField(
        label="Provider", choices=[(k, spec.label) for k, spec in KINDS.items()]
    )
    base_url = forms.CharField(
        label="Base URL",
        required=False,
        max_length=500,
        help_text="Leave empty for the provider's public endpoint.",
    )
    region = forms.ChoiceField(label="AWS region", choices=REGION_CHOICES, required=False)
    api_key = forms.CharField(
        label="API key", required=False, max_length=500, widget=_secret_input("sk-...")
    )
    access_key_id = forms.CharField(label="AWS access key ID", required=False, max_length=128)
    secret_access_key = forms.CharField(
        label="AWS secret access key", required=False, max_length=500, widget=_secret_input("")
    )
    model_name = forms.CharField(
        label="First model name",
        required=False,
        max_length=62,
        help_text="Optional, e.g. gpt-4o. Add more models later with YAML.",
    )
    model_id = forms.CharField(
        label="Provider model ID", required=False, max_length=255, help_text="e.g. gpt-4o"
    )

    def clean(self) -> dict[str, Any]:
        """Credentials that fit the provider, and a model name and ID given together."""
        data = super().clean() or {}
        kind = data.get("kind", "")
        if kind == BEDROCK:
            self._clean_bedrock(data)
        elif kind and not data.get("api_key"):
            self.add_error("api_key", "An API key is required.")
        if bool(data.get("model_name")) != bool(data.get("model_id")):
            missing = "model_id" if data.get("model_name") else "model_name"
            self.add_error(missing, "Give both a model name and its provider model ID.")
        return data

    def _clean_bedrock(self, data: Mapping[str, Any]) -> None:
        if not data.get("region"):
            self.add_error("region", "Bedrock needs a region.")
        key_id, secret = data.get("access_key_id", ""), data.get("secret_access_key", "")
        if data.get("api_key") and not (key_id or secret):
            return
        if not key_id:
            self.add_error("access_key_id", "Give an access key pair or an API key.")
        elif not ACCESS_KEY_ID_LENGTH[0] <= len(key_id) <= ACCESS_KEY_ID_LENGTH[1]:
            self.add_error("access_key_id", "An access key ID has 16-128 characters.")
        if not secret:
            self.add_error("secret_access_key", "Give the secret access key of the pair.")

    def auth(self) -> dict[str, str]:
        """The auth_data for the service (call after is_valid)."""
        data = self.cleaned_data
        if data["kind"] == BEDROCK and data.get("access_key_id"):
            return {
                "type": ACCESS_KEY,
                "access_key_id": data["access_key_id"],
                "secret_access_key": data["secret_access_key"],
            }
        return {"type": "api-key", "api_key": data["api_key"]}

    def models(self) -> list[ModelSpec]:
        """The first model, when one was given."""
        data = self.cleaned_data
        if not data.get("model_name"):
            return []
        return [ModelSpec(name=data["model_name"], model_id=data["model_id"])]


class ProviderAccountSettingsForm(forms.Form):
    """Base URL, region and credentials; an empty "Replace key" keeps the stored key."""

    base_url = forms.CharField(label="Base URL", required=False, max_length=500)
    region = forms.ChoiceField(label="AWS region", choices=REGION_CHOICES, required=False)
    access_key_id = forms.CharField(label="AWS access key ID", required=False, max_length=128)
    replace_key = forms.CharField(
        label="Replace key",
        required=False,
        max_length=500,
        widget=_secret_input("Leave empty to keep the stored key"),
    )

    def __init__(self, *args: Any, account: ProviderAccount, **kwargs: Any) -> None:
        kwargs.setdefault(
            "initial",
            {
                "base_url": account.base_url,
                "region": account.region,
                "access_key_id": account.auth_public.get("access_key_id", ""),
            },
        )
        super().__init__(*args, **kwargs)
        self.account = account
        default = KINDS[account.kind].default_base_url or "the region's endpoint"
        self.fields["base_url"].widget.attrs["placeholder"] = f"Default: {default}"
        if account.kind != BEDROCK:
            del self.fields["region"]
        if account.auth_type != ACCESS_KEY:
            del self.fields["access_key_id"]
        if not secret_field_of(account.auth_type):
            del self.fields["replace_key"]

    def clean_access_key_id(self) -> str:
        """As long as the manifest schema allows."""
        value: str = self.cleaned_data.get("access_key_id", "").strip()
        low, high = ACCESS_KEY_ID_LENGTH
        if not low <= len(value) <= high:
            raise forms.ValidationError("An access key ID has 16-128 characters.")
        return value

    def auth(self, stored: Mapping[str, Any]) -> dict[str, Any] | None:
        """The new auth_data, keeping every field not replaced; None when nothing changed.

        `stored` is the account's current secret part (the service needs the whole dict).
        """
        data = self.cleaned_data
        account = self.account
        changes: dict[str, Any] = {}
        new_key = data.get("replace_key", "")
        if new_key:
            changes[secret_field_of(account.auth_type)] = new_key
        key_id = data.get("access_key_id")
        if key_id is not None and key_id != account.auth_public.get("access_key_id", ""):
            changes["access_key_id"] = key_id
        if not changes:
            return None
        return {"type": account.auth_type, **account.auth_public, **stored, **changes}


class CollaboratorAddForm(forms.Form):
    """A subject string and the role to give it."""

    subject = forms.CharField(
        max_length=300,
        widget=forms.TextInput(attrs={"placeholder": "user:alice@example.com or team:ml"}),
    )
    role_id = forms.ChoiceField(label="Role")

    def __init__(self, *args: Any, roles: Sequence[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["role_id"]).choices = list(roles)
        self.initial.setdefault("role_id", roles[0][0])

    def clean_subject(self) -> str:
        """`user:` subjects compare case-insensitively, so store them lower-cased."""
        value: str = self.cleaned_data["subject"].strip()
        kind, sep, name = value.partition(":")
        return f"user:{name.lower()}" if sep and kind == "user" else value


class CollaboratorRemoveForm(forms.Form):
    """Which collaborator entry to remove."""

    subject = forms.CharField(max_length=300)
    role_id = forms.CharField(max_length=64)
