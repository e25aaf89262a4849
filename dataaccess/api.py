"""The request-log and metrics API (`/api/v1/request-logs`, `/api/v1/metrics/...`).

Every answer goes through the dataaccess selectors, so the caller's Data Access rules decide
what it contains, whoever calls: a console session, a personal access token or a virtual
account token (a virtual account is a viewer like any other; by default no rule names it, so
it sees nothing until a rule does). Query parameters are parsed by `dataaccess.params`;
errors name the parameter (`{"error": {"fields": {"start": [...]}}}`).
"""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any, ClassVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.views import principal_of
from dataaccess import metrics, params, selectors, traces
from dataaccess.metrics import Kind, Series
from dataaccess.selectors import LogFilters
from proxy.models import McpToolCall, RequestLog

CSV_CHUNK = 1000
CSV_COLUMNS = (
    "id",
    "started_at",
    "caller_type",
    "caller_name",
    "teams",
    "endpoint",
    "model",
    "provider_account",
    "provider_model",
    "status",
    "error_type",
    "streaming",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "latency_ms",
    "ttft_ms",
    "metadata",
)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

FILTER_PARAMS = [
    OpenApiParameter("range", str, description="15m, 1h, 6h, 24h, 7d, 30d or custom"),
    OpenApiParameter("start", OpenApiTypes.DATETIME, description="ISO 8601; UTC if no offset"),
    OpenApiParameter("end", OpenApiTypes.DATETIME),
    OpenApiParameter("model", str),
    OpenApiParameter("provider_account", str),
    OpenApiParameter("user", str, description="the caller's email"),
    OpenApiParameter("virtual_account", str),
    OpenApiParameter("team", str),
    OpenApiParameter("status", str, description="ok, 4xx, 5xx or an HTTP status code"),
    OpenApiParameter("metadata_key", str),
    OpenApiParameter("metadata_value", str),
    OpenApiParameter("error_type", str),
]
PAGE_PARAMS = [
    OpenApiParameter("cursor", str, description="next_cursor of the previous page"),
    OpenApiParameter("page_size", int, description="1-500, default 50"),
    OpenApiParameter("order", str, description="desc (newest first, default) or asc"),
]


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None


def _caller(row: RequestLog | McpToolCall) -> dict[str, Any]:
    return {
        "type": row.caller_type,
        "id": row.caller_id,
        "name": row.caller_name,
        "subject": f"{row.caller_type}:{row.caller_name}",
    }


def log_out(row: RequestLog, *, detail: bool = False) -> dict[str, Any]:
    """A request-log row as the API shows it; bodies and the trace only in `detail`."""
    out: dict[str, Any] = {
        "id": str(row.id),
        "started_at": _iso(row.started_at),
        "endpoint": row.endpoint,
        "model": row.requested_model,
        "provider_account": row.provider_account,
        "provider_model": row.provider_model,
        "status": row.status,
        "error_type": row.error_type,
        "streaming": row.streaming,
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "cost_usd": float(row.cost_usd),
        "latency_ms": row.latency_ms,
        "ttft_ms": row.ttft_ms,
        "caller": _caller(row),
        "teams": list(row.teams or []),
        "metadata": dict(row.metadata or {}),
    }
    if detail:
        out["request_body"] = row.request_body
        out["response_body"] = row.response_body
        out["trace"] = [span_out(s) for s in traces.request_trace(row)]
    return out


def mcp_out(row: McpToolCall, *, detail: bool = False) -> dict[str, Any]:
    """An MCP tool call as the API shows it."""
    out: dict[str, Any] = {
        "id": str(row.id),
        "started_at": _iso(row.started_at),
        "server": row.server,
        "tool": row.tool,
        "status": row.status,
        "error": row.error,
        "latency_ms": row.latency_ms,
        "caller": _caller(row),
        "teams": list(row.teams or []),
        "metadata": dict(row.metadata or {}),
    }
    if detail:
        out["trace"] = [span_out(s) for s in traces.mcp_trace(row)]
    return out


