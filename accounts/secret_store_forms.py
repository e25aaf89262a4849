"""Console form for secret stores: one form, with a section of fields per store kind.

Credentials are write-only: secret fields are password boxes that never render a value, and
an edit that leaves one blank keeps the stored value. Validation of the values themselves is
the service's (accounts.secret_store_services, on the models of accounts.secret_stores).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django import forms

from accounts.models import SecretStore

AWS = SecretStore.Kind.AWS_SECRETS_MANAGER.value
VAULT = SecretStore.Kind.HASHICORP_VAULT.value
GSM = SecretStore.Kind.GCP_GSM.value
AZURE = SecretStore.Kind.AZURE_VAULT.value

# The form-field prefix of each kind's section.
PREFIX = {AWS: "aws", VAULT: "vault", GSM: "gsm", AZURE: "azure"}
# Kinds whose credentials come in more than one shape: (auth type, label), default first.
AUTH_TYPES: Mapping[str, list[tuple[str, str]]] = {
    AWS: [("access-key-based", "Access key")],
    VAULT: [("token", "Token")],
    GSM: [("key-file", "Service-account key file"), ("access-token", "Access token")],
    AZURE: [("client-secret", "Client secret (service principal)"), ("access-token", "Token")],
}


@dataclass(frozen=True)
class StoreField:
    """One config or credential field of a kind."""

    key: str
    label: str
    part: str  # "config" | "auth"
    secret: bool = False
    required: bool = True
    help: str = ""
    textarea: bool = False
    boolean: bool = False
    auth_types: tuple[str, ...] = ()  # the credential shapes it belongs to (empty: every one)


FIELDS: Mapping[str, list[StoreField]] = {
    AWS: [
        StoreField("region", "Region", "config", help="e.g. eu-west-1"),
        StoreField(
            "endpoint_url",
            "Endpoint URL",
            "config",
            required=False,
            help="Only for private endpoints; empty means AWS's own.",
        ),
        StoreField("access_key_id", "Access key ID", "auth"),
        StoreField("secret_access_key", "Secret access key", "auth", secret=True),
        StoreField("session_token", "Session token", "auth", secret=True, required=False),
    ],
    VAULT: [
        StoreField("url", "Vault URL", "config", help="e.g. https://vault.example.com:8200"),
        StoreField("mount", "KV v2 mount", "config", required=False, help="Empty means `secret`."),
        StoreField("namespace", "Namespace", "config", required=False),
        StoreField("token", "Token", "auth", secret=True),
    ],
    GSM: [
        StoreField("project", "Project ID", "config"),
        StoreField(
            "api_endpoint",
            "API endpoint",
            "config",
            required=False,
            help="Only for private endpoints; empty means Google's.",
        ),
        StoreField(
            "key_file_content",
            "Service-account key (JSON)",
            "auth",
            secret=True,
            textarea=True,
            auth_types=("key-file",),
        ),
        StoreField(
            "access_token", "Access token", "auth", secret=True, auth_types=("access-token",)
        ),
    ],
    AZURE: [
        StoreField("vault_url", "Vault URL", "config", help="https://<name>.vault.azure.net"),
        StoreField(
            "verify_challenge_resource",
            "Verify that the vault is under vault.azure.net",
            "config",
            boolean=True,
            required=False,
        ),
        StoreField("tenant_id", "Tenant ID", "auth", auth_types=("client-secret",)),
        StoreField("client_id", "Client ID", "auth", auth_types=("client-secret",)),
        StoreField(
            "client_secret", "Client secret", "auth", secret=True, auth_types=("client-secret",)
        ),
        StoreField(
            "access_token", "Access token", "auth", secret=True, auth_types=("access-token",)
        ),
    ],
}


def field_name(kind: str, key: str) -> str:
    """The form field of `key` in `kind`'s section, e.g. `aws_region`."""
    return f"{PREFIX[kind]}_{key}"


def auth_type_field(kind: str) -> str:
    return f"{PREFIX[kind]}_auth_type"


@dataclass(frozen=True)
class SectionField:
    """A bound field with what the template needs to place it."""

    bound: forms.BoundField
    show_when: str  # data-show-when for credential shapes ("" for always)
    secret_set: bool
    boolean: bool = False


@dataclass(frozen=True)
class Section:
    """One kind's fields."""

    kind: str
    label: str
    auth_type: forms.BoundField | None
    config: list[SectionField]
    auth: list[SectionField]


