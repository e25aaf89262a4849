"""Virtual accounts: every write (services) and the reads other apps use (selectors).

Who may act: the `virtual-account:*` permissions, tenant-wide or in the owning team (the Team
Manager role carries them by default, so managers act on their teams' accounts only). A virtual
account can never be granted access its creator could not use.

Rotation is a sequence of idempotent steps so a worker killed anywhere resumes safely:
1. issue a `next` secret (valid at once; its raw value kept encrypted until delivered),
2. write it to the secret store and read it back,
3. promote: `current` -> `previous` (valid for the grace period), `next` -> `current`,
4. notify; `previous` secrets stop working when their grace period ends.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.audit import audit_record
from accounts.models import (
    VIRTUAL_ACCOUNT_NAME_PATTERN,
    SecretStore,
    TokenSecret,
    VirtualAccount,
    VirtualAccountPermission,
    VirtualAccountToken,
)
from accounts.policy import (
    Permission,
    PolicyDenied,
    Principal,
    decide,
    missing_for_resource_role,
    require,
)
from accounts.tokens import va_token_generate
from gateway_project.crypto import keyed_digest
from gateway_project.errors import Conflict, ObjectNotFound, ValidationFailed
from providers.models import McpServer, ProviderAccount, ProviderModel
from teams.models import Team

ROLE_RESOURCE = {
    "provider-account-access": "provider-account",
    "provider-integration-access": "provider-integration",
    "mcp-server-user": "mcp-server",
}
MIN_ROTATE_DAYS = 30


@dataclass(frozen=True)
class PermissionSpec:
    role_id: str
    resource_type: str
    resource_fqn: str


@dataclass(frozen=True)
class RotationSpec:
    interval_days: int
    grace_days: int = 30


# --- permissions -----------------------------------------------------------------------------


def _fqn_name(fqn: str) -> str:
    """`openai-main` or the mirrored product's `truefoundry:openai:openai-main`."""
    return fqn.rsplit(":", 1)[-1] if ":" in fqn else fqn


def _model_ref(fqn: str) -> tuple[str, str]:
    """`account/model` or `tenant:kind:account:model:model`."""
    if ":model:" in fqn:
        head, model = fqn.split(":model:", 1)
        return _fqn_name(head), model
    account, _, model = fqn.partition("/")
    return account, model


def _resolve_permission(
    actor: Principal, spec: PermissionSpec, path: str
) -> VirtualAccountPermission:
    expected = ROLE_RESOURCE.get(spec.role_id)
    if expected is None:
        raise ValidationFailed.field(
            f"{path}.role_id", f"must be one of {', '.join(ROLE_RESOURCE)}"
        )
    if spec.resource_type != expected:
        raise ValidationFailed.field(f"{path}.resource_type", f"must be '{expected}' for this role")
    row = VirtualAccountPermission(
        role_id=spec.role_id, resource_type=spec.resource_type, resource_fqn=spec.resource_fqn
    )
    if expected == "provider-account":
        account = ProviderAccount.objects.filter(name=_fqn_name(spec.resource_fqn)).first()
        allowed = (
            account is not None
            and missing_for_resource_role(actor, spec.role_id, ("provider-account", account.pk))
            is None
        )
        row.provider_account = account
    elif expected == "provider-integration":
        account_name, model_name = _model_ref(spec.resource_fqn)
        model = ProviderModel.objects.filter(account__name=account_name, name=model_name).first()
        allowed = (
            model is not None
            and decide(
                actor, Permission.PROVIDER_ACCOUNT_USE, target=(model.account_id, model.name)
            ).allowed
        )
        row.provider_model = model
    else:
        server = McpServer.objects.filter(name=_fqn_name(spec.resource_fqn)).first()
        allowed = (
            server is not None
            and missing_for_resource_role(actor, spec.role_id, ("mcp-server", server.pk)) is None
        )
        row.mcp_server = server
    if not allowed:
        # One message whether the resource is missing or not grantable by this actor.
        raise ValidationFailed.field(
            f"{path}.resource_fqn", f"'{spec.resource_fqn}' does not exist or you cannot grant it"
        )
    return row


def _resolve_permissions(
    actor: Principal, specs: Sequence[PermissionSpec]
) -> list[VirtualAccountPermission]:
    if not specs:
        raise ValidationFailed.field("permissions", "a virtual account needs at least one")
    return [_resolve_permission(actor, s, f"permissions[{i}]") for i, s in enumerate(specs)]


