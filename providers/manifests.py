"""`provider-account/<kind>` and `mcp-server/remote` manifests."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from accounts.policy import Permission, Principal
from gateway_project import secret_refs
from gateway_project.manifests import Kind, ManifestModel, register
from providers import selectors, services
from providers.kinds import (
    AWS_REGIONS,
    KINDS,
    SECRET_AUTH_FIELDS,
    AnthropicAuth,
    BedrockAuth,
    OpenAIAuth,
)
from providers.models import (
    MCP_SERVER_NAME_PATTERN,
    MODEL_NAME_PATTERN,
    PROVIDER_ACCOUNT_NAME_PATTERN,
    McpServer,
    ProviderAccount,
)

ModelType = Literal[
    "chat",
    "completion",
    "embedding",
    "realtime",
    "rerank",
    "audio_transcription",
    "audio_translation",
    "text_to_speech",
    "moderation",
    "image",
    "responses",
]


class PublicCost(ManifestModel):
    metric: Literal["public_cost"]


class PerThousandValue(ManifestModel):
    input: float = Field(ge=0)
    output: float = Field(ge=0)


class PerThousandCost(ManifestModel):
    metric: Literal["per_1000_tokens"]
    value: PerThousandValue


class PerThousandEmbeddingValue(ManifestModel):
    input: float = Field(ge=0)


class PerThousandEmbeddingCost(ManifestModel):
    metric: Literal["per_1000_embedding_tokens"]
    value: PerThousandEmbeddingValue


Cost = Annotated[
    PublicCost | PerThousandCost | PerThousandEmbeddingCost, Field(discriminator="metric")
]


class Collaborator(ManifestModel):
    subject: str
    role_id: Literal["provider-account-manager", "provider-account-access"]


class McpCollaborator(ManifestModel):
    subject: str
    role_id: Literal["mcp-server-manager", "mcp-server-user"]


def _chat_only() -> list[ModelType]:
    return ["chat"]


def _integration(type_: str) -> type[ManifestModel]:
    class Integration(ManifestModel):
        type: Literal[type_]  # type: ignore[valid-type]
        name: str = Field(pattern=MODEL_NAME_PATTERN)
        model_id: str = Field(min_length=1)
        model_types: list[ModelType] = Field(default_factory=_chat_only, min_length=1)
        cost: Cost | None = None
        authorized_subjects: list[str] | None = None
        region: Literal[AWS_REGIONS] | None = None  # type: ignore[valid-type]

    return Integration


OpenAIIntegration = _integration("integration/model/openai")
AnthropicIntegration = _integration("integration/model/anthropic")
BedrockIntegration = _integration("integration/model/bedrock")


class OpenAIAccount(ManifestModel):
    type: Literal["provider-account/openai"]
    name: str = Field(pattern=PROVIDER_ACCOUNT_NAME_PATTERN)
    auth_data: OpenAIAuth
    base_url: str = ""
    collaborators: list[Collaborator] = Field(default_factory=list)
    integrations: list[OpenAIIntegration] = Field(default_factory=list)  # type: ignore[valid-type]
    tags: dict[str, str] = Field(default_factory=dict)


class AnthropicAccount(ManifestModel):
    type: Literal["provider-account/anthropic"]
    name: str = Field(pattern=PROVIDER_ACCOUNT_NAME_PATTERN)
    auth_data: AnthropicAuth
    base_url: str = ""
    collaborators: list[Collaborator] = Field(default_factory=list)
    integrations: list[AnthropicIntegration] = Field(default_factory=list)  # type: ignore[valid-type]
    tags: dict[str, str] = Field(default_factory=dict)


class BedrockAccount(ManifestModel):
    type: Literal["provider-account/aws-bedrock"]
    name: str = Field(pattern=PROVIDER_ACCOUNT_NAME_PATTERN)
    region: Literal[AWS_REGIONS]  # type: ignore[valid-type]
    auth_data: BedrockAuth
    base_url: str = ""
    collaborators: list[Collaborator] = Field(default_factory=list)
    integrations: list[BedrockIntegration] = Field(default_factory=list)  # type: ignore[valid-type]
    tags: dict[str, str] = Field(default_factory=dict)


SCHEMAS: dict[str, type[ManifestModel]] = {
    "openai": OpenAIAccount,
    "anthropic": AnthropicAccount,
    "aws-bedrock": BedrockAccount,
}


def _secret_path(manifest_type: str, name: str, key: str) -> str:
    return f"{manifest_type}/{name}/{key}"


class ProviderAccountKind(Kind):
    """One registered kind per provider (`provider-account/openai`, ...)."""

    rank: ClassVar[int] = 40
    directory: ClassVar[str] = "provider-accounts"
    read_permission: ClassVar[Permission] = Permission.PROVIDER_ACCOUNT_READ

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.manifest_type = KINDS[kind].manifest_type  # type: ignore[misc]
        self.schema = SCHEMAS[kind]  # type: ignore[misc]

    def current(self, name: str) -> dict[str, Any] | None:
        account = ProviderAccount.objects.filter(name=name, kind=self.kind).first()
        if account is None:
            return None
        secrets = services.secret_values(account)
        auth = dict(account.auth_public)
        for key, value in sorted(secrets.items()):
            auth[key] = secret_refs.secret_ref(
                _secret_path(self.manifest_type, name, key), str(value)
            )
        out: dict[str, Any] = {"type": self.manifest_type, "name": account.name}
        if account.region:
            out["region"] = account.region
        out["auth_data"] = auth
        if account.base_url:
            out["base_url"] = account.base_url
        out["collaborators"] = sorted(
            (
                {"subject": c.subject, "role_id": c.role_id}
                for c in account.collaborators.select_related("user", "team")
            ),
            key=lambda d: (d["subject"], d["role_id"]),
        )
        out["integrations"] = [self._integration(m) for m in account.models.order_by("name")]
        if account.tags:
            out["tags"] = account.tags
        return out

    def _integration(self, model: Any) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": KINDS[self.kind].integration_type,
            "name": model.name,
            "model_id": model.model_id,
            "model_types": model.model_types,
        }
        if model.cost:
            out["cost"] = model.cost
        if model.authorized_subjects is not None:
            out["authorized_subjects"] = model.authorized_subjects
        if model.region:
            out["region"] = model.region
        return out

    def apply(self, actor: Principal, manifest: Any) -> list[str]:
        existing = ProviderAccount.objects.filter(name=manifest.name).first()
        auth = self._auth(manifest, existing)
        models = [
            services.ModelSpec(
                name=i.name,
                model_id=i.model_id,
                model_types=list(i.model_types),
                cost=i.cost.model_dump() if i.cost else {},
                authorized_subjects=i.authorized_subjects,
                region=i.region or "",
            )
            for i in manifest.integrations
        ]
        collaborators = [
            services.CollaboratorSpec(c.subject, c.role_id) for c in manifest.collaborators
        ]
        region = getattr(manifest, "region", "") or ""
        if existing is None:
            services.provider_account_create(
                actor=actor,
                name=manifest.name,
                kind=self.kind,
                auth=auth,
                base_url=manifest.base_url,
                region=region,
                models=models,
                collaborators=collaborators,
                tags=manifest.tags,
                created_via="apply",
            )
            return []
        if existing.kind != self.kind:
            from gateway_project.errors import Conflict

            raise Conflict(f"'{manifest.name}' is a provider-account/{existing.kind}")
        account = selectors.provider_account_get_for(actor, pk=existing.pk)
        services.provider_account_update(
            actor=actor,
            account=account,
            auth=auth,
            base_url=manifest.base_url,
            region=region,
            models=models,
            collaborators=collaborators,
            tags=manifest.tags,
        )
        return []

    def _auth(self, manifest: Any, existing: ProviderAccount | None) -> dict[str, Any]:
        auth: dict[str, Any] = manifest.auth_data.model_dump()
        stored = services.secret_values(existing) if existing is not None else {}
        for key in SECRET_AUTH_FIELDS & auth.keys():
            auth[key] = secret_refs.resolve(
                auth[key],
                path=_secret_path(self.manifest_type, manifest.name, key),
                stored=stored,
                key=key,
                field=f"auth_data.{key}",
            )
        return auth

    def delete(self, actor: Principal, name: str) -> None:
        services.provider_account_delete(
            actor=actor, account=selectors.provider_account_get_for(actor, name=name)
        )

    def names(self, *, created_by_apply_only: bool) -> list[str]:
        qs = ProviderAccount.objects.filter(kind=self.kind)
        if created_by_apply_only:
            qs = qs.filter(created_via="apply")
        return list(qs.values_list("name", flat=True))


class HeaderAuth(ManifestModel):
    type: Literal["header"]
    headers: dict[str, str]
    auth_level: Literal["global", "per_user"] = "global"


class PassthroughAuth(ManifestModel):
    type: Literal["passthrough"]


class OAuth2Auth(ManifestModel):
    type: Literal["oauth2"]
    grant_type: Literal["authorization_code"] = "authorization_code"
    authorization_url: str
    token_url: str
    client_id: str
    client_secret: str = ""
    registration_url: str = ""
    code_challenge_methods_supported: list[str] = Field(default_factory=lambda: ["S256"])
    jwt_source: Literal["access_token", "id_token"] = "access_token"
    scopes: list[str] = Field(default_factory=list)


McpAuth = Annotated[HeaderAuth | PassthroughAuth | OAuth2Auth, Field(discriminator="type")]


class ToolSetting(ManifestModel):
    name: str
    description: str | None = None
    disabled: bool = False
    rename: str | None = None


class TlsSettings(ManifestModel):
    reject_unauthorized: bool = True
    ca_cert: str | None = None


class McpServerManifest(ManifestModel):
    type: Literal["mcp-server/remote"]
    name: str = Field(pattern=MCP_SERVER_NAME_PATTERN)
    description: str = Field(min_length=1, max_length=1000)
    url: str
    auth_data: McpAuth | None = None
    tls_settings: TlsSettings | None = None
    tool_settings: list[ToolSetting] = Field(default_factory=list)
    collaborators: list[McpCollaborator]
    tags: dict[str, str] = Field(default_factory=dict)


class McpServerKind(Kind):
    """Remote MCP servers; header values and OAuth client secrets are secrets."""

    manifest_type: ClassVar[str] = "mcp-server/remote"
    schema: ClassVar[type[ManifestModel]] = McpServerManifest
    rank: ClassVar[int] = 45
    directory: ClassVar[str] = "mcp-servers"
    read_permission: ClassVar[Permission] = Permission.MCP_SERVER_READ

    def current(self, name: str) -> dict[str, Any] | None:
        server = McpServer.objects.filter(name=name).first()
        if server is None:
            return None
        out: dict[str, Any] = {
            "type": self.manifest_type,
            "name": server.name,
            "description": server.description,
            "url": server.url,
        }
        auth = self._auth_out(server)
        if auth is not None:
            out["auth_data"] = auth
        if server.tls_settings:
            out["tls_settings"] = server.tls_settings
        if server.tool_settings:
            out["tool_settings"] = server.tool_settings
        out["collaborators"] = sorted(
            (
                {"subject": c.subject, "role_id": c.role_id}
                for c in server.collaborators.select_related("user", "team")
            ),
            key=lambda d: (d["subject"], d["role_id"]),
        )
        if server.tags:
            out["tags"] = server.tags
        return out

    def _auth_out(self, server: McpServer) -> dict[str, Any] | None:
        if server.auth_type == McpServer.AuthType.NONE:
            return None
        secrets = services.secret_values(server)
        auth: dict[str, Any] = {"type": server.auth_type, **server.auth_public}
        path = f"{self.manifest_type}/{server.name}"
        if server.auth_type == McpServer.AuthType.HEADER:
            auth["headers"] = {
                k: secret_refs.secret_ref(f"{path}/headers.{k}", str(v))
                for k, v in sorted(secrets.get("headers", {}).items())
            }
        elif secrets.get("client_secret"):
            auth["client_secret"] = secret_refs.secret_ref(
                f"{path}/client_secret", str(secrets["client_secret"])
            )
        return auth

    def apply(self, actor: Principal, manifest: Any) -> list[str]:
        m: McpServerManifest = manifest
        existing = McpServer.objects.filter(name=m.name).first()
        stored = services.secret_values(existing) if existing is not None else {}
        path = f"{self.manifest_type}/{m.name}"
        auth_type, public, secret = "none", {}, {}
        if isinstance(m.auth_data, HeaderAuth):
            auth_type, public = "header", {"auth_level": m.auth_data.auth_level}
            headers = {
                k: secret_refs.resolve(
                    v,
                    path=f"{path}/headers.{k}",
                    stored=stored.get("headers", {}),
                    key=k,
                    field=f"auth_data.headers.{k}",
                )
                for k, v in m.auth_data.headers.items()
            }
            secret = {"headers": headers}
        elif isinstance(m.auth_data, PassthroughAuth):
            auth_type = "passthrough"
        elif isinstance(m.auth_data, OAuth2Auth):
            auth_type = "oauth2"
            public = m.auth_data.model_dump(exclude={"type", "client_secret"})
            if m.auth_data.client_secret:
                secret = {
                    "client_secret": secret_refs.resolve(
                        m.auth_data.client_secret,
                        path=f"{path}/client_secret",
                        stored=stored,
                        key="client_secret",
                        field="auth_data.client_secret",
                    )
                }
        if existing is not None:
            selectors.mcp_server_get_for(actor, pk=existing.pk)
        services.mcp_server_put(
            actor=actor,
            spec=services.McpServerSpec(
                name=m.name,
                description=m.description,
                url=m.url,
                auth_type=auth_type,
                auth_public=public,
                auth_secret=secret,
                tool_settings=[t.model_dump(exclude_none=True) for t in m.tool_settings],
                tls_settings=m.tls_settings.model_dump(exclude_none=True) if m.tls_settings else {},
                collaborators=[
                    services.CollaboratorSpec(c.subject, c.role_id) for c in m.collaborators
                ],
                tags=m.tags,
            ),
            created_via="apply",
        )
        return []

    def delete(self, actor: Principal, name: str) -> None:
        services.mcp_server_delete(
            actor=actor, server=selectors.mcp_server_get_for(actor, name=name)
        )

    def names(self, *, created_by_apply_only: bool) -> list[str]:
        qs = McpServer.objects.all()
        if created_by_apply_only:
            qs = qs.filter(created_via="apply")
        return list(qs.values_list("name", flat=True))


for _kind in KINDS:
    register(ProviderAccountKind(_kind))
register(McpServerKind())
