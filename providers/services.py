"""Every write to provider accounts, their models and collaborators, and MCP servers."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from accounts.audit import audit_record
from accounts.policy import (
    Permission,
    PolicyDenied,
    Principal,
    Resource,
    missing_for_resource_role,
    require,
)
from accounts.subjects import subject_parse, subject_resolve
from gateway_project.errors import Conflict, ValidationFailed
from providers.kinds import KINDS, SECRET_AUTH_FIELDS
from providers.models import (
    MCP_SERVER_MANAGER,
    MCP_SERVER_NAME_PATTERN,
    MCP_SERVER_USER,
    MODEL_NAME_PATTERN,
    PROVIDER_ACCOUNT_ACCESS,
    PROVIDER_ACCOUNT_MANAGER,
    PROVIDER_ACCOUNT_NAME_PATTERN,
    Collaborator,
    McpServer,
    ProviderAccount,
    ProviderModel,
)
from providers.upstream import base_url_validate

PROVIDER_ROLES = (PROVIDER_ACCOUNT_MANAGER, PROVIDER_ACCOUNT_ACCESS)
MCP_ROLES = (MCP_SERVER_MANAGER, MCP_SERVER_USER)
MODEL_TYPES = (
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
)


@dataclass(frozen=True)
class ModelSpec:
    """One `integrations[]` entry."""

    name: str
    model_id: str
    model_types: Sequence[str] = ("chat",)
    cost: Mapping[str, Any] = field(default_factory=dict)
    authorized_subjects: Sequence[str] | None = None
    region: str = ""


@dataclass(frozen=True)
class CollaboratorSpec:
    """One `collaborators[]` entry."""

    subject: str
    role_id: str


def split_auth(auth: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """auth_data as (public part, secret part)."""
    public = {k: v for k, v in auth.items() if k not in SECRET_AUTH_FIELDS}
    secret = {k: v for k, v in auth.items() if k in SECRET_AUTH_FIELDS}
    return public, secret


def account_snapshot(account: ProviderAccount) -> dict[str, Any]:
    """Audited fields of an account (secrets never included)."""
    return {
        "name": account.name,
        "kind": account.kind,
        "base_url": account.base_url,
        "region": account.region,
        "auth_data": {**account.auth_public, **dict.fromkeys(_secret_keys(account), "********")},
        "models": sorted(account.models.values_list("name", flat=True)),
        "collaborators": sorted(
            f"{c.subject}={c.role_id}" for c in account.collaborators.select_related("user", "team")
        ),
    }


def _secret_keys(obj: ProviderAccount | McpServer) -> list[str]:
    return sorted(json.loads(obj.auth_secret)) if obj.auth_secret else []


def secret_values(obj: ProviderAccount | McpServer) -> dict[str, Any]:
    """The decrypted secret part of auth data, for upstream calls only."""
    loaded: dict[str, Any] = json.loads(obj.auth_secret) if obj.auth_secret else {}
    return loaded


def _validate_models(account_kind: str, specs: Sequence[ModelSpec]) -> None:
    seen: set[str] = set()
    for index, spec in enumerate(specs):
        path = f"integrations[{index}]"
        if not re.fullmatch(MODEL_NAME_PATTERN, spec.name):
            raise ValidationFailed.field(f"{path}.name", "letters, digits, '-', '.', '_' (1-62)")
        if spec.name in seen:
            raise ValidationFailed.field(f"{path}.name", f"duplicate model '{spec.name}'")
        seen.add(spec.name)
        if not spec.model_id.strip():
            raise ValidationFailed.field(f"{path}.model_id", "required")
        bad = [t for t in spec.model_types if t not in MODEL_TYPES]
        if bad or not spec.model_types:
            raise ValidationFailed.field(f"{path}.model_types", f"unknown or empty: {bad}")
        for j, subject in enumerate(spec.authorized_subjects or []):
            subject_resolve(subject, field=f"{path}.authorized_subjects[{j}]")


def _collaborator_rows(
    specs: Sequence[CollaboratorSpec], roles: Sequence[str]
) -> list[Collaborator]:
    rows = []
    seen: set[tuple[str, str]] = set()
    for index, spec in enumerate(specs):
        path = f"collaborators[{index}]"
        if spec.role_id not in roles:
            raise ValidationFailed.field(f"{path}.role_id", f"must be one of {', '.join(roles)}")
        resolved = subject_resolve(spec.subject, field=f"{path}.subject")
        if (resolved.text, spec.role_id) in seen:
            continue
        seen.add((resolved.text, spec.role_id))
        rows.append(Collaborator(user=resolved.user, team=resolved.team, role_id=spec.role_id))
    return rows


def _require_may_grant(
    actor: Principal,
    resource: Resource,
    current: Sequence[Collaborator],
    rows: Sequence[Collaborator],
) -> None:
    """New collaborator roles give no more than the actor holds on the resource (issue #10).

    Managing an account (even tenant-wide) is not using it: a manager without Use cannot make
    anyone, themselves included, a collaborator who may call its models.
    """
    existing = {(c.user_id, c.team_id, c.role_id) for c in current}
    for row in rows:
        if (row.user_id, row.team_id, row.role_id) in existing:
            continue
        missing = missing_for_resource_role(actor, row.role_id, resource)
        if missing is not None:
            raise PolicyDenied(missing, f"cannot grant {row.role_id} on {resource}")


def _models_replace(account: ProviderAccount, specs: Sequence[ModelSpec]) -> None:
    current = {m.name: m for m in account.models.all()}
    for spec in specs:
        values = {
            "model_id": spec.model_id.strip(),
            "model_types": list(spec.model_types),
            "cost": dict(spec.cost),
            "authorized_subjects": (
                None if spec.authorized_subjects is None else list(spec.authorized_subjects)
            ),
            "region": spec.region,
        }
        model = current.pop(spec.name, None)
        if model is None:
            ProviderModel.objects.create(account=account, name=spec.name, **values)
        elif any(getattr(model, k) != v for k, v in values.items()):
            for key, value in values.items():
                setattr(model, key, value)
            model.save()
    ProviderModel.objects.filter(pk__in=[m.pk for m in current.values()]).delete()


def _validate_account_fields(kind: str, base_url: str, region: str) -> tuple[str, str]:
    spec = KINDS.get(kind)
    if spec is None:
        raise ValidationFailed.field("type", f"unknown provider kind '{kind}'")
    url = base_url_validate(base_url)
    if spec.needs_region and not region:
        raise ValidationFailed.field("region", "required for this provider")
    return url, region


@transaction.atomic
def provider_account_create(
    *,
    actor: Principal,
    name: str,
    kind: str,
    auth: Mapping[str, Any],
    base_url: str = "",
    region: str = "",
    models: Sequence[ModelSpec] = (),
    collaborators: Sequence[CollaboratorSpec] = (),
    tags: Mapping[str, str] | None = None,
    created_via: str = "console",
) -> ProviderAccount:
    """A new provider account with its models and collaborators."""
    require(actor, Permission.PROVIDER_ACCOUNT_CREATE)
    if not re.fullmatch(PROVIDER_ACCOUNT_NAME_PATTERN, name or ""):
        raise ValidationFailed.field("name", "3-32 lower-case letters, digits and '-'")
    url, region = _validate_account_fields(kind, base_url, region)
    _validate_models(kind, models)
    rows = _collaborator_rows(collaborators, PROVIDER_ROLES)
    if ProviderAccount.objects.filter(name=name).exists():
        raise Conflict(f"a provider account named '{name}' already exists")
    public, secret = split_auth(auth)
    account = ProviderAccount.objects.create(
        name=name,
        kind=kind,
        base_url=url,
        region=region,
        auth_type=str(auth.get("type", "")),
        auth_public=public,
        auth_secret=json.dumps(secret, sort_keys=True) if secret else "",
        tags=dict(tags or {}),
        created_via=created_via,
    )
    _models_replace(account, models)
    for row in rows:
        row.provider_account = account
    Collaborator.objects.bulk_create(rows)
    audit_record(
        actor=actor,
        action="provider_account.created",
        target=account,
        after=account_snapshot(account),
    )
    return account


@transaction.atomic
def provider_account_update(
    *,
    actor: Principal,
    account: ProviderAccount,
    auth: Mapping[str, Any] | None = None,
    base_url: str | None = None,
    region: str | None = None,
    models: Sequence[ModelSpec] | None = None,
    collaborators: Sequence[CollaboratorSpec] | None = None,
    tags: Mapping[str, str] | None = None,
) -> ProviderAccount:
    """Change settings, models and access. `auth=None` keeps the stored credentials.

    Managers of the account (or holders of the tenant permission) only.
    """
    resource = ("provider-account", account.pk)
    require(actor, Permission.PROVIDER_ACCOUNT_MANAGE, resource=resource)
    account = ProviderAccount.objects.select_for_update().get(pk=account.pk)
    before = account_snapshot(account)
    url, new_region = _validate_account_fields(
        account.kind,
        account.base_url if base_url is None else base_url,
        account.region if region is None else region,
    )
    changed = url != account.base_url or new_region != account.region
    account.base_url, account.region = url, new_region
    if auth is not None:
        public, secret = split_auth(auth)
        stored = json.dumps(secret, sort_keys=True) if secret else ""
        changed |= public != account.auth_public or stored != account.auth_secret
        account.auth_type = str(auth.get("type", account.auth_type))
        account.auth_public, account.auth_secret = public, stored
    if tags is not None and dict(tags) != account.tags:
        account.tags, changed = dict(tags), True
    if models is not None:
        _validate_models(account.kind, models)
        _models_replace(account, models)
    if collaborators is not None:
        rows = _collaborator_rows(collaborators, PROVIDER_ROLES)
        _require_may_grant(actor, resource, list(account.collaborators.all()), rows)
        account.collaborators.all().delete()
        for row in rows:
            row.provider_account = account
        Collaborator.objects.bulk_create(rows)
    if changed:
        account.save()
    after = account_snapshot(account)
    if changed or after != before:
        audit_record(
            actor=actor,
            action="provider_account.updated",
            target=account,
            before=before,
            after=after,
        )
    return account


@transaction.atomic
def provider_account_delete(*, actor: Principal, account: ProviderAccount) -> None:
    """Delete an account and its models."""
    require(actor, Permission.PROVIDER_ACCOUNT_DELETE)
    audit_record(
        actor=actor,
        action="provider_account.deleted",
        target=account,
        before=account_snapshot(account),
    )
    account.delete()


# --- MCP servers -----------------------------------------------------------------------------


def mcp_server_snapshot(server: McpServer) -> dict[str, Any]:
    """Audited fields of an MCP server (secrets never included)."""
    return {
        "name": server.name,
        "description": server.description,
        "url": server.url,
        "auth_type": server.auth_type,
        "auth_data": {**server.auth_public, **dict.fromkeys(_secret_keys(server), "********")},
        "tool_settings": server.tool_settings,
        "collaborators": sorted(
            f"{c.subject}={c.role_id}" for c in server.collaborators.select_related("user", "team")
        ),
    }


@dataclass(frozen=True)
class McpServerSpec:
    """The fields of an `mcp-server/remote` manifest."""

    name: str
    description: str
    url: str
    auth_type: str = McpServer.AuthType.NONE
    auth_public: Mapping[str, Any] = field(default_factory=dict)
    auth_secret: Mapping[str, Any] | None = None  # None keeps the stored secret on update
    tool_settings: Sequence[Mapping[str, Any]] = ()
    tls_settings: Mapping[str, Any] = field(default_factory=dict)
    collaborators: Sequence[CollaboratorSpec] = ()
    tags: Mapping[str, str] = field(default_factory=dict)


def _validate_mcp(spec: McpServerSpec) -> str:
    if not re.fullmatch(MCP_SERVER_NAME_PATTERN, spec.name or ""):
        raise ValidationFailed.field("name", "3-73 lower-case letters, digits and '-'")
    if not 1 <= len(spec.description.strip()) <= 1000:
        raise ValidationFailed.field("description", "1-1000 characters required")
    if spec.auth_type not in McpServer.AuthType.values:
        raise ValidationFailed.field("auth_data.type", "unknown auth type")
    url = base_url_validate(spec.url, field="url")
    if not url:
        raise ValidationFailed.field("url", "required")
    return url


@transaction.atomic
def mcp_server_put(
    *, actor: Principal, spec: McpServerSpec, created_via: str = "console"
) -> tuple[McpServer, bool]:
    """Create an MCP server, or update it (managers only). Returns (server, created)."""
    url = _validate_mcp(spec)
    rows = _collaborator_rows(spec.collaborators, MCP_ROLES)
    server = McpServer.objects.select_for_update().filter(name=spec.name).first()
    created = server is None
    if server is None:
        require(actor, Permission.MCP_SERVER_CREATE)
        server = McpServer(name=spec.name, created_via=created_via)
        before = None
    else:
        resource: Resource = ("mcp-server", server.pk)
        require(actor, Permission.MCP_SERVER_MANAGE, resource=resource)
        _require_may_grant(actor, resource, list(server.collaborators.all()), rows)
        before = mcp_server_snapshot(server)
    secret_changed = False
    server.description = spec.description.strip()
    server.url = url
    server.auth_type = spec.auth_type
    server.auth_public = dict(spec.auth_public)
    if spec.auth_secret is not None:
        stored = json.dumps(dict(spec.auth_secret), sort_keys=True) if spec.auth_secret else ""
        secret_changed = stored != server.auth_secret
        server.auth_secret = stored
    server.tool_settings = [dict(t) for t in spec.tool_settings]
    server.tls_settings = dict(spec.tls_settings)
    server.tags = dict(spec.tags)
    server.save()
    server.collaborators.all().delete()
    for row in rows:
        row.mcp_server = server
    Collaborator.objects.bulk_create(rows)
    after = mcp_server_snapshot(server)
    if after != before or secret_changed:  # masked snapshots hide a replaced secret
        action = "mcp_server.created" if created else "mcp_server.updated"
        audit_record(actor=actor, action=action, target=server, before=before, after=after)
    return server, created


@transaction.atomic
def mcp_server_delete(*, actor: Principal, server: McpServer) -> None:
    """Delete an MCP server."""
    require(actor, Permission.MCP_SERVER_DELETE)
    audit_record(
        actor=actor, action="mcp_server.deleted", target=server, before=mcp_server_snapshot(server)
    )
    server.delete()


def collaborator_subjects_check(subjects: Sequence[str], field: str) -> None:
    """Every string is a well-formed subject (used by manifests before resolution)."""
    for index, subject in enumerate(subjects):
        subject_parse(subject, field=f"{field}[{index}]")


def provider_account_test(*, actor: Principal, account: ProviderAccount) -> Any:
    """Check the stored credentials against the provider: the same rights as saving them."""
    require(actor, Permission.PROVIDER_ACCOUNT_MANAGE, resource=("provider-account", account.pk))
    from providers.connection import provider_connection_test

    return provider_connection_test(account)