def _require_holds_grants(actor: Principal, account: VirtualAccount) -> None:
    """Only one who could grant all of the account's access may obtain its token.

    A token carries the account's access: handing it to a team manager who lacks some of it
    would be an escalation (issue #10), whoever created the account.
    """
    for index, perm in enumerate(account.permissions.all()):
        spec = PermissionSpec(perm.role_id, perm.resource_type, perm.resource_fqn)
        try:
            _resolve_permission(actor, spec, f"permissions[{index}]")
        except ValidationFailed as exc:
            raise PolicyDenied(
                Permission.VIRTUAL_ACCOUNT_MANAGE, f"does not hold {perm.resource_fqn}"
            ) from exc


# --- snapshot and validation -----------------------------------------------------------------


def va_snapshot(account: VirtualAccount) -> dict[str, Any]:
    """Audited fields (never a token)."""
    return {
        "name": account.name,
        "owner_team": account.owner_team.name,
        "permissions": sorted(f"{p.role_id}:{p.resource_fqn}" for p in account.permissions.all()),
        "expiration_date": account.expiration_date.isoformat() if account.expiration_date else None,
        "auto_rotate_interval_days": account.auto_rotate_interval_days,
        "grace_period_days": account.grace_period_days,
        "notification_target": _target_masked(account.notification_target),
        "secret_store": account.secret_store.name if account.secret_store else None,
        "secret_path": account.secret_path,
        "tags": account.tags,
    }


# Notification target fields that are secrets (masked in audit, references in manifests).
TARGET_SECRETS = {"slack-webhook": ("webhook_url",), "webhook": ("secret",)}


def _target_masked(target: dict[str, Any] | None) -> dict[str, Any] | None:
    if not target:
        return target
    secret_keys = TARGET_SECRETS.get(str(target.get("type")), ())
    return {k: ("********" if k in secret_keys and v else v) for k, v in target.items()}


def _validate_rotation(rotation: RotationSpec | None) -> None:
    if rotation is None:
        return
    if rotation.interval_days < MIN_ROTATE_DAYS:
        raise ValidationFailed.field(
            "auto_rotate.auto_rotate_interval", f"must be at least {MIN_ROTATE_DAYS} days"
        )
    if rotation.grace_days < 1:
        raise ValidationFailed.field("auto_rotate.grace_period", "must be at least 1 day")


def _validate_store(store_name: str, secret_path: str) -> SecretStore | None:
    if not store_name:
        return None
    store = SecretStore.objects.filter(name=store_name).first()
    if store is None:
        raise ValidationFailed.field(
            "secret_store_config.integration_fqn", f"no secret store '{store_name}'"
        )
    if not re.fullmatch(r"^/?[A-Za-z0-9/_-]*[A-Za-z0-9]$", secret_path or ""):
        raise ValidationFailed.field("secret_store_config.secret_path", "letters, digits, '/', '-'")
    return store


def _validate_target(target: dict[str, Any] | None) -> dict[str, Any] | None:
    """A notification target accounts.notify can deliver to, as stored (or None)."""
    if not target:
        return None
    from pydantic import ValidationError

    from accounts.notify import notification_target_parse

    try:
        parsed = notification_target_parse(target)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = ".".join(str(p) for p in error["loc"][1:])
        path = "notification_target" + (f".{loc}" if loc else "")
        raise ValidationFailed.field(path, error["msg"].removeprefix("Value error, ")) from exc
    return parsed.model_dump(exclude_defaults=True) | {"type": parsed.type}


def _owner(team_name: str) -> Team:
    team = Team.objects.filter(name=team_name).first()
    if team is None or team.is_everyone:
        raise ValidationFailed.field("ownedBy.team", f"no team '{team_name}'")
    return team


# --- create, update, delete ------------------------------------------------------------------


@dataclass(frozen=True)
class VirtualAccountSpec:
    """The fields of a `virtual-account` manifest."""

    name: str
    owner_team: str
    permissions: Sequence[PermissionSpec]
    expiration_date: date | None = None
    rotation: RotationSpec | None = None
    notification_target: dict[str, Any] | None = None
    secret_store: str = ""
    secret_path: str = ""
    tags: dict[str, str] | None = None
    owned_by_account: str = ""


