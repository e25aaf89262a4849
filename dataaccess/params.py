"""Query parameters of the request-log and metrics pages and APIs, parsed in one place.

The console and the API read the same names (`start`, `end`, `range`, `model`, ...) and raise
`ValidationFailed` naming the parameter at fault, which the API answers as a 400 with
`fields` and the console shows next to the filter.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone

from dataaccess.metrics import (
    INTERVALS,
    KINDS,
    Kind,
    TimeRange,
    interval_label,
    time_range,
    valid_metadata_key,
)
from dataaccess.selectors import PAGE_SIZE, LogFilters, McpFilters
from gateway_project.errors import ValidationFailed

RANGES: dict[str, timedelta] = {
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
DEFAULT_RANGE = "24h"
MAX_PAGE_SIZE = 500
MAX_TEXT = 300
TEXT_FILTERS = (
    "model",
    "provider_account",
    "user",
    "virtual_account",
    "team",
    "error_type",
    "metadata_value",
)
MCP_STATUSES = ("ok", "error", "denied")

Params = Mapping[str, Any]


def _text(params: Params, name: str) -> str:
    value = str(params.get(name) or "").strip()
    if len(value) > MAX_TEXT:
        raise ValidationFailed.field(name, f"at most {MAX_TEXT} characters")
    return value


def parse_time(name: str, value: str) -> datetime:
    """An ISO 8601 date-time; without an offset it is UTC."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise ValidationFailed.field(
            name, "an ISO 8601 date-time, e.g. 2025-01-31T12:00:00Z"
        ) from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def window(
    params: Params, *, default_range: str | None = DEFAULT_RANGE, now: datetime | None = None
) -> tuple[datetime | None, datetime | None, str]:
    """(start, end, range name) from `range` (15m .. 30d, custom) or `start`/`end`.

    Without any of them: the last `default_range`, or no bound at all when it is None.
    """
    now = now or timezone.now()
    name = _text(params, "range")
    start_raw, end_raw = _text(params, "start"), _text(params, "end")
    if name and name != "custom":
        if name not in RANGES:
            raise ValidationFailed.field("range", f"one of {', '.join(RANGES)} or custom")
        return now - RANGES[name], now, name
    start = parse_time("start", start_raw) if start_raw else None
    end = parse_time("end", end_raw) if end_raw else None
    if start is None and end is None and not name:
        if default_range is None:
            return None, None, ""
        return now - RANGES[default_range], now, default_range
    if start is not None and end is not None and start >= end:
        raise ValidationFailed.field("start", "must be before end")
    if default_range is not None:
        end = end or now
        start = start or end - RANGES[default_range]
    return start, end, "custom"


def _status(params: Params) -> str:
    status = _text(params, "status")
    if (
        status
        and status not in ("ok", "4xx", "5xx")
        and not (status.isdigit() and 100 <= int(status) <= 599)
    ):
        raise ValidationFailed.field("status", "ok, 4xx, 5xx or an HTTP status code")
    return status


def _metadata_key(params: Params) -> str:
    key = _text(params, "metadata_key")
    if key and not valid_metadata_key(key):
        raise ValidationFailed.field("metadata_key", "letters, digits, '_', '.' and '-' only")
    if _text(params, "metadata_value") and not key:
        raise ValidationFailed.field("metadata_key", "required with metadata_value")
    return key


def log_filters(
    params: Params, *, default_range: str | None = None, now: datetime | None = None
) -> LogFilters:
    """The request-log filters (no time bound unless given, or `default_range`)."""
    start, end, _name = window(params, default_range=default_range, now=now)
    texts = {name: _text(params, name) for name in TEXT_FILTERS}
    return LogFilters(
        start=start,
        end=end,
        status=_status(params),
        metadata_key=_metadata_key(params),
        **texts,
    )


def metric_filters(params: Params, *, now: datetime | None = None) -> tuple[LogFilters, TimeRange]:
    """Filters and a validated time range (default: the last 24 h) for metrics."""
    filters = log_filters(params, default_range=DEFAULT_RANGE, now=now)
    if filters.status.isdigit():
        raise ValidationFailed.field("status", "metrics group by ok, 4xx and 5xx")
    assert filters.start is not None  # noqa: S101 - a default range always applies
    assert filters.end is not None  # noqa: S101
    return filters, time_range(filters.start, filters.end)


def mcp_filters(params: Params, *, now: datetime | None = None) -> McpFilters:
    """The MCP tool-call list's filters."""
    start, end, _name = window(params, default_range=None, now=now)
    status = _text(params, "status")
    if status and status not in MCP_STATUSES:
        raise ValidationFailed.field("status", f"one of {', '.join(MCP_STATUSES)}")
    return McpFilters(
        start=start,
        end=end,
        server=_text(params, "server"),
        tool=_text(params, "tool"),
        user=_text(params, "user"),
        virtual_account=_text(params, "virtual_account"),
        team=_text(params, "team"),
        status=status,
    )


def integer(
    params: Params, name: str, *, default: int, minimum: int = 1, maximum: int = MAX_PAGE_SIZE
) -> int:
    """A bounded integer parameter."""
    raw = _text(params, name)
    if not raw:
        return default
    if not raw.isdigit() or not minimum <= int(raw) <= maximum:
        raise ValidationFailed.field(name, f"a whole number from {minimum} to {maximum}")
    return int(raw)


def page_size(params: Params) -> int:
    return integer(params, "page_size", default=PAGE_SIZE)


def interval(params: Params) -> int | None:
    """`interval` as seconds: `5m`, `1h`, `1d` ... or a number of seconds; None when absent."""
    raw = _text(params, "interval")
    if not raw:
        return None
    labels = {interval_label(i): i for i in INTERVALS}
    if raw in labels:
        return labels[raw]
    if raw.isdigit() and int(raw) in INTERVALS:
        return int(raw)
    raise ValidationFailed.field("interval", f"one of {', '.join(labels)}")


def kind(params: Params, default: Kind = "model") -> Kind:
    raw = _text(params, "kind") or default
    for known in KINDS:
        if raw == known:
            return known
    raise ValidationFailed.field("kind", "model or mcp")
