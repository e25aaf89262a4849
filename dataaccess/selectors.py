"""Reads of request logs and metrics, always filtered by the viewer's Data Access rules."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet, Sum

from accounts.policy import Principal
from dataaccess.models import DataAccessConfig, Rollup
from dataaccess.rules import DataType, Rule, team_ids_q, visible_q
from gateway_project.errors import ObjectNotFound, ValidationFailed
from proxy.models import McpToolCall, RequestLog
from teams.models import Team

PAGE_SIZE = 50


def data_access_rules() -> list[Rule]:
    """The enabled configuration's rules (the shipped defaults until someone edits them)."""
    config = DataAccessConfig.objects.order_by("pk").first()
    from dataaccess.services import default_rules

    raw = config.rules if config is not None else default_rules()
    return [Rule.model_validate(r) for r in raw]


def visible(viewer: Principal, data_type: DataType) -> Q:
    """The Q a viewer's rows must match for `data_type`."""
    team_names = dict(Team.objects.values_list("id", "name"))
    return visible_q(
        data_access_rules(), viewer, data_type, team_names=team_names, roles=viewer.roles
    )


@dataclass(frozen=True)
class LogFilters:
    """The console's and API's filters for request logs and metrics."""

    start: datetime | None = None
    end: datetime | None = None
    model: str = ""
    provider_account: str = ""
    user: str = ""
    virtual_account: str = ""
    team: str = ""
    status: str = ""  # ok | 4xx | 5xx | an exact code
    metadata_key: str = ""
    metadata_value: str = ""
    error_type: str = ""

    def q(self, *, time_field: str, rollup: bool = False) -> Q:
        q = Q()
        if self.start:
            q &= Q(**{f"{time_field}__gte": self.start})
        if self.end:
            q &= Q(**{f"{time_field}__lt": self.end})
        if self.model:
            q &= Q(**{("model" if rollup else "requested_model"): self.model})
        if self.provider_account:
            q &= Q(provider_account=self.provider_account)
        if self.user:
            q &= Q(caller_type="user", caller_name__iexact=self.user)
        if self.virtual_account:
            q &= Q(caller_type="virtualaccount", caller_name=self.virtual_account)
        if self.team:
            team = Team.objects.filter(name=self.team).values_list("id", flat=True).first()
            q &= team_ids_q([team]) if team is not None else Q(pk__in=[])
        if self.metadata_key:
            key = f"metadata__{self.metadata_key}"
            q &= (
                Q(**{key: self.metadata_value})
                if self.metadata_value
                else Q(**{f"{key}__isnull": False})
            )
        if self.error_type:
            q &= Q(error_type=self.error_type)
        if self.status:
            q &= _status_q(self.status, rollup)
        return q


def _status_q(status: str, rollup: bool) -> Q:
    if status in ("ok", "4xx", "5xx"):
        if rollup:
            return Q(status_class=status)
        return {
            "ok": Q(status__lt=400),
            "4xx": Q(status__gte=400, status__lt=500),
            "5xx": Q(status__gte=500),
        }[status]
    if not status.isdigit():
        raise ValidationFailed.field("status", "ok, 4xx, 5xx or an HTTP status code")
    if rollup:
        raise ValidationFailed.field("status", "metrics group by ok, 4xx and 5xx")
    return Q(status=int(status))


def _encode_cursor(log: RequestLog) -> str:
    raw = json.dumps([log.started_at.isoformat(), str(log.id)]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        started, ident = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return datetime.fromisoformat(started), str(ident)
    except (ValueError, TypeError) as exc:
        raise ValidationFailed.field("cursor", "not a cursor from a previous page") from exc


@dataclass(frozen=True)
class LogPage:
    rows: list[RequestLog]
    next_cursor: str | None


def request_log_queryset(viewer: Principal, filters: LogFilters) -> QuerySet[RequestLog]:
    """Every log row the viewer may see under the filters, newest first."""
    return (
        RequestLog.objects.filter(visible(viewer, "traces"))
        .filter(filters.q(time_field="started_at"))
        .order_by("-started_at", "-id")
    )


def request_log_page(
    viewer: Principal, filters: LogFilters, *, cursor: str = "", size: int = PAGE_SIZE
) -> LogPage:
    """One page by keyset pagination (fast however deep: no OFFSET), bodies deferred."""
    qs = request_log_queryset(viewer, filters).defer("request_body", "response_body")
    if cursor:
        started, ident = _decode_cursor(cursor)
        qs = qs.filter(Q(started_at__lt=started) | Q(started_at=started, id__lt=ident))
    rows = list(qs[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return LogPage(rows, _encode_cursor(rows[-1]) if more and rows else None)


def request_log_get_for(viewer: Principal, log_id: str) -> RequestLog:
    """One log row with bodies; 404 whether missing or hidden by the rules."""
    try:
        key = uuid.UUID(str(log_id))
    except ValueError as exc:
        raise ObjectNotFound("request log not found") from exc
    row = RequestLog.objects.filter(visible(viewer, "traces")).filter(pk=key).first()
    if row is None:
        raise ObjectNotFound("request log not found")
    return row


def mcp_call_queryset(viewer: Principal, filters: LogFilters) -> QuerySet[McpToolCall]:
    """MCP tool calls the viewer may see, newest first."""
    q = Q()
    if filters.start:
        q &= Q(started_at__gte=filters.start)
    if filters.end:
        q &= Q(started_at__lt=filters.end)
    return McpToolCall.objects.filter(visible(viewer, "traces")).filter(q).order_by("-started_at")


# --- metrics from rollups ---------------------------------------------------------------------

SUMS = (
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "latency_ms_sum",
    "ttft_ms_sum",
    "ttft_count",
)


def rollup_queryset(
    viewer: Principal, filters: LogFilters, *, granularity: str, kind: str = "model"
) -> QuerySet[Rollup]:
    """Rollup rows the viewer may see: the same rules as raw rows (aggregates reveal nothing)."""
    return (
        Rollup.objects.filter(granularity=granularity, kind=kind)
        .filter(visible(viewer, "metrics"))
        .filter(filters.q(time_field="bucket", rollup=True))
    )


def totals(
    viewer: Principal, filters: LogFilters, *, granularity: str = "hour", kind: str = "model"
) -> dict[str, Any]:
    """Sums over the visible rollups."""
    qs = rollup_queryset(viewer, filters, granularity=granularity, kind=kind)
    sums = qs.aggregate(**{name: Sum(name) for name in SUMS})
    return {k: (v or 0) for k, v in sums.items()}