def span_out(span: traces.Span) -> dict[str, Any]:
    return {
        "trace_id": span.trace_id,
        "span_id": span.span_id,
        "parent_span_id": span.parent_id,
        "name": span.name,
        "kind": span.kind,
        "start": _iso(span.start),
        "end": _iso(span.end),
        "duration_ms": round(span.duration_ms, 3),
        "error": span.error,
        "attributes": span.attributes,
        "events": [{"name": e.name, "at": _iso(e.at)} for e in span.events],
    }


def _next_link(request: Request, cursor: str | None) -> str | None:
    if cursor is None:
        return None
    query = request.query_params.copy()
    query["cursor"] = cursor
    return request.build_absolute_uri(f"{request.path}?{query.urlencode()}")


def _ascending(request: Request) -> bool:
    order = request.query_params.get("order", "desc")
    if order not in ("asc", "desc"):
        from gateway_project.errors import ValidationFailed

        raise ValidationFailed.field("order", "asc or desc")
    return order == "asc"


class RequestLogListApi(APIView):
    """Request logs the caller may see, newest first, one keyset page at a time."""

    @extend_schema(parameters=FILTER_PARAMS + PAGE_PARAMS, responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Response:
        filters = params.log_filters(request.query_params)
        page = selectors.request_log_page(
            principal_of(request),
            filters,
            cursor=request.query_params.get("cursor", ""),
            size=params.page_size(request.query_params),
            ascending=_ascending(request),
        )
        return Response(
            {
                "results": [log_out(r) for r in page.rows],
                "next_cursor": page.next_cursor,
                "next": _next_link(request, page.next_cursor),
            }
        )


class RequestLogDetailApi(APIView):
    """One request log with its bodies (when logged) and trace; 404 if hidden."""

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, log_id: str) -> Response:
        row = selectors.request_log_get_for(principal_of(request), log_id)
        return Response(log_out(row, detail=True))


