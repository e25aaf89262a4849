"""GitOps plumbing: parse YAML manifests, validate them, and apply a set atomically.

Each app registers a `Kind` per manifest `type` in its `manifests.py`; this module parses,
validates (one pydantic schema per type), orders by dependency, applies through the kinds
(which call services, so the caller's permissions apply), diffs and prunes. A set applies all
or nothing; `dry_run` applies inside a transaction that is rolled back.
"""

from __future__ import annotations

import difflib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from django.db import transaction
from pydantic import BaseModel, ConfigDict, ValidationError

from accounts.audit import audit_source
from accounts.models import AuditEvent
from accounts.policy import Permission, PolicyDenied, Principal, require
from gateway_project.errors import GatewayError, ValidationFailed
from gateway_project.manifest_io import Document, ManifestError, Problem, dump_yaml

Action = Literal["created", "updated", "unchanged", "deleted"]


class ManifestModel(BaseModel):
    """Base schema: unknown fields are errors, so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, str_strip_whitespace=True)


@dataclass
class ObjectResult:
    """What apply did (or, on a dry run, would do) to one object."""

    type: str
    name: str
    action: Action
    diff: str = ""
    notes: list[str] = field(default_factory=list)

    def as_dict(self, *, with_diff: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "name": self.name, "action": self.action}
        if self.notes:
            out["notes"] = self.notes
        if with_diff:
            out["diff"] = self.diff
        return out


class Kind(ABC):
    """The adapter between one manifest `type` and its app's services and selectors."""

    manifest_type: ClassVar[str]
    schema: ClassVar[type[ManifestModel]]
    rank: ClassVar[int]  # lower applies first: teams before the objects that name them
    directory: ClassVar[str]  # export folder
    read_permission: ClassVar[Permission]  # needed to export this kind through the API

    @abstractmethod
    def current(self, name: str) -> dict[str, Any] | None:
        """The object's manifest as export writes it, or None when it does not exist."""

    @abstractmethod
    def apply(self, actor: Principal, manifest: Any) -> list[str]:
        """Create or update through services; returns notes for the output (e.g. invitations)."""

    @abstractmethod
    def delete(self, actor: Principal, name: str) -> None:
        """Delete through services."""

    @abstractmethod
    def names(self, *, created_by_apply_only: bool) -> list[str]:
        """Existing objects of this kind that export writes and sync may prune."""


_REGISTRY: dict[str, Kind] = {}


def register(kind: Kind) -> None:
    """Called by each app's manifests module at import (from AppConfig.ready)."""
    _REGISTRY[kind.manifest_type] = kind


def kinds() -> Mapping[str, Kind]:
    return dict(_REGISTRY)


# --- parsing and validation -------------------------------------------------------------


def _loc_path(loc: Iterable[int | str]) -> str:
    """pydantic's `('members', 2)` as `members[2]`."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def pydantic_fields(exc: ValidationError) -> dict[str, list[str]]:
    """pydantic errors as `{field path: [messages]}` (for APIs taking one manifest)."""
    fields: dict[str, list[str]] = {}
    for problem in _pydantic_problems(Document(None), exc):
        fields.setdefault(problem.path, []).append(problem.message)
    return fields


def _pydantic_problems(doc: Document, exc: ValidationError) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        problems.append(Problem(doc.where, _loc_path(loc), message))
    return problems


@dataclass(frozen=True)
class Validated:
    doc: Document
    kind: Kind
    manifest: Any

    @property
    def name(self) -> str:
        return str(self.manifest.name)


def validate(doc: Document) -> Validated:
    """The document's kind and typed manifest, or ManifestError naming the fields at fault."""
    if not isinstance(doc.data, dict):
        raise ManifestError([Problem(doc.where, "", "a manifest must be a mapping")])
    type_ = doc.data.get("type")
    if not isinstance(type_, str) or not type_:
        raise ManifestError([Problem(doc.where, "type", "field required")])
    kind = _REGISTRY.get(type_)
    if kind is None:
        known = ", ".join(sorted(_REGISTRY))
        raise ManifestError(
            [Problem(doc.where, "type", f"unknown type '{type_}' (known: {known})")]
        )
    try:
        manifest = kind.schema.model_validate(doc.data)
    except ValidationError as exc:
        raise ManifestError(_pydantic_problems(doc, exc)) from exc
    return Validated(doc, kind, manifest)


