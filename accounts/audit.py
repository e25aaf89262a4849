"""Recording audit events. The channel (console, API, SCIM, apply, system) is set per request."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any

from django.db import models
from django.db.models import F

from accounts.models import AuditEvent, ConfigVersion
from accounts.policy import Principal
from gateway_project.manifest_io import mask_secrets

_source: ContextVar[str] = ContextVar("audit_source", default=AuditEvent.Source.SYSTEM)


@contextlib.contextmanager
def audit_source(source: str) -> Iterator[None]:
    """Record changes made inside the block as coming through `source`."""
    reset = _source.set(source)
    try:
        yield
    finally:
        _source.reset(reset)


def current_source() -> str:
    return _source.get()


def config_version_bump() -> None:
    """Move the version every gateway process polls (inside the caller's transaction)."""
    updated = ConfigVersion.objects.filter(pk=1).update(version=F("version") + 1)
    if not updated:
        ConfigVersion.objects.get_or_create(pk=1, defaults={"version": 1})


def audit_record(
    *,
    actor: Principal,
    action: str,
    target: models.Model,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    target_label: str | None = None,
) -> AuditEvent:
    """Write one audit event inside the caller's transaction, and move the config version."""
    config_version_bump()
    return AuditEvent.objects.create(
        actor_kind=actor.kind,
        actor_id=actor.id,
        actor=actor.subject,
        action=action,
        target_type=target._meta.model_name or "",
        target_id=str(target.pk),
        target=target_label if target_label is not None else str(target),
        before=mask_secrets(dict(before)) if before is not None else None,
        after=mask_secrets(dict(after)) if after is not None else None,
        source=current_source(),
    )
