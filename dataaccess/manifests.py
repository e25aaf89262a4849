"""`type: gateway-data-access-config` manifests (the S1 sample spells it `data-access-config`)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from accounts.policy import Permission, Principal
from dataaccess import services
from dataaccess.models import DataAccessConfig
from dataaccess.rules import Rule
from gateway_project.manifests import Kind, ManifestModel, register


class DataAccessManifest(ManifestModel):
    type: Literal["gateway-data-access-config"]
    name: str = Field(min_length=1, max_length=64)
    rules: list[Rule]


class DataAccessKind(Kind):
    """The tenant-wide Data Access rules."""

    manifest_type: ClassVar[str] = "gateway-data-access-config"
    schema: ClassVar[type[ManifestModel]] = DataAccessManifest
    rank: ClassVar[int] = 60
    directory: ClassVar[str] = "controls"
    read_permission: ClassVar[Permission] = Permission.GATEWAY_CONTROLS_LIST

    def current(self, name: str) -> dict[str, Any] | None:
        config = DataAccessConfig.objects.filter(name=name).first()
        if config is None:
            return None
        rules = [
            Rule.model_validate(r).model_dump(exclude_defaults=True, exclude={"filters"})
            | ({"filters": r["filters"]} if r.get("filters") else {})
            for r in config.rules
        ]
        return {"type": self.manifest_type, "name": config.name, "rules": rules}

    def apply(self, actor: Principal, manifest: Any) -> list[str]:
        m: DataAccessManifest = manifest
        services.data_access_config_put(
            actor=actor, name=m.name, rules=[r.model_dump() for r in m.rules], created_via="apply"
        )
        return []

    def delete(self, actor: Principal, name: str) -> None:
        # The rules are a singleton: "deleting" them restores the shipped defaults.
        services.data_access_config_put(actor=actor, name=name, rules=services.default_rules())

    def names(self, *, created_by_apply_only: bool) -> list[str]:
        qs = DataAccessConfig.objects.all()
        if created_by_apply_only:
            qs = qs.filter(created_via="apply")
        return list(qs.values_list("name", flat=True))


register(DataAccessKind())