def _issue_secret(
    token: VirtualAccountToken, account: VirtualAccount, state: str, *, keep_undelivered: bool
) -> tuple[TokenSecret, str]:
    raw, prefix, digest = va_token_generate(account.name)
    secret = TokenSecret.objects.create(
        token=token,
        state=state,
        prefix=prefix,
        digest=digest,
        undelivered=raw if keep_undelivered else "",
        expires_at=_account_expiry(account),
    )
    return secret, raw


def _account_expiry(account: VirtualAccount) -> datetime | None:
    """Tokens stop at the end of the expiration date (UTC)."""
    if account.expiration_date is None:
        return None
    return datetime.combine(account.expiration_date + timedelta(days=1), time.min, tzinfo=UTC)


@transaction.atomic
def va_create(
    *, actor: Principal, spec: VirtualAccountSpec, created_via: str = "console"
) -> tuple[VirtualAccount, str]:
    """Create an account and its token. Returns the raw token once.

    When nobody will see the answer (apply) or a secret store must receive it, an encrypted
    copy is kept until delivered ("Get token" once, or the store write).
    """
    if not re.fullmatch(VIRTUAL_ACCOUNT_NAME_PATTERN, spec.name or ""):
        raise ValidationFailed.field("name", "3-36 lower-case letters, digits and '-'")
    team = _owner(spec.owner_team)
    require(actor, Permission.VIRTUAL_ACCOUNT_CREATE, team_id=team.pk)
    rows = _resolve_permissions(actor, spec.permissions)
    _validate_rotation(spec.rotation)
    store = _validate_store(spec.secret_store, spec.secret_path)
    if spec.expiration_date is not None and spec.expiration_date <= timezone.now().date():
        raise ValidationFailed.field("expiration_date", "must be in the future")
    if VirtualAccount.objects.filter(name=spec.name).exists():
        raise Conflict(f"a virtual account named '{spec.name}' already exists")
    account = VirtualAccount.objects.create(
        name=spec.name,
        owner_team=team,
        owned_by_account=spec.owned_by_account,
        expiration_date=spec.expiration_date,
        auto_rotate_interval_days=spec.rotation.interval_days if spec.rotation else None,
        grace_period_days=spec.rotation.grace_days if spec.rotation else 30,
        rotation_due_at=(
            timezone.now() + timedelta(days=spec.rotation.interval_days) if spec.rotation else None
        ),
        notification_target=_validate_target(spec.notification_target),
        secret_store=store,
        secret_path=spec.secret_path if store else "",
        tags=dict(spec.tags or {}),
        created_by=actor.subject,
        created_via=created_via,
    )
    for row in rows:
        row.account = account
    VirtualAccountPermission.objects.bulk_create(rows)
    token = VirtualAccountToken.objects.create(account=account)
    keep = created_via == "apply" or store is not None
    _secret, raw = _issue_secret(token, account, TokenSecret.State.CURRENT, keep_undelivered=keep)
    audit_record(
        actor=actor, action="virtual_account.created", target=account, after=va_snapshot(account)
    )
    if store is not None:
        _after_commit_sync(account.pk)
    return account, raw


def _after_commit_sync(account_id: int) -> None:
    from accounts.tasks import secret_store_sync_task

    # robust: with the broker down the account shows sync "Pending" (Sync retries it).
    transaction.on_commit(lambda: secret_store_sync_task.delay(account_id), robust=True)


@transaction.atomic
def va_update(
    *, actor: Principal, account: VirtualAccount, spec: VirtualAccountSpec
) -> VirtualAccount:
    """Apply a changed manifest (the expiration date cannot change)."""
    account = VirtualAccount.objects.select_for_update().get(pk=account.pk)
    require(actor, Permission.VIRTUAL_ACCOUNT_MANAGE, team_id=account.owner_team_id)
    team = _owner(spec.owner_team)
    if team.pk != account.owner_team_id:
        require(actor, Permission.VIRTUAL_ACCOUNT_CREATE, team_id=team.pk)
    if spec.expiration_date != account.expiration_date:
        raise ValidationFailed.field("expiration_date", "cannot be changed after creation")
    rows = _resolve_permissions(actor, spec.permissions)
    _validate_rotation(spec.rotation)
    store = _validate_store(spec.secret_store, spec.secret_path)
    before = va_snapshot(account)
    interval = spec.rotation.interval_days if spec.rotation else None
    if interval != account.auto_rotate_interval_days:
        account.rotation_due_at = timezone.now() + timedelta(days=interval) if interval else None
    account.owner_team = team
    account.owned_by_account = spec.owned_by_account
    account.auto_rotate_interval_days = interval
    account.grace_period_days = spec.rotation.grace_days if spec.rotation else 30
    account.notification_target = _validate_target(spec.notification_target)
    store_changed = (store, spec.secret_path if store else "") != (
        account.secret_store,
        account.secret_path,
    )
    account.secret_store, account.secret_path = store, spec.secret_path if store else ""
    account.tags = dict(spec.tags or {})
    account.save()
    current = sorted((p.role_id, p.resource_fqn) for p in account.permissions.all())
    if current != sorted((r.role_id, r.resource_fqn) for r in rows):
        account.permissions.all().delete()
        for row in rows:
            row.account = account
        VirtualAccountPermission.objects.bulk_create(rows)
    after = va_snapshot(account)
    if after != before:
        audit_record(
            actor=actor,
            action="virtual_account.updated",
            target=account,
            before=before,
            after=after,
        )
    if store_changed and store is not None:
        _after_commit_sync(account.pk)
    return account


