"""`type: role` and `type: role-binding` manifests."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from accounts import selectors, services
from accounts.models import Role, RoleBinding
from accounts.policy import Permission, Principal
from gateway_project.errors import ValidationFailed
from gateway_project.manifests import Kind, ManifestModel, register


class RoleManifest(ManifestModel):
    type: Literal["role"]
    name: str = Field(pattern=services.ROLE_SLUG_PATTERN)
    displayName: str = ""
    description: str = ""
    resourceType: Literal["tenant", "team"] = "tenant"
    permissions: list[str]


class RoleKind(Kind):
    """Custom roles and the editable built-in Team Manager role."""

    manifest_type: ClassVar[str] = "role"
    schema: ClassVar[type[ManifestModel]] = RoleManifest
    rank: ClassVar[int] = 20
    directory: ClassVar[str] = "roles"
    read_permission: ClassVar[Permission] = Permission.ROLE_LIST

    def current(self, name: str) -> dict[str, Any] | None:
        role = Role.objects.filter(slug=name).first()
        if role is None:
            return None
        out: dict[str, Any] = {
            "type": self.manifest_type,
            "name": role.slug,
            "displayName": role.display_name,
        }
        if role.description:
            out["description"] = role.description
        out["resourceType"] = role.resource_type
        out["permissions"] = sorted(role.permissions)
        return out

    def apply(self, actor: Principal, manifest: Any) -> list[str]:
        m: RoleManifest = manifest
        role = Role.objects.filter(slug=m.name).first()
        if role is None:
            services.role_create(
                actor=actor,
                slug=m.name,
                display_name=m.displayName or m.name,
                description=m.description,
                resource_type=m.resourceType,
                permissions=m.permissions,
                created_via="apply",
            )
            return []
        if role.resource_type != m.resourceType:
            raise ValidationFailed.field("resourceType", "cannot change an existing role's")
        services.role_update(
            actor=actor,
            role=selectors.role_get_for(actor, m.name),
            display_name=m.displayName or m.name,
            description=m.description,
            permissions=m.permissions,
        )
        return []

    def delete(self, actor: Principal, name: str) -> None:
        services.role_delete(actor=actor, role=selectors.role_get_for(actor, name))

    def names(self, *, created_by_apply_only: bool) -> list[str]:
        qs = Role.objects.filter(editable=True)
        if created_by_apply_only:
            qs = qs.filter(created_via="apply")
        return list(qs.values_list("slug", flat=True))


class SubjectItem(ManifestModel):
    type: Literal["user", "team", "virtualaccount"]
    name: str


class GrantItem(ManifestModel):
    resourceType: Literal["tenant", "team"]
    resourceFqn: str
    role: str


class RoleBindingManifest(ManifestModel):
    type: Literal["role-binding"]
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}[a-z0-9]$")
    description: str = ""
    subjects: list[SubjectItem] = Field(min_length=1)
    permissions: list[GrantItem] = Field(min_length=1)


class RoleBindingKind(Kind):
    """Bindings of users and teams to roles on the tenant or a team."""

    manifest_type: ClassVar[str] = "role-binding"
    schema: ClassVar[type[ManifestModel]] = RoleBindingManifest
    rank: ClassVar[int] = 30
    directory: ClassVar[str] = "role-bindings"
    read_permission: ClassVar[Permission] = Permission.ROLE_LIST

    def current(self, name: str) -> dict[str, Any] | None:
        binding = (
            RoleBinding.objects.filter(name=name)
            .prefetch_related("subjects__user", "subjects__team", "grants__role")
            .first()
        )
        if binding is None:
            return None
        out: dict[str, Any] = {"type": self.manifest_type, "name": binding.name}
        if binding.description:
            out["description"] = binding.description
        subjects = [
            {"type": "user", "name": s.user.email}
            if s.user is not None
            else {"type": "team", "name": s.team.name if s.team is not None else ""}
            for s in binding.subjects.all()
        ]
        out["subjects"] = sorted(subjects, key=lambda d: (d["type"], d["name"]))
        out["permissions"] = sorted(
            (
                {
                    "resourceType": g.resource_type,
                    "resourceFqn": g.resource_fqn,
                    "role": g.role.slug,
                }
                for g in binding.grants.all()
            ),
            key=lambda d: (d["resourceType"], d["resourceFqn"], d["role"]),
        )
        return out

    def apply(self, actor: Principal, manifest: Any) -> list[str]:
        m: RoleBindingManifest = manifest
        services.role_binding_put(
            actor=actor,
            name=m.name,
            description=m.description,
            subjects=[services.SubjectRef(s.type, s.name) for s in m.subjects],
            grants=[
                services.GrantRef(g.resourceType, g.resourceFqn, g.role) for g in m.permissions
            ],
            created_via="apply",
        )
        return []

    def delete(self, actor: Principal, name: str) -> None:
        services.role_binding_delete(
            actor=actor, binding=selectors.role_binding_get_for(actor, name)
        )

    def names(self, *, created_by_apply_only: bool) -> list[str]:
        qs = RoleBinding.objects.all()
        if created_by_apply_only:
            qs = qs.filter(created_via="apply")
        return list(qs.values_list("name", flat=True))


register(RoleKind())
register(RoleBindingKind())
