"""`type: settings/sso` and `type: external-identity-provider` manifests.

The OIDC client secret is exported as a `gw-secret://settings/sso/<name>/client_secret`
reference, which apply resolves back to the stored secret (gateway_project.secret_refs).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from accounts import sso
from accounts.models import ExternalIdentityProvider, SsoConfig
from accounts.policy import Permission, Principal
from accounts.sso_models import SSO_NAME_PATTERN
from gateway_project import secret_refs
from gateway_project.errors import ObjectNotFound
from gateway_project.manifests import Kind, ManifestModel, register

SSO_TYPE = "settings/sso"
EXTERNAL_IDP_TYPE = "external-identity-provider"


class OidcAuth(ManifestModel):
    type: Literal["oidc"]
    enable_login: bool = True
    client_id: str = ""
    client_secret: str | None = None  # omitted: keep the stored one
    discover_endpoints: bool = True
    issuer: str = ""
    audience: str = ""  # accepted for compatibility; ID tokens must name the client id
    jwks_uri: str = ""
    authorization_endpoint: str = ""
    token_endpoint: str = ""
    userinfo_endpoint: str = ""
    scopes: str = "openid email profile"


class SamlAuth(ManifestModel):
    type: Literal["saml"]
    idp_metadata_url: str = ""
    idp_metadata_xml: str = ""
    idp_entity_id: str = ""
    idp_endpoint: str = ""  # the IdP's SAML v2 sign-in (SSO) URL
    certificate: str = ""  # PEM
    sp_entity_id: str = ""
    enable_scim: bool = False


class RoleMapping(ManifestModel):
    tenant_admin: list[str] = Field(default_factory=list)


class SsoManifest(ManifestModel):
    type: Literal["settings/sso"]
    name: str = Field(pattern=SSO_NAME_PATTERN)
    enabled: bool = False
    provider: Literal["okta", "google", "azure-ad", "custom"] = "custom"
    auth_data: Annotated[OidcAuth | SamlAuth, Field(discriminator="type")]
    button_text: str = ""
    button_image_url: str = ""
    email_claim: str = "email"
    unique_id_claim: str = "sub"
    groups_claim: str = ""
    role_mapping: RoleMapping = Field(default_factory=RoleMapping)
    provisioning: Literal["jit", "invite_only", "scim_only"] = "jit"
    local_login: Literal["everyone", "break_glass_admins"] = "everyone"


def _secret_path(name: str) -> str:
    return f"{SSO_TYPE}/{name}/client_secret"


class SsoSettingsKind(Kind):
    """SSO configurations; applying one that is enabled checks its IdP first."""

    manifest_type: ClassVar[str] = SSO_TYPE
    schema: ClassVar[type[ManifestModel]] = SsoManifest
    rank: ClassVar[int] = 5
    directory: ClassVar[str] = "settings"
    read_permission: ClassVar[Permission] = Permission.SETTINGS_LIST

    def current(self, name: str) -> dict[str, Any] | None:
        config = SsoConfig.objects.filter(name=name).first()
        if config is None:
            return None
        out: dict[str, Any] = {
            "type": self.manifest_type,
            "name": config.name,
            "enabled": config.enabled,
            "provider": config.provider,
        }
        if config.protocol == SsoConfig.Protocol.OIDC:
            auth: dict[str, Any] = {"type": "oidc", "client_id": config.client_id}
            if config.client_secret:
                auth["client_secret"] = secret_refs.secret_ref(
                    _secret_path(config.name), config.client_secret
                )
            auth["discover_endpoints"] = config.discover_endpoints
            auth["issuer"] = config.issuer
            for key in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint"):
                if getattr(config, key):
                    auth[key] = getattr(config, key)
            if config.jwks_uri:
                auth["jwks_uri"] = config.jwks_uri
            auth["scopes"] = config.scopes
        else:
            auth = {"type": "saml"}
            pairs = (
                ("idp_metadata_url", config.idp_metadata_url),
                ("idp_metadata_xml", config.idp_metadata_xml),
                ("idp_entity_id", config.idp_entity_id),
                ("idp_endpoint", config.idp_sso_url),
                ("certificate", config.idp_certificate),
                ("sp_entity_id", config.sp_entity_id),
            )
            auth.update({key: value for key, value in pairs if value})
            auth["enable_scim"] = config.enable_scim
        out["auth_data"] = auth
        for key in ("button_text", "button_image_url"):
            if getattr(config, key):
                out[key] = getattr(config, key)
        out["email_claim"] = config.email_claim
        out["unique_id_claim"] = config.unique_id_claim
        if config.groups_claim:
            out["groups_claim"] = config.groups_claim
        if config.role_mapping:
            out["role_mapping"] = config.role_mapping
        out["provisioning"] = config.provisioning
        out["local_login"] = config.local_login
        return out

    def apply(self, actor: Principal, manifest: Any) -> list[str]:
        m: SsoManifest = manifest
        spec = sso.SsoConfigSpec(
            name=m.name,
            enabled=m.enabled,
            provider=m.provider,
            button_text=m.button_text,
            button_image_url=m.button_image_url,
            email_claim=m.email_claim,
            unique_id_claim=m.unique_id_claim,
            groups_claim=m.groups_claim,
            role_mapping=m.role_mapping.model_dump(exclude_defaults=True),
            provisioning=m.provisioning,
            local_login=m.local_login,
        )
        auth = m.auth_data
        if isinstance(auth, OidcAuth):
            existing = SsoConfig.objects.filter(name=m.name).first()
            stored = {"client_secret": existing.client_secret} if existing else {}
            secret = secret_refs.resolve(
                auth.client_secret,
                path=_secret_path(m.name),
                stored={k: v for k, v in stored.items() if v},
                key="client_secret",
                field="auth_data.client_secret",
            )
            spec.protocol = SsoConfig.Protocol.OIDC
            spec.enabled = m.enabled and auth.enable_login
            spec.client_id = auth.client_id
            spec.client_secret = secret
            spec.discover_endpoints = auth.discover_endpoints
            spec.issuer = auth.issuer
            spec.jwks_uri = auth.jwks_uri
            spec.authorization_endpoint = auth.authorization_endpoint
            spec.token_endpoint = auth.token_endpoint
            spec.userinfo_endpoint = auth.userinfo_endpoint
            spec.scopes = auth.scopes
        else:
            spec.protocol = SsoConfig.Protocol.SAML
            spec.idp_metadata_url = auth.idp_metadata_url
            spec.idp_metadata_xml = auth.idp_metadata_xml
            spec.idp_entity_id = auth.idp_entity_id
            spec.idp_sso_url = auth.idp_endpoint
            spec.idp_certificate = auth.certificate
            spec.sp_entity_id = auth.sp_entity_id
            spec.enable_scim = auth.enable_scim
        sso.sso_config_put(actor=actor, spec=spec, created_via="apply")
        return []

    def delete(self, actor: Principal, name: str) -> None:
        sso.sso_config_delete(actor=actor, config=sso.sso_config_get_for(actor, name))

    def names(self, *, created_by_apply_only: bool) -> list[str]:
        qs = SsoConfig.objects.all()
        if created_by_apply_only:
            qs = qs.filter(created_via="apply")
        return list(qs.values_list("name", flat=True))


class JwtConfig(ManifestModel):
    type: Literal["jwt"] = "jwt"
    issuer: str = Field(min_length=1)
    audience: str = Field(min_length=1)
    jwks_uri: str = Field(min_length=1)


class IdentityMapping(ManifestModel):
    key: str = Field(min_length=1)
    values: list[str] = Field(min_length=1)
    user: str = ""
    virtual_account: str = ""


class ExternalIdpManifest(ManifestModel):
    type: Literal["external-identity-provider"]
    name: str = Field(pattern=SSO_NAME_PATTERN)
    enabled: bool = True
    config: JwtConfig
    email_claim: str = "email"
    unique_id_claim: str = "sub"
    mappings: list[IdentityMapping] = Field(default_factory=list)


class ExternalIdpKind(Kind):
    """IdPs whose JWTs act as users or virtual accounts at the API and the proxy."""

    manifest_type: ClassVar[str] = EXTERNAL_IDP_TYPE
    schema: ClassVar[type[ManifestModel]] = ExternalIdpManifest
    rank: ClassVar[int] = 55  # after the users and virtual accounts it maps to
    directory: ClassVar[str] = "external-identity-providers"
    read_permission: ClassVar[Permission] = Permission.EXTERNAL_IDENTITY_LIST

    def current(self, name: str) -> dict[str, Any] | None:
        provider = ExternalIdentityProvider.objects.filter(name=name).first()
        if provider is None:
            return None
        snap = sso.external_idp_snapshot(provider)
        out: dict[str, Any] = {
            "type": self.manifest_type,
            "name": provider.name,
            "enabled": provider.enabled,
            "config": {
                "type": "jwt",
                "issuer": provider.issuer,
                "audience": provider.audience,
                "jwks_uri": provider.jwks_uri,
            },
            "email_claim": provider.email_claim,
            "unique_id_claim": provider.unique_id_claim,
        }
        if snap["mappings"]:
            out["mappings"] = snap["mappings"]
        return out

    def apply(self, actor: Principal, manifest: Any) -> list[str]:
        m: ExternalIdpManifest = manifest
        sso.external_idp_put(
            actor=actor,
            spec=sso.ExternalIdpSpec(
                name=m.name,
                enabled=m.enabled,
                issuer=m.config.issuer,
                audience=m.config.audience,
                jwks_uri=m.config.jwks_uri,
                email_claim=m.email_claim,
                unique_id_claim=m.unique_id_claim,
                mappings=[
                    sso.MappingSpec(x.key, list(x.values), x.user, x.virtual_account)
                    for x in m.mappings
                ],
            ),
            created_via="apply",
        )
        return []

    def delete(self, actor: Principal, name: str) -> None:
        provider = sso.external_idp_list(actor).filter(name=name).first()
        if provider is None:
            raise ObjectNotFound("external identity provider not found")
        sso.external_idp_delete(actor=actor, provider=provider)

    def names(self, *, created_by_apply_only: bool) -> list[str]:
        qs = ExternalIdentityProvider.objects.all()
        if created_by_apply_only:
            qs = qs.filter(created_via="apply")
        return list(qs.values_list("name", flat=True))


register(SsoSettingsKind())
register(ExternalIdpKind())
