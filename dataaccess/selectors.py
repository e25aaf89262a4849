"""Reads of request logs and metrics, always filtered by the viewer's Data Access rules."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
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
    viewer: Principal,
    filters: LogFilters,
    *,
    cursor: str = "",
    size: int = PAGE_SIZE,
    ascending: bool = False,
) -> LogPage:
    """One page by keyset pagination (fast however deep: no OFFSET), bodies deferred.

    Newest first, or oldest first with `ascending`. The cursor condition repeats its time
    bound on its own (`started_at <= t`), which the planner can use as an index condition on
    `started_at`; the OR alone would be a filter applied to every newer row.
    """
    qs = request_log_queryset(viewer, filters).defer("request_body", "response_body")
    if ascending:
        qs = qs.order_by("started_at", "id")
    if cursor:
        started, ident = _decode_cursor(cursor)
        if ascending:
            qs = qs.filter(started_at__gte=started).filter(
                Q(started_at__gt=started) | Q(started_at=started, id__gt=ident)
            )
        else:
            qs = qs.filter(started_at__lte=started).filter(
                Q(started_at__lt=started) | Q(started_at=started, id__lt=ident)
            )
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


# --- observability: rules under edit, MCP call pages, previews --------------------------------


def visible_under(rules: Sequence[Rule], viewer: Principal, data_type: DataType) -> Q:
    """Like `visible`, for rules that are not saved (the console's preview of an edit)."""
    team_names = dict(Team.objects.values_list("id", "name"))
    return visible_q(rules, viewer, data_type, team_names=team_names, roles=viewer.roles)


@dataclass(frozen=True)
class McpFilters:
    """Filters of the MCP tool-call list."""

    start: datetime | None = None
    end: datetime | None = None
    server: str = ""
    tool: str = ""
    user: str = ""
    virtual_account: str = ""
    team: str = ""
    status: str = ""  # ok | error | denied

    def q(self) -> Q:
        q = Q()
        if self.start:
            q &= Q(started_at__gte=self.start)
        if self.end:
            q &= Q(started_at__lt=self.end)
        if self.server:
            q &= Q(server=self.server)
        if self.tool:
            q &= Q(tool=self.tool)
        if self.user:
            q &= Q(caller_type="user", caller_name__iexact=self.user)
        if self.virtual_account:
            q &= Q(caller_type="virtualaccount", caller_name=self.virtual_account)
        if self.team:
            team = Team.objects.filter(name=self.team).values_list("id", flat=True).first()
            q &= team_ids_q([team]) if team is not None else Q(pk__in=[])
        if self.status:
            q &= Q(status=self.status)
        return q


@dataclass(frozen=True)
class McpPage:
    rows: list[McpToolCall]
    next_cursor: str | None


def mcp_call_page(
    viewer: Principal, filters: McpFilters, *, cursor: str = "", size: int = PAGE_SIZE
) -> McpPage:
    """One page of visible MCP tool calls, newest first, by keyset pagination."""
    qs = (
        McpToolCall.objects.filter(visible(viewer, "traces"))
        .filter(filters.q())
        .order_by("-started_at", "-id")
    )
    if cursor:
        started, ident = _decode_cursor(cursor)
        qs = qs.filter(started_at__lte=started).filter(
            Q(started_at__lt=started) | Q(started_at=started, id__lt=ident)
        )
    rows = list(qs[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    last = rows[-1] if rows else None
    token = None
    if more and last is not None:
        raw = json.dumps([last.started_at.isoformat(), str(last.id)]).encode()
        token = base64.urlsafe_b64encode(raw).decode()
    return McpPage(rows, token)


def mcp_call_get_for(viewer: Principal, call_id: str) -> McpToolCall:
    """One MCP tool call; 404 whether missing or hidden by the rules."""
    try:
        key = uuid.UUID(str(call_id))
    except ValueError as exc:
        raise ObjectNotFound("MCP tool call not found") from exc
    row = McpToolCall.objects.filter(visible(viewer, "traces")).filter(pk=key).first()
    if row is None:
        raise ObjectNotFound("MCP tool call not found")
    return row


def subject_principal(subject: str) -> Principal:
    """The principal behind `user:<email>` or `virtualaccount:<name>` (404 if unknown)."""
    from accounts.models import User, VirtualAccount
    from accounts.selectors import principal_for_user
    from accounts.virtual_accounts import principal_for_virtual_account

    kind, _, name = subject.partition(":")
    if kind == "user":
        user = User.objects.filter(email__iexact=name).first()
        if user is not None:
            return principal_for_user(user)
    elif kind == "virtualaccount":
        account = VirtualAccount.objects.filter(name=name).first()
        if account is not None:
            return principal_for_virtual_account(account)
    raise ObjectNotFound(f"no user or virtual account {subject}")


def preview_subjects(limit: int = 500) -> list[str]:
    """Users and virtual accounts one can preview the rules as."""
    from accounts.models import User, VirtualAccount

    users = User.objects.filter(is_active=True).order_by("email").values_list("email", flat=True)
    accounts = VirtualAccount.objects.order_by("name").values_list("name", flat=True)
    return [f"user:{e}" for e in users[:limit]] + [f"virtualaccount:{n}" for n in accounts[:limit]]


@dataclass(frozen=True)
class AccessPreview:
    """What a subject would see under some rules: counts, and who the rows come from."""

    subject: str
    requests: int  # request logs (traces)
    metric_requests: int  # requests counted in charts (metrics)
    mcp_calls: int
    callers: list[tuple[str, int]]
    teams: list[tuple[str, int]]


def data_access_preview(
    rules: Sequence[Rule], subject: Principal, *, top: int = 10
) -> AccessPreview:
    """Counts over every recorded request, from rollups (the same dimensions as raw rows):
    6-hour rows up to the compaction watermark, hour rows after it."""
    from dataaccess.compaction import compacted_until

    until = compacted_until()
    hours = (
        Rollup.objects.filter(
            Q(granularity="6h", bucket__lt=until) | Q(granularity="hour", bucket__gte=until)
        )
        if until is not None
        else Rollup.objects.filter(granularity="hour")
    )
    traces = hours.filter(visible_under(rules, subject, "traces"))
    model_rows = traces.filter(kind="model")
    requests = model_rows.aggregate(n=Sum("requests"))["n"] or 0
    mcp_calls = traces.filter(kind="mcp").aggregate(n=Sum("requests"))["n"] or 0
    metric_requests = (
        hours.filter(kind="model")
        .filter(visible_under(rules, subject, "metrics"))
        .aggregate(n=Sum("requests"))["n"]
        or 0
    )
    callers: dict[str, int] = {}
    teams: dict[str, int] = {}
    names = dict(Team.objects.values_list("id", "name"))
    grouped = model_rows.values("caller_type", "caller_name", "team_ids").annotate(
        n=Sum("requests")
    )
    for row in grouped.order_by():
        label = f"{row['caller_type']}:{row['caller_name']}"
        callers[label] = callers.get(label, 0) + row["n"]
        for part in str(row["team_ids"]).strip("|").split("|"):
            if part.isdigit():
                team = names.get(int(part), f"team #{part}")
                teams[team] = teams.get(team, 0) + row["n"]

    def ranked(counts: dict[str, int]) -> list[tuple[str, int]]:
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:top]

    return AccessPreview(
        subject.subject, requests, metric_requests, mcp_calls, ranked(callers), ranked(teams)
    )