@transaction.atomic
def va_delete(*, actor: Principal, account: VirtualAccount) -> None:
    """Delete the account; its tokens stop working with the next config poll."""
    require(actor, Permission.VIRTUAL_ACCOUNT_DELETE, team_id=account.owner_team_id)
    audit_record(
        actor=actor, action="virtual_account.deleted", target=account, before=va_snapshot(account)
    )
    account.delete()


# --- tokens and rotation ---------------------------------------------------------------------


def _token_of(account: VirtualAccount) -> VirtualAccountToken:
    token = account.tokens.order_by("pk").first()
    return token or VirtualAccountToken.objects.create(account=account)


def rotation_issue_next(
    account: VirtualAccount, *, keep_undelivered: bool
) -> tuple[TokenSecret, str | None]:
    """Step 1: the `next` secret, created once (a re-run returns the existing one, raw None)."""
    token = _token_of(account)
    existing = token.secrets.filter(state=TokenSecret.State.NEXT).first()
    if existing is not None:
        return existing, None
    return _issue_secret(token, account, TokenSecret.State.NEXT, keep_undelivered=keep_undelivered)


def rotation_promote(account: VirtualAccount, *, grace: timedelta) -> TokenSecret | None:
    """Step 3, atomic: current -> previous (valid for `grace`), next -> current. Idempotent."""
    token = _token_of(account)
    nxt = token.secrets.select_for_update().filter(state=TokenSecret.State.NEXT).first()
    if nxt is None:
        return None
    cutoff = timezone.now() + grace
    expiry = _account_expiry(account)
    token.secrets.filter(state=TokenSecret.State.CURRENT).update(
        state=TokenSecret.State.PREVIOUS,
        undelivered="",
        expires_at=cutoff if expiry is None else min(cutoff, expiry),
    )
    nxt.state = TokenSecret.State.CURRENT
    nxt.save(update_fields=["state"])
    if account.auto_rotate_interval_days:
        account.rotation_due_at = timezone.now() + timedelta(days=account.auto_rotate_interval_days)
        account.save(update_fields=["rotation_due_at"])
    return nxt


@transaction.atomic
def va_token_regenerate(
    *, actor: Principal, account: VirtualAccount, grace_period_days: int | None = None
) -> tuple[VirtualAccountToken, str]:
    """Regenerate now: the new token works at once; the old one for the grace period (0 = now)."""
    account = VirtualAccount.objects.select_for_update().get(pk=account.pk)
    require(actor, Permission.VIRTUAL_ACCOUNT_MANAGE, team_id=account.owner_team_id)
    _require_holds_grants(actor, account)
    grace = account.grace_period_days if grace_period_days is None else grace_period_days
    if grace < 0 or grace > 365:
        raise ValidationFailed.field("grace_period_days", "0-365 days")
    token = _token_of(account)
    token.secrets.filter(state=TokenSecret.State.NEXT).update(state=TokenSecret.State.RETIRED)
    secret, raw = _issue_secret(
        token, account, TokenSecret.State.NEXT, keep_undelivered=account.secret_store is not None
    )
    rotation_promote(account, grace=timedelta(days=grace))
    if grace == 0:
        token.secrets.filter(state=TokenSecret.State.PREVIOUS).update(
            state=TokenSecret.State.RETIRED, expires_at=timezone.now()
        )
    audit_record(
        actor=actor,
        action="virtual_account.token_regenerated",
        target=account,
        after={"token_id": token.pk, "prefix": secret.prefix, "grace_period_days": grace},
    )
    if account.secret_store is not None:
        _after_commit_sync(account.pk)
    from accounts.tasks import va_notify_task

    # robust: the token is already regenerated; a broker outage (the task cannot be queued)
    # must not turn the answer carrying the new token into a 500. The notice is logged as lost.
    transaction.on_commit(
        lambda: va_notify_task.delay(account.pk, "rotated", secret.pk), robust=True
    )
    return token, raw