def _cell(value: Any) -> Any:
    """Neutralise spreadsheet formulas in text cells (OWASP "CSV injection")."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _csv_line(row: RequestLog) -> list[Any]:
    return [
        str(row.id),
        _iso(row.started_at),
        row.caller_type,
        _cell(row.caller_name),
        _cell(";".join(row.teams or [])),
        row.endpoint,
        _cell(row.requested_model),
        row.provider_account,
        _cell(row.provider_model),
        row.status,
        _cell(row.error_type),
        row.streaming,
        row.input_tokens,
        row.output_tokens,
        f"{row.cost_usd:f}",
        row.latency_ms,
        "" if row.ttft_ms is None else row.ttft_ms,
        _cell(json.dumps(row.metadata or {}, sort_keys=True)),
    ]


class _Echo:
    def write(self, value: str) -> str:
        return value


class CsvExport:
    """The CSV of a filtered view, page by page (keyset), at most `limit` rows."""

    def __init__(self, viewer: Any, filters: LogFilters, *, ascending: bool, limit: int) -> None:
        self.viewer, self.filters, self.ascending, self.limit = viewer, filters, ascending, limit
        self.writer = csv.writer(_Echo())

    def _page(self, cursor: str, size: int) -> tuple[str, str | None, int]:
        page = selectors.request_log_page(
            self.viewer, self.filters, cursor=cursor, size=size, ascending=self.ascending
        )
        text = "".join(self.writer.writerow(_csv_line(r)) for r in page.rows)
        return text, page.next_cursor, len(page.rows)

    def __iter__(self) -> Iterator[str]:
        yield self.writer.writerow(CSV_COLUMNS)
        cursor: str | None = ""
        sent = 0
        while cursor is not None and sent < self.limit:
            text, cursor, count = self._page(cursor, min(CSV_CHUNK, self.limit - sent))
            sent += count
            yield text

    async def __aiter__(self) -> AsyncIterator[str]:
        yield self.writer.writerow(CSV_COLUMNS)
        cursor: str | None = ""
        sent = 0
        while cursor is not None and sent < self.limit:
            text, cursor, count = await sync_to_async(self._page)(
                cursor, min(CSV_CHUNK, self.limit - sent)
            )
            sent += count
            yield text


class RequestLogCsvApi(APIView):
    """The filtered request log as CSV (no bodies), streamed; bounded by `limit`."""

    @extend_schema(
        parameters=[
            *FILTER_PARAMS,
            OpenApiParameter("order", str),
            OpenApiParameter("limit", int, description="rows, at most GATEWAY_LOG_EXPORT_MAX_ROWS"),
        ],
        responses={(200, "text/csv"): OpenApiTypes.STR},
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        cap = int(settings.GATEWAY_LOG_EXPORT_MAX_ROWS)
        filters = params.log_filters(request.query_params)
        limit = params.integer(request.query_params, "limit", default=cap, maximum=cap)
        export = CsvExport(
            principal_of(request), filters, ascending=_ascending(request), limit=limit
        )
        # Under ASGI an async iterator streams; a sync one would be read whole first.
        content: Any = aiter(export) if isinstance(request._request, ASGIRequest) else iter(export)
        response = StreamingHttpResponse(content, content_type="text/csv; charset=utf-8")
        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        response["Content-Disposition"] = f'attachment; filename="request-logs-{stamp}.csv"'
        response["Cache-Control"] = "no-store"
        return response


class McpCallListApi(APIView):
    """MCP tool calls the caller may see, newest first, by keyset pages."""

    @extend_schema(
        parameters=[
            OpenApiParameter("range", str),
            OpenApiParameter("start", OpenApiTypes.DATETIME),
            OpenApiParameter("end", OpenApiTypes.DATETIME),
            OpenApiParameter("server", str),
            OpenApiParameter("tool", str),
            OpenApiParameter("user", str),
            OpenApiParameter("virtual_account", str),
            OpenApiParameter("team", str),
            OpenApiParameter("status", str, description="ok, error or denied"),
            OpenApiParameter("cursor", str),
            OpenApiParameter("page_size", int),
        ],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request: Request) -> Response:
        page = selectors.mcp_call_page(
            principal_of(request),
            params.mcp_filters(request.query_params),
            cursor=request.query_params.get("cursor", ""),
            size=params.page_size(request.query_params),
        )
        return Response(
            {
                "results": [mcp_out(r) for r in page.rows],
                "next_cursor": page.next_cursor,
                "next": _next_link(request, page.next_cursor),
            }
        )


class McpCallDetailApi(APIView):
    """One MCP tool call with its trace; 404 if hidden."""

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, call_id: str) -> Response:
        return Response(
            mcp_out(selectors.mcp_call_get_for(principal_of(request), call_id), detail=True)
        )


# --- metrics ------------------------------------------------------------------------------------


def _number(value: float | None) -> float | int | None:
    if value is None:
        return None
    return int(value) if float(value).is_integer() else round(value, 6)


def _series_out(series: Series, grouped: bool) -> dict[str, Any]:
    return {
        "group": series.name if grouped else None,
        "values": [_number(v) for v in series.values],
        "total": _number(series.total),
    }


METRIC_PARAMS = [
    OpenApiParameter(
        "metric",
        str,
        description="requests, errors, error_rate, input_tokens, "
        "output_tokens, cost_usd, latency_avg|p50|p90|p99, ttft_avg|p50|p90|p99",
    ),
    OpenApiParameter(
        "group_by",
        str,
        description="model, provider_account, user, "
        "virtual_account, team, status, error_type or metadata.<key>",
    ),
    OpenApiParameter("limit", int, description="groups shown; the rest are summed as (other)"),
    *FILTER_PARAMS,
]


class MetricsApi(APIView):
    """Common parts of the metrics endpoints; `kind` is model requests or MCP tool calls."""

    kind: ClassVar[Kind] = "model"

    def window(self, request: Request) -> tuple[LogFilters, metrics.TimeRange]:
        return params.metric_filters(request.query_params)

    def range_out(self, rng: metrics.TimeRange) -> dict[str, Any]:
        return {
            "start": _iso(rng.aligned_start),
            "end": _iso(rng.end),
            "granularity": rng.granularity,
        }


class MetricsTimeseriesApi(MetricsApi):
    """A metric over time, optionally per group."""

    @extend_schema(
        parameters=[*METRIC_PARAMS, OpenApiParameter("interval", str, description="1m .. 7d")],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request: Request) -> Response:
        query = request.query_params
        filters, rng = self.window(request)
        result = metrics.timeseries(
            principal_of(request),
            filters,
            rng,
            metric=query.get("metric", "requests"),
            group_by=query.get("group_by", ""),
            interval=params.interval(query),
            kind=self.kind,
            limit=params.integer(query, "limit", default=10, maximum=100),
        )
        return Response(
            {
                "kind": self.kind,
                "metric": result.metric,
                "group_by": result.group_by or None,
                **self.range_out(rng),
                "interval": metrics.interval_label(result.interval),
                "interval_seconds": result.interval,
                "timestamps": [_iso(t) for t in result.times],
                "series": [_series_out(s, bool(result.group_by)) for s in result.series],
            }
        )


class MetricsDistributionApi(MetricsApi):
    """A metric per group over the whole range."""

    @extend_schema(parameters=METRIC_PARAMS, responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Response:
        query = request.query_params
        filters, rng = self.window(request)
        result = metrics.distribution(
            principal_of(request),
            filters,
            rng,
            metric=query.get("metric", "requests"),
            group_by=query.get("group_by", ""),
            kind=self.kind,
            limit=params.integer(query, "limit", default=50, maximum=500),
        )
        return Response(
            {
                "kind": self.kind,
                "metric": result.metric,
                "group_by": result.group_by,
                **self.range_out(rng),
                "total": _number(result.total),
                "groups": [
                    {"group": g.group, "value": _number(g.value), "requests": g.requests}
                    for g in result.groups
                ],
            }
        )


class MetricsLeaderboardApi(MetricsApi):
    """Top users, virtual accounts, teams, models (or MCP servers and tools)."""

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "by",
                str,
                description="user, virtual_account, team, model "
                "(MCP: user, virtual_account, team, server, tool)",
            ),
            OpenApiParameter("order", str, description="requests or cost_usd"),
            OpenApiParameter("limit", int),
            *FILTER_PARAMS,
        ],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request: Request) -> Response:
        query = request.query_params
        filters, rng = self.window(request)
        by = query.get("by", "user")
        order = query.get("order", "requests")
        rows = metrics.leaderboard(
            principal_of(request),
            filters,
            rng,
            by=by,
            order=order,
            kind=self.kind,
            limit=params.integer(query, "limit", default=10, maximum=100),
        )
        return Response(
            {
                "kind": self.kind,
                "by": by,
                "order": order,
                **self.range_out(rng),
                "rows": [
                    {
                        "name": r.name,
                        "requests": r.requests,
                        "errors": r.errors,
                        "input_tokens": r.input_tokens,
                        "output_tokens": r.output_tokens,
                        "cost_usd": _number(r.cost_usd),
                    }
                    for r in rows
                ],
            }
        )


class McpMetricsTimeseriesApi(MetricsTimeseriesApi):
    kind: ClassVar[Kind] = "mcp"


class McpMetricsDistributionApi(MetricsDistributionApi):
    kind: ClassVar[Kind] = "mcp"


class McpMetricsLeaderboardApi(MetricsLeaderboardApi):
    kind: ClassVar[Kind] = "mcp"