def validate_all(docs: Sequence[Document]) -> list[Validated]:
    """Validate every document, reporting every problem at once, and refuse duplicates."""
    problems: list[Problem] = []
    items: list[Validated] = []
    for doc in docs:
        try:
            items.append(validate(doc))
        except ManifestError as exc:
            problems.extend(exc.problems)
    seen: dict[tuple[str, str], str] = {}
    for item in items:
        key = (item.kind.manifest_type, item.name)
        if key in seen:
            problems.append(
                Problem(
                    item.doc.where, "name", f"duplicate {key[0]} '{key[1]}' (also in {seen[key]})"
                )
            )
        seen.setdefault(key, item.doc.where)
    if problems:
        raise ManifestError(problems)
    return items


# --- apply ------------------------------------------------------------------------------


def unified_diff(
    type_: str, name: str, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> str:
    lines = difflib.unified_diff(
        dump_yaml(before).splitlines(keepends=True),
        dump_yaml(after).splitlines(keepends=True),
        fromfile=f"a/{type_}/{name}" if before is not None else "/dev/null",
        tofile=f"b/{type_}/{name}" if after is not None else "/dev/null",
    )
    return "".join(lines)


def _service_problem(item: Validated, exc: Exception) -> ManifestError:
    """A service refusal, located at the document (and field) that caused it."""
    if isinstance(exc, ValidationFailed) and exc.fields:
        return ManifestError(
            [
                Problem(item.doc.where, path, msg)
                for path, msgs in exc.fields.items()
                for msg in msgs
            ]
        )
    if isinstance(exc, PolicyDenied):
        return ManifestError(
            [Problem(item.doc.where, "", f"permission denied: {exc.permission}")], status=403
        )
    status = exc.status if isinstance(exc, GatewayError) else 400
    return ManifestError([Problem(item.doc.where, "", str(exc))], status=status)


def _apply_one(actor: Principal, item: Validated) -> ObjectResult:
    kind, name = item.kind, item.name
    before = kind.current(name)
    try:
        notes = kind.apply(actor, item.manifest)
    except (GatewayError, PolicyDenied) as exc:
        raise _service_problem(item, exc) from exc
    after = kind.current(name)
    action: Action = (
        "created" if before is None else ("unchanged" if before == after else "updated")
    )
    return ObjectResult(
        kind.manifest_type,
        name,
        action,
        unified_diff(kind.manifest_type, name, before, after),
        notes,
    )


def _prune(
    actor: Principal, items: Sequence[Validated], *, include_console: bool
) -> list[ObjectResult]:
    """Delete objects of the applied types that the set no longer names."""
    results: list[ObjectResult] = []
    wanted = {(i.kind.manifest_type, i.name) for i in items}
    applied_kinds = sorted(
        {i.kind.manifest_type: i.kind for i in items}.values(), key=lambda k: -k.rank
    )
    for kind in applied_kinds:
        for name in kind.names(created_by_apply_only=not include_console):
            if (kind.manifest_type, name) in wanted:
                continue
            before = kind.current(name)
            try:
                kind.delete(actor, name)
            except (GatewayError, PolicyDenied) as exc:
                where = Validated(Document(None, f"sync {kind.manifest_type}/{name}"), kind, None)
                raise _service_problem(where, exc) from exc
            results.append(
                ObjectResult(
                    kind.manifest_type,
                    name,
                    "deleted",
                    unified_diff(kind.manifest_type, name, before, None),
                )
            )
    return results


def apply(
    docs: Sequence[Document],
    *,
    actor: Principal,
    dry_run: bool = False,
    sync: bool = False,
    sync_console_objects: bool = False,
) -> list[ObjectResult]:
    """Apply a document set atomically in dependency order; audited with source `apply`."""
    items = validate_all(docs)
    ordered = sorted(items, key=lambda i: i.kind.rank)
    with audit_source(AuditEvent.Source.APPLY), transaction.atomic():
        results = [_apply_one(actor, item) for item in ordered]
        if sync:
            results += _prune(actor, items, include_console=sync_console_objects)
        if dry_run:
            transaction.set_rollback(True)
    return results


def export(
    types: Sequence[str] | None = None, *, actor: Principal | None = None
) -> list[tuple[Kind, str, dict[str, Any]]]:
    """Every exportable object as (kind, name, manifest), in apply order.

    With an `actor`, each exported kind needs its read permission tenant-wide.
    """
    selected = [k for k in _REGISTRY.values() if not types or k.manifest_type in types]
    if actor is not None:
        for kind in selected:
            require(actor, kind.read_permission)
    out = []
    for kind in sorted(selected, key=lambda k: k.rank):
        for name in sorted(kind.names(created_by_apply_only=False)):
            manifest = kind.current(name)
            if manifest is not None:
                out.append((kind, name, manifest))
    return out