@transaction.atomic
def va_token_reveal(*, actor: Principal, account: VirtualAccount) -> str:
    """ "Get token": the current token's raw value, once, if it was never delivered."""
    require(actor, Permission.VIRTUAL_ACCOUNT_MANAGE, team_id=account.owner_team_id)
    _require_holds_grants(actor, account)
    secret = (
        TokenSecret.objects.select_for_update()
        .filter(token__account=account, state=TokenSecret.State.CURRENT)
        .exclude(undelivered="")
        .first()
    )
    if secret is None:
        raise Conflict("this token was already delivered; regenerate it to get a new one")
    raw = str(secret.undelivered)
    if account.secret_store is None:
        secret.undelivered = ""
        secret.save(update_fields=["undelivered"])
    audit_record(
        actor=actor,
        action="virtual_account.token_revealed",
        target=account,
        after={"prefix": secret.prefix},
    )
    return raw


# --- selectors -------------------------------------------------------------------------------


def va_list(principal: Principal) -> QuerySet[VirtualAccount]:
    """Accounts the principal may read: tenant-wide readers see all, managers their teams'."""
    qs = VirtualAccount.objects.select_related("owner_team", "secret_store").prefetch_related(
        "permissions", "tokens__secrets"
    )
    if principal.holds(Permission.VIRTUAL_ACCOUNT_READ):
        return qs
    readable = [
        team_id
        for team_id, perms in principal.team_permissions.items()
        if Permission.VIRTUAL_ACCOUNT_READ in perms
    ]
    return qs.filter(owner_team_id__in=readable)


def va_get_for(principal: Principal, name: str) -> VirtualAccount:
    account = va_list(principal).filter(name=name).first()
    if account is None:
        raise ObjectNotFound("virtual account not found")
    return account


def va_for_token(raw: str) -> tuple[VirtualAccount, TokenSecret] | None:
    """The account and secret a raw VA token matches, if it is valid now."""
    now = timezone.now()
    secret = (
        TokenSecret.objects.select_related("token__account__owner_team")
        .filter(digest=keyed_digest(raw))
        .exclude(state=TokenSecret.State.RETIRED)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .first()
    )
    if secret is None:
        return None
    return secret.token.account, secret


def principal_for_virtual_account(account: VirtualAccount) -> Principal:
    """Exactly the account's own permissions; its owner team is where its data belongs."""
    resource_roles: dict[tuple[str, int], set[str]] = {}
    account_ids: list[int] = []
    models: set[tuple[int, str]] = set()
    for perm in account.permissions.select_related("provider_model"):
        if perm.provider_account_id:
            resource_roles.setdefault(("provider-account", perm.provider_account_id), set()).add(
                perm.role_id
            )
            account_ids.append(perm.provider_account_id)
        elif perm.provider_model is not None:
            models.add((perm.provider_model.account_id, perm.provider_model.name))
        elif perm.mcp_server_id:
            resource_roles.setdefault(("mcp-server", perm.mcp_server_id), set()).add(perm.role_id)
    from providers.selectors import invokable_models

    invokable = set(invokable_models(account_ids, [account.subject])) | models
    return Principal(
        kind="virtual_account",
        id=account.pk,
        subject=account.subject,
        member_team_ids=frozenset({account.owner_team_id}),
        invokable=frozenset(invokable),
        resource_roles={k: frozenset(v) for k, v in resource_roles.items()},
    )


def va_sync_request(*, actor: Principal, account: VirtualAccount) -> None:
    """ "Sync now": queue a write of the current token to the account's secret store."""
    require(actor, Permission.VIRTUAL_ACCOUNT_MANAGE, team_id=account.owner_team_id)
    if account.secret_store is None:
        raise ValidationFailed.field("secret_store_config", "this account has no secret store")
    _after_commit_sync(account.pk)
