"""`type: virtual-account` manifests (also the body of `POST /api/v1/virtual-accounts`)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any, ClassVar, Literal

from pydantic import Field

from accounts import virtual_accounts as va
from accounts.models import VIRTUAL_ACCOUNT_NAME_PATTERN, VirtualAccount
from accounts.policy import Permission, Principal
from accounts.virtual_accounts import TARGET_SECRETS
from gateway_project import secret_refs
from gateway_project.manifests import Kind, ManifestModel, register


class PermissionItem(ManifestModel):
    role_id: Literal["provider-account-access", "provider-integration-access", "mcp-server-user"]
    resource_type: Literal["provider-account", "provider-integration", "mcp-server"]
    resource_fqn: str = Field(min_length=1)


class AutoRotate(ManifestModel):
    auto_rotate_interval: int = Field(default=360, ge=30)
    grace_period: int = Field(default=30, ge=1)


class SecretStoreConfig(ManifestModel):
    integration_fqn: str = Field(min_length=1)
    secret_path: str = Field(pattern=r"^/?[A-Za-z0-9/_-]*[A-Za-z0-9]$")


class OwnedBy(ManifestModel):
    team: str
    account: str = ""


class NotificationTargetModel(ManifestModel):
    """email | slack-webhook | webhook; checked in depth by accounts.notify once secret
    references are resolved (a `gw-secret://` webhook URL is not a URL yet)."""

    model_config = ManifestModel.model_config | {"extra": "allow"}
    type: Literal["email", "slack-webhook", "webhook"]


class VirtualAccountManifest(ManifestModel):
    type: Literal["virtual-account"] = "virtual-account"
    name: str = Field(pattern=VIRTUAL_ACCOUNT_NAME_PATTERN)
    ownedBy: OwnedBy
    permissions: list[PermissionItem] = Field(min_length=1)
    expiration_date: date | None = None
    auto_rotate: AutoRotate | None = None
    notification_target: NotificationTargetModel | None = None
    secret_store_config: SecretStoreConfig | None = None
    tags: dict[str, str] = Field(default_factory=dict)


def spec_from(manifest: VirtualAccountManifest) -> va.VirtualAccountSpec:
    """The service-level spec of a manifest."""
    store = manifest.secret_store_config
    return va.VirtualAccountSpec(
        name=manifest.name,
        owner_team=manifest.ownedBy.team,
        owned_by_account=manifest.ownedBy.account,
        permissions=[
            va.PermissionSpec(p.role_id, p.resource_type, p.resource_fqn)
            for p in manifest.permissions
        ],
        expiration_date=manifest.expiration_date,
        rotation=(
            va.RotationSpec(
                manifest.auto_rotate.auto_rotate_interval, manifest.auto_rotate.grace_period
            )
            if manifest.auto_rotate
            else None
        ),
        notification_target=(
            manifest.notification_target.model_dump(exclude_defaults=True, exclude_none=True)
            | {"type": manifest.notification_target.type}
            if manifest.notification_target
            else None
        ),
        secret_store=store.integration_fqn if store else "",
        secret_path=store.secret_path if store else "",
        tags=manifest.tags,
    )


def _target_path(name: str, key: str) -> str:
    return f"virtual-account/{name}/notification_target.{key}"


def _target_out(name: str, target: dict[str, Any]) -> dict[str, Any]:
    out = dict(target)
    for key in TARGET_SECRETS.get(str(target.get("type")), ()):
        if out.get(key):
            out[key] = secret_refs.secret_ref(_target_path(name, key), str(out[key]))
    return out


def _target_in(name: str, target: dict[str, Any] | None, stored: dict[str, Any] | None) -> Any:
    """Resolve secret references in a target against the stored one."""
    if not target:
        return target
    resolved = dict(target)
    for key in TARGET_SECRETS.get(str(target.get("type")), ()):
        if key in resolved:
            resolved[key] = secret_refs.resolve(
                resolved[key],
                path=_target_path(name, key),
                stored=stored or {},
                key=key,
                field=f"notification_target.{key}",
            )
    return resolved


def manifest_of(account: VirtualAccount) -> dict[str, Any]:
    """The account as its manifest (never its token)."""
    out: dict[str, Any] = {"type": "virtual-account", "name": account.name}
    owned: dict[str, str] = {"team": account.owner_team.name}
    if account.owned_by_account:
        owned["account"] = account.owned_by_account
    out["ownedBy"] = owned
    out["permissions"] = sorted(
        (
            {"role_id": p.role_id, "resource_type": p.resource_type, "resource_fqn": p.resource_fqn}
            for p in account.permissions.all()
        ),
        key=lambda d: (d["role_id"], d["resource_fqn"]),
    )
    if account.expiration_date:
        out["expiration_date"] = account.expiration_date.isoformat()
    if account.auto_rotate_interval_days:
        out["auto_rotate"] = {
            "auto_rotate_interval": account.auto_rotate_interval_days,
            "grace_period": account.grace_period_days,
        }
    if account.notification_target:
        out["notification_target"] = _target_out(account.name, account.notification_target)
    if account.secret_store is not None:
        out["secret_store_config"] = {
            "integration_fqn": account.secret_store.name,
            "secret_path": account.secret_path,
        }
    if account.tags:
        out["tags"] = account.tags
    return out


class VirtualAccountKind(Kind):
    """Virtual accounts; a created account's token waits for one 'Get token' or its store."""

    manifest_type: ClassVar[str] = "virtual-account"
    schema: ClassVar[type[ManifestModel]] = VirtualAccountManifest
    rank: ClassVar[int] = 50
    directory: ClassVar[str] = "virtual-accounts"
    read_permission: ClassVar[Permission] = Permission.VIRTUAL_ACCOUNT_READ

    def current(self, name: str) -> dict[str, Any] | None:
        account = (
            VirtualAccount.objects.select_related("owner_team", "secret_store")
            .filter(name=name)
            .first()
        )
        return manifest_of(account) if account is not None else None

    def apply(self, actor: Principal, manifest: Any) -> list[str]:
        existing = VirtualAccount.objects.filter(name=manifest.name).first()
        spec = spec_from(manifest)
        stored = existing.notification_target if existing is not None else None
        spec = replace(
            spec, notification_target=_target_in(manifest.name, spec.notification_target, stored)
        )
        if existing is None:
            va.va_create(actor=actor, spec=spec, created_via="apply")
            where = "its secret store" if spec.secret_store else "'Get token' (once)"
            return [f"token issued: fetch it from {where}"]
        va.va_update(actor=actor, account=va.va_get_for(actor, manifest.name), spec=spec)
        return []

    def delete(self, actor: Principal, name: str) -> None:
        va.va_delete(actor=actor, account=va.va_get_for(actor, name))

    def names(self, *, created_by_apply_only: bool) -> list[str]:
        qs = VirtualAccount.objects.all()
        if created_by_apply_only:
            qs = qs.filter(created_via="apply")
        return list(qs.values_list("name", flat=True))


register(VirtualAccountKind())
