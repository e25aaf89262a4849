"""Secret stores: every write (services) and the reads other modules use (selectors).

Who may act: `settings:ManageSettings` to create, change, test or delete a store;
`settings:ListSettings` (or Manage) to see them. Credentials are write-only: they are stored
encrypted (`SecretStore.credentials`), never returned, and audited only as masked fields and a
keyed fingerprint, so the audit log shows that they changed without showing them.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.db import transaction
from django.db.models import ProtectedError, QuerySet
from pydantic import ValidationError as PydanticValidationError

from accounts.audit import audit_record
from accounts.models import SecretStore
from accounts.policy import Permission, Principal, require, require_any
from accounts.secret_stores import (
    SECRET_CREDENTIAL_FIELDS,
    parse_config,
    parse_credentials,
    secret_store_check,
)
from gateway_project.errors import Conflict, ObjectNotFound, ValidationFailed
from gateway_project.manifest_io import MASK
from gateway_project.secret_refs import fingerprint, is_ref

SECRET_STORE_NAME_PATTERN = r"^[a-z][a-z0-9-]{1,62}[a-z0-9]$"  # noqa: S105 - a name pattern


def _pydantic_failed(exc: PydanticValidationError, prefix: str) -> ValidationFailed:
    """pydantic errors as field errors under `prefix` (e.g. `auth_data.client_secret`)."""
    fields: dict[str, list[str]] = {}
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
        # A discriminated union puts the chosen tag first: `key-file.key_file_content`.
        parts = loc.split(".")
        if len(parts) > 1 and "-" in parts[0]:
            loc = ".".join(parts[1:])
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        if err["type"] == "missing":
            message = "field required"
        path = f"{prefix}.{loc}" if loc else prefix
        fields.setdefault(path, []).append(message)
    first = next(iter(fields.items()), (prefix, ["invalid"]))
    return ValidationFailed(f"{first[0]}: {first[1][0]}", fields)


def credentials_public(store: SecretStore) -> dict[str, Any]:
    """The stored credentials with every secret field masked (identifiers stay readable)."""
    return {
        k: (MASK if k in SECRET_CREDENTIAL_FIELDS and v else v)
        for k, v in credentials_values(store).items()
    }


def credentials_values(store: SecretStore) -> dict[str, Any]:
    """The decrypted credentials, for store calls and manifest references only."""
    try:
        loaded = json.loads(store.credentials) if store.credentials else {}
    except ValueError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def secret_store_snapshot(store: SecretStore) -> dict[str, Any]:
    """Audited fields: config, masked credentials and their keyed fingerprint (never a secret)."""
    return {
        "name": store.name,
        "kind": store.kind,
        "config": dict(store.config or {}),
        "auth_data": credentials_public(store),
        "auth_fingerprint": fingerprint(store.credentials) if store.credentials else "",
    }


def _validated(
    name: str, kind: str, config: dict[str, Any], credentials: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    """(normalised config, credentials JSON), or ValidationFailed naming the fields."""
    if not re.fullmatch(SECRET_STORE_NAME_PATTERN, name or ""):
        raise ValidationFailed.field("name", "3-64 lower-case letters, digits and '-'")
    if kind not in SecretStore.Kind.values:
        raise ValidationFailed.field("kind", f"must be one of {', '.join(SecretStore.Kind.values)}")
    try:
        parsed_config = parse_config(kind, config)
    except PydanticValidationError as exc:
        raise _pydantic_failed(exc, "config") from None
    for key, value in credentials.items():
        if is_ref(value):  # manifests resolve references before calling; never store one
            raise ValidationFailed.field(f"auth_data.{key}", "unresolved secret reference")
    try:
        parsed_credentials = parse_credentials(kind, credentials)
    except PydanticValidationError as exc:
        raise _pydantic_failed(exc, "auth_data") from None
    # Defaults are left out so exports stay short; the clients fill them in again.
    normalised = parsed_config.model_dump(exclude_defaults=True)
    secret = json.dumps(parsed_credentials.model_dump(), sort_keys=True)
    return normalised, secret


@transaction.atomic
def secret_store_put_config(
    *,
    actor: Principal,
    name: str,
    kind: str,
    config: dict[str, Any],
    credentials: dict[str, Any] | None,
    created_via: str = "console",
) -> SecretStore:
    """Create the store `name` or change its config and credentials.

    `credentials=None` keeps the stored ones (a console edit that leaves the secret blank).
    When an existing store's config changes, the accounts using it are re-synced, because
    their tokens now belong in another place.
    """
    require(actor, Permission.SETTINGS_MANAGE)
    existing = SecretStore.objects.select_for_update().filter(name=name).first()
    if existing is not None and existing.kind != kind:
        raise Conflict(f"secret store '{name}' is a {existing.kind} store; delete it first")
    if credentials is None:
        if existing is None:
            raise ValidationFailed.field("auth_data", "credentials are required")
        credentials = credentials_values(existing)
    normalised, secret = _validated(name, kind, config, credentials)
    if existing is None:
        store = SecretStore.objects.create(
            name=name, kind=kind, config=normalised, credentials=secret, created_via=created_via
        )
        audit_record(
            actor=actor,
            action="secret_store.created",
            target=store,
            after=secret_store_snapshot(store),
        )
        return store
    if existing.config == normalised and existing.credentials == secret:
        return existing
    before = secret_store_snapshot(existing)
    config_changed = existing.config != normalised
    existing.config, existing.credentials = normalised, secret
    existing.save(update_fields=["config", "credentials", "updated_at"])
    audit_record(
        actor=actor,
        action="secret_store.updated",
        target=existing,
        before=before,
        after=secret_store_snapshot(existing),
    )
    if config_changed:
        _resync_accounts(existing)
    return existing


def _resync_accounts(store: SecretStore) -> None:
    from accounts.tasks import secret_store_sync_task

    ids = list(store.accounts.values_list("pk", flat=True))
    # robust: with the broker down the change stands and the accounts show "Pending" (the
    # Sync button retries); the send failure is logged, not turned into an error answer.
    transaction.on_commit(lambda: [secret_store_sync_task.delay(pk) for pk in ids], robust=True)


@transaction.atomic
def secret_store_delete(*, actor: Principal, store: SecretStore) -> None:
    """Delete a store that no virtual account uses (they would lose their token's home)."""
    require(actor, Permission.SETTINGS_MANAGE)
    store = SecretStore.objects.select_for_update().get(pk=store.pk)
    users = list(store.accounts.order_by("name").values_list("name", flat=True)[:6])
    if users:
        shown = ", ".join(users[:5]) + (" and more" if len(users) > 5 else "")
        raise Conflict(f"secret store '{store.name}' is used by virtual accounts: {shown}")
    audit_record(
        actor=actor,
        action="secret_store.deleted",
        target=store,
        before=secret_store_snapshot(store),
    )
    try:
        store.delete()
    except ProtectedError:  # an account started using it after the check
        raise Conflict(f"secret store '{store.name}' is used by virtual accounts") from None


def secret_store_test(*, actor: Principal, store: SecretStore) -> str:
    """ "Test connection": one authenticated cheap call; SecretStoreError when it fails."""
    require(actor, Permission.SETTINGS_MANAGE)
    return secret_store_check(store)


# --- selectors -----------------------------------------------------------------------------------


def secret_store_list(principal: Principal) -> QuerySet[SecretStore]:
    """Every store, for principals who may read settings."""
    require_any(principal, Permission.SETTINGS_LIST, Permission.SETTINGS_MANAGE)
    return SecretStore.objects.all()


def secret_store_get_for(principal: Principal, name: str) -> SecretStore:
    store = secret_store_list(principal).filter(name=name).first()
    if store is None:
        raise ObjectNotFound("secret store not found")
    return store
