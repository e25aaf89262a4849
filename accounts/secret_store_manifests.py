"""`integration/secret-store/<kind>` manifests: the stores virtual-account tokens are synced to.

```yaml
type: integration/secret-store/hashicorp/vault
name: vault-prod
url: https://vault.example.com:8200
mount: secret            # KV v2 mount (default `secret`)
namespace: team-a        # optional
auth_data: {type: token, token: hvs.xxxx}
```

Config fields sit at the top level (those of `accounts.secret_stores.<Kind>Config`) and
credentials under `auth_data`. Export writes every secret credential field as a
`gw-secret://` reference (see gateway_project.secret_refs); applying the reference keeps the
stored value, as provider-account manifests do. Stores apply (rank 35) before the virtual
accounts that name them.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from accounts import secret_store_services as services
from accounts.models import SecretStore
from accounts.policy import Permission, Principal
from accounts.secret_stores import (
    CLIENTS,
    SECRET_CREDENTIAL_FIELDS,
    AwsAccessKeyAuth,
    AwsConfig,
    AzureAuth,
    AzureConfig,
    GcpAuth,
    GsmConfig,
    VaultConfig,
    VaultTokenAuth,
)
from gateway_project import secret_refs
from gateway_project.manifests import Kind, ManifestModel, register

TYPE_PREFIX = "integration/secret-store/"


class AwsSecretsManagerManifest(ManifestModel, AwsConfig):
    type: Literal["integration/secret-store/aws/secrets-manager"]
    name: str = Field(pattern=services.SECRET_STORE_NAME_PATTERN)
    auth_data: AwsAccessKeyAuth


class VaultManifest(ManifestModel, VaultConfig):
    type: Literal["integration/secret-store/hashicorp/vault"]
    name: str = Field(pattern=services.SECRET_STORE_NAME_PATTERN)
    auth_data: VaultTokenAuth


class GsmManifest(ManifestModel, GsmConfig):
    type: Literal["integration/secret-store/gcp/gsm"]
    name: str = Field(pattern=services.SECRET_STORE_NAME_PATTERN)
    auth_data: GcpAuth


class AzureVaultManifest(ManifestModel, AzureConfig):
    type: Literal["integration/secret-store/azure/vault"]
    name: str = Field(pattern=services.SECRET_STORE_NAME_PATTERN)
    auth_data: AzureAuth


SCHEMAS: dict[str, type[ManifestModel]] = {
    SecretStore.Kind.AWS_SECRETS_MANAGER: AwsSecretsManagerManifest,
    SecretStore.Kind.HASHICORP_VAULT: VaultManifest,
    SecretStore.Kind.GCP_GSM: GsmManifest,
    SecretStore.Kind.AZURE_VAULT: AzureVaultManifest,
}


class SecretStoreKind(Kind):
    """One registered kind per store (`integration/secret-store/hashicorp/vault`, ...)."""

    rank: ClassVar[int] = 35
    directory: ClassVar[str] = "secret-stores"
    read_permission: ClassVar[Permission] = Permission.SETTINGS_LIST

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.manifest_type = TYPE_PREFIX + kind  # type: ignore[misc]
        self.schema = SCHEMAS[kind]  # type: ignore[misc]
        self.config_fields = tuple(CLIENTS[kind].config_model.model_fields)

    def _ref_path(self, name: str, key: str) -> str:
        return f"{self.manifest_type}/{name}/{key}"

    def current(self, name: str) -> dict[str, Any] | None:
        store = SecretStore.objects.filter(name=name, kind=self.kind).first()
        if store is None:
            return None
        out: dict[str, Any] = {"type": self.manifest_type, "name": store.name}
        config = store.config or {}
        out.update({k: config[k] for k in self.config_fields if k in config})
        auth: dict[str, Any] = {}
        for key, value in sorted(services.credentials_values(store).items()):
            if key in SECRET_CREDENTIAL_FIELDS:
                if value:
                    auth[key] = secret_refs.secret_ref(self._ref_path(name, key), str(value))
            else:
                auth[key] = value
        out["auth_data"] = auth
        return out

    def apply(self, actor: Principal, manifest: Any) -> list[str]:
        existing = SecretStore.objects.filter(name=manifest.name).first()
        stored = (
            services.credentials_values(existing)
            if existing is not None and existing.kind == self.kind
            else {}
        )
        auth: dict[str, Any] = manifest.auth_data.model_dump()
        for key in SECRET_CREDENTIAL_FIELDS & auth.keys():
            if auth[key]:
                auth[key] = secret_refs.resolve(
                    auth[key],
                    path=self._ref_path(manifest.name, key),
                    stored=stored,
                    key=key,
                    field=f"auth_data.{key}",
                )
        config = manifest.model_dump(include=set(self.config_fields))
        services.secret_store_put_config(
            actor=actor,
            name=manifest.name,
            kind=self.kind,
            config=config,
            credentials=auth,
            created_via="apply",
        )
        return []

    def delete(self, actor: Principal, name: str) -> None:
        services.secret_store_delete(actor=actor, store=services.secret_store_get_for(actor, name))

    def names(self, *, created_by_apply_only: bool) -> list[str]:
        qs = SecretStore.objects.filter(kind=self.kind)
        if created_by_apply_only:
            qs = qs.filter(created_via="apply")
        return list(qs.values_list("name", flat=True))


for _kind in SCHEMAS:
    register(SecretStoreKind(_kind))