class SecretStoreForm(forms.Form):
    """Create (`store=None`) or edit a store: name and kind, then the chosen kind's fields."""

    name = forms.CharField(
        max_length=64,
        help_text="3-64 lower-case letters, digits and '-'. Virtual accounts name it.",
        widget=forms.TextInput(attrs={"placeholder": "vault-prod"}),
    )
    kind = forms.ChoiceField(choices=SecretStore.Kind.choices)

    def __init__(
        self,
        *args: Any,
        store: SecretStore | None = None,
        public: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """`public` is the store's masked credentials (identifiers readable, secrets masked)."""
        self.store = store
        self.public = dict(public or {})
        initial = dict(kwargs.pop("initial", None) or {})
        if store is not None:
            initial |= self._initial_of(store)
        kwargs["initial"] = initial
        super().__init__(*args, **kwargs)
        if store is not None:
            for name in ("name", "kind"):
                self.fields[name].disabled = True
        for kind, fields in FIELDS.items():
            types = AUTH_TYPES[kind]
            if len(types) > 1:
                self.fields[auth_type_field(kind)] = forms.ChoiceField(
                    label="Authentication", choices=types, required=False
                )
            for spec in fields:
                self.fields[field_name(kind, spec.key)] = self._field(spec)

    def _initial_of(self, store: SecretStore) -> dict[str, Any]:
        initial: dict[str, Any] = {"name": store.name, "kind": store.kind}
        config = store.config or {}
        for spec in FIELDS.get(store.kind, []):
            name = field_name(store.kind, spec.key)
            if spec.part == "config":
                default = True if spec.boolean else ""
                initial[name] = config.get(spec.key, default)
            elif not spec.secret:
                initial[name] = self.public.get(spec.key, "")
        if len(AUTH_TYPES.get(store.kind, [])) > 1 and self.public.get("type"):
            initial[auth_type_field(store.kind)] = self.public["type"]
        return initial

    def _field(self, spec: StoreField) -> forms.Field:
        if spec.boolean:
            return forms.BooleanField(label=spec.label, required=False, initial=True)
        widget: forms.Widget
        if spec.secret:
            widget = (
                forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "autocomplete": "off"})
                if spec.textarea
                else forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"})
            )
        else:
            widget = forms.TextInput(attrs={"spellcheck": "false"})
        help_text = spec.help
        if spec.secret and self.store is not None:
            help_text = "Leave empty to keep the stored value; type a new one to replace it."
        # Requiredness depends on the kind chosen: checked in clean(), not by the field.
        return forms.CharField(
            label=spec.label,
            required=False,
            max_length=20_000,
            strip=not spec.secret,
            widget=widget,
            help_text=help_text,
        )

    @property
    def chosen_kind(self) -> str:
        if self.store is not None:
            return self.store.kind
        value = self.data.get("kind") if self.is_bound else self.initial.get("kind")
        return str(value or AWS)

    def auth_type(self) -> str:
        kind = self.chosen_kind
        types = AUTH_TYPES[kind]
        if len(types) == 1:
            return types[0][0]
        chosen = self.cleaned_data.get(auth_type_field(kind)) or ""
        return chosen if chosen in dict(types) else types[0][0]

    def _applies(self, spec: StoreField) -> bool:
        return not spec.auth_types or self.auth_type() in spec.auth_types

    def clean(self) -> dict[str, Any] | None:
        """Fields the chosen kind requires; a kept secret needs the same credential shape."""
        data = super().clean()
        if data is None or self.errors.get("kind"):
            return data
        kind = self.chosen_kind
        keeping = self.store is not None and self.public.get("type", "") == self.auth_type()
        for spec in FIELDS[kind]:
            if not spec.required or spec.boolean or not self._applies(spec):
                continue
            name = field_name(kind, spec.key)
            if data.get(name):
                continue
            if spec.secret and keeping and self.public.get(spec.key):
                continue  # blank means keep
            self.add_error(name, "This field is required.")
        return data

    def config(self) -> dict[str, Any]:
        """The chosen kind's config (blank optional fields left out: defaults apply)."""
        kind = self.chosen_kind
        out: dict[str, Any] = {}
        for spec in FIELDS[kind]:
            if spec.part != "config":
                continue
            value = self.cleaned_data.get(field_name(kind, spec.key))
            if spec.boolean:
                out[spec.key] = bool(value)
            elif value:
                out[spec.key] = value
        return out

    def credentials(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        """The credentials to save: typed values, and stored secrets for blank secret boxes.

        `stored` is the store's current credentials ({} when creating); they are kept only
        when the credential shape did not change.
        """
        kind = self.chosen_kind
        shape = self.auth_type()
        keep = stored if stored.get("type", shape) == shape else {}
        out: dict[str, Any] = {"type": shape}
        for spec in FIELDS[kind]:
            if spec.part != "auth" or not self._applies(spec):
                continue
            value = self.cleaned_data.get(field_name(kind, spec.key)) or ""
            if not value and spec.secret and keep.get(spec.key):
                value = keep[spec.key]
            if value:
                out[spec.key] = value
        return out

    def sections(self) -> list[Section]:
        """Every kind's fields for the template (only the chosen kind's are shown)."""
        labels = dict(SecretStore.Kind.choices)
        out = []
        for kind, fields in FIELDS.items():
            auth_name = auth_type_field(kind)
            auth_bound = self[auth_name] if auth_name in self.fields else None

            def placed(spec: StoreField, kind: str = kind, auth_bound: Any = auth_bound) -> Any:
                show = ""
                if spec.auth_types and auth_bound is not None:
                    show = f"{auth_bound.id_for_label}:{','.join(spec.auth_types)}"
                secret_set = (
                    spec.secret
                    and self.store is not None
                    and self.store.kind == kind
                    and bool(self.public.get(spec.key))
                )
                bound = self[field_name(kind, spec.key)]
                return SectionField(bound, show, secret_set, boolean=spec.boolean)

            out.append(
                Section(
                    kind=kind,
                    label=labels.get(kind, kind),
                    auth_type=auth_bound,
                    config=[placed(s) for s in fields if s.part == "config"],
                    auth=[placed(s) for s in fields if s.part == "auth"],
                )
            )
        if self.store is not None:
            out = [s for s in out if s.kind == self.store.kind]
        return out


# Service field paths ("config.region", "auth_data.token") -> form fields, per kind.
def error_aliases(kind: str) -> dict[str, str]:
    aliases = {"name": "name", "kind": "kind"}
    for spec in FIELDS.get(kind, []):
        prefix = "config" if spec.part == "config" else "auth_data"
        aliases[f"{prefix}.{spec.key}"] = field_name(kind, spec.key)
    return aliases
