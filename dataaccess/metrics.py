"""Metrics for dashboards and the metrics API, read from the rollup tables only.

Every query starts from `selectors.rollup_queryset(viewer, ...)`, so the viewer's Data Access
rules (`metrics` data type) filter the rollup rows exactly as they filter raw rows: a chart, a
total or a leaderboard only ever sums rows the viewer may see.

Granularity. Ranges up to 6 hours read the minute rollups, up to 3 days the hour rollups, and
longer ones the 6-hour rollups (`dataaccess.compaction`) up to the compaction watermark and
hour rows after it. The range is widened to whole buckets of what it reads (a 24 h range
starting at 09:37 includes the 09:00 hour), and points are grouped into intervals
(`INTERVALS`, epoch-aligned, so days start at 00:00 UTC) chosen to give at most
`TARGET_POINTS` points unless the caller picks one (at most `MAX_POINTS`). On PostgreSQL the
queries run with JIT off (compiling cost more than the query) and a larger `work_mem` (so the
planner hashes the groups instead of sorting wide rows on disk).

Percentiles. Latency and time-to-first-token percentiles come from the additive histogram
columns (`h0..h12`, `t0..t12`; bucket upper bounds `LATENCY_BOUNDS_MS`, the last one open).
The percentile's rank is located in the cumulative counts, then interpolated linearly inside
that bucket, assuming values spread evenly within it. Error bound: the true percentile of the
recorded values lies in the same bucket, so the estimate is off by at most that bucket's width
(5 ms below 10 ms; at most 60 % of the bucket's upper bound up to 10 s, e.g. 1,500 ms in the
1-2.5 s bucket; 20 s in the 10-30 s bucket). Above 30 s only the bound is known: the answer is
30,000 ms, a lower bound.

Group-by. `model`, `provider_account`, `user`, `virtual_account`, `team`, `status` (ok, 4xx,
5xx), `error_type` and `metadata.<key>`; MCP adds `server` and `tool`. Rows without the
dimension (a virtual account's rows grouped by user, a missing metadata key) fall in `(none)`.
Team: a row carries every team of its caller, and counts once for **each** of them (as the
mirrored product's `Teams[]` column does), so team totals can add up to more than the overall
total; a row without team falls in `(none)`. Only rows the viewer may see are counted, and the
team names shown are those on those rows. Groups past the requested limit are summed into
`(other)` (for teams, a row in several such teams counts in `(other)` once per team).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from django.db import connection, transaction
from django.db.models import BigIntegerField, F, Func, QuerySet, Sum
from django.db.models.fields.json import KeyTextTransform

from accounts.policy import Principal
from dataaccess.compaction import compacted_until
from dataaccess.models import HISTOGRAM_FIELDS, LATENCY_BOUNDS_MS, TTFT_FIELDS, Rollup
from dataaccess.selectors import LogFilters, rollup_queryset
from gateway_project.errors import ValidationFailed
from teams.models import Team

Kind = Literal["model", "mcp"]
KINDS: tuple[Kind, ...] = ("model", "mcp")
MINUTE_RANGE_MAX = timedelta(hours=6)
HOUR_RANGE_MAX = timedelta(days=3)
BUCKET_SECONDS = {"minute": 60, "hour": 3600, "6h": 6 * 3600}
MAX_RANGE = timedelta(days=400)
INTERVALS = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400)
MAX_POINTS = 200
TARGET_POINTS = 96
NONE = "(none)"
OTHER = "(other)"
TOTAL = "all"

COUNT_METRICS = ("requests", "errors", "input_tokens", "output_tokens", "cost_usd")
RATIO_METRICS = ("error_rate", "latency_avg", "ttft_avg")
PERCENTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}
PERCENTILE_METRICS = tuple(f"{base}_{p}" for base in ("latency", "ttft") for p in PERCENTILES)
METRICS = COUNT_METRICS + RATIO_METRICS + PERCENTILE_METRICS
MCP_METRICS = (
    "requests",
    "errors",
    "error_rate",
    "latency_avg",
    *(f"latency_{p}" for p in PERCENTILES),
)
GROUP_BYS = (
    "model",
    "provider_account",
    "user",
    "virtual_account",
    "team",
    "status",
    "error_type",
)
MCP_GROUP_BYS = ("server", "tool", "user", "virtual_account", "team", "status", "error_type")
LEADERBOARD_BY = ("user", "virtual_account", "team", "model")
MCP_LEADERBOARD_BY = ("user", "virtual_account", "team", "server", "tool")
LEADERBOARD_ORDER = ("requests", "cost_usd")
METADATA_PREFIX = "metadata."

BASE_SUMS = (
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "latency_ms_sum",
    "ttft_ms_sum",
    "ttft_count",
)
ALL_SUMS = BASE_SUMS + HISTOGRAM_FIELDS + TTFT_FIELDS

Acc = dict[str, float]


class EpochBucket(Func):
    """The start of the `seconds`-long epoch-aligned interval holding a timestamp, in seconds."""

    output_field = BigIntegerField()
    template = "((EXTRACT(EPOCH FROM %(expressions)s)::bigint / %(seconds)s) * %(seconds)s)"
    sqlite_template = (
        "((CAST(ROUND((julianday(%(expressions)s) - 2440587.5) * 86400) AS INTEGER)"
        " / %(seconds)s) * %(seconds)s)"
    )

    def __init__(self, expression: Any, seconds: int) -> None:
        super().__init__(expression, seconds=int(seconds))

    def as_sqlite(self, compiler: Any, connection: Any, **extra_context: Any) -> Any:
        """SQLite has no EXTRACT(EPOCH ...): Julian days to Unix seconds, rounded."""
        return self.as_sql(compiler, connection, template=self.sqlite_template, **extra_context)


# --- ranges, intervals, percentiles -------------------------------------------------------------


@dataclass(frozen=True)
class TimeRange:
    """A dashboard's window; `granularity` says which rollups answer it."""

    start: datetime
    end: datetime

    @property
    def granularity(self) -> str:
        """The coarsest rollups that still draw this range well: minute, hour or 6h."""
        span = self.end - self.start
        if span <= MINUTE_RANGE_MAX:
            return "minute"
        return "hour" if span <= HOUR_RANGE_MAX else "6h"

    @property
    def bucket_seconds(self) -> int:
        return BUCKET_SECONDS[self.granularity]

    @property
    def aligned_start(self) -> datetime:
        """`start` rounded down to a whole rollup bucket."""
        return _floor(self.start, self.bucket_seconds)


def time_range(start: datetime, end: datetime) -> TimeRange:
    """A validated range (start before end, at most `MAX_RANGE` long)."""
    if start >= end:
        raise ValidationFailed.field("start", "must be before end")
    if end - start > MAX_RANGE:
        raise ValidationFailed.field("start", f"ranges are at most {MAX_RANGE.days} days")
    return TimeRange(start, end)


def _floor(moment: datetime, seconds: int) -> datetime:
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=UTC)


def interval_for(rng: TimeRange, requested: int | None = None) -> int:
    """The point spacing in seconds: `requested` when valid, else about `TARGET_POINTS` points."""
    span = (rng.end - rng.aligned_start).total_seconds()
    allowed = [i for i in INTERVALS if i % rng.bucket_seconds == 0]
    if requested is not None:
        if requested not in allowed:
            raise ValidationFailed.field(
                "interval",
                f"one of {', '.join(interval_label(i) for i in allowed)} for this range",
            )
        if span / requested > MAX_POINTS:
            raise ValidationFailed.field("interval", f"gives more than {MAX_POINTS} points")
        return requested
    for candidate in allowed:
        if span / candidate <= TARGET_POINTS:
            return candidate
    return allowed[-1]


def interval_label(seconds: int) -> str:
    """3600 -> '1h', 300 -> '5m', 86400 -> '1d'."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def percentile(counts: Sequence[float], q: float) -> float | None:
    """The q-quantile (0..1) of a histogram over `LATENCY_BOUNDS_MS`; None when empty.

    Linear interpolation inside the bucket holding the rank (see the module docstring for the
    error bound); the open last bucket answers its lower bound.
    """
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    cumulative = 0.0
    for index, count in enumerate(counts):
        if count > 0 and cumulative + count >= rank:
            lower = 0.0 if index == 0 else float(LATENCY_BOUNDS_MS[index - 1])
            if index >= len(LATENCY_BOUNDS_MS):
                return lower
            upper = float(LATENCY_BOUNDS_MS[index])
            return lower + (upper - lower) * max(rank - cumulative, 0.0) / count
        cumulative += count
    return float(LATENCY_BOUNDS_MS[-1])


def fields_for(metrics: Iterable[str]) -> tuple[str, ...]:
    """The rollup columns the metrics need."""
    wanted: set[str] = set()
    for metric in metrics:
        if metric.startswith("latency_p"):
            wanted.update(HISTOGRAM_FIELDS)
        elif metric.startswith("ttft_p"):
            wanted.update(TTFT_FIELDS)
        elif metric == "error_rate":
            wanted.update(("errors", "requests"))
        elif metric == "latency_avg":
            wanted.update(("latency_ms_sum", "requests"))
        elif metric == "ttft_avg":
            wanted.update(("ttft_ms_sum", "ttft_count"))
        else:
            wanted.add(metric)
    wanted.add("requests")  # groups are ranked by requests
    return tuple(f for f in ALL_SUMS if f in wanted)


def metric_value(metric: str, acc: Mapping[str, float]) -> float | None:
    """One metric from summed rollup columns (None where undefined: no requests)."""
    if metric in COUNT_METRICS:
        return acc.get(metric, 0.0)
    requests = acc.get("requests", 0.0)
    if metric == "error_rate":
        return acc.get("errors", 0.0) / requests if requests else None
    if metric == "latency_avg":
        return acc.get("latency_ms_sum", 0.0) / requests if requests else None
    if metric == "ttft_avg":
        count = acc.get("ttft_count", 0.0)
        return acc.get("ttft_ms_sum", 0.0) / count if count else None
    base, _, which = metric.rpartition("_")
    columns = HISTOGRAM_FIELDS if base == "latency" else TTFT_FIELDS
    return percentile([acc.get(c, 0.0) for c in columns], PERCENTILES[which])


def _add(target: Acc, row: Mapping[str, Any], fields: Sequence[str]) -> None:
    for name in fields:
        value = row[f"s_{name}"]
        if value:
            target[name] = target.get(name, 0.0) + value


def _merge(target: Acc, other: Mapping[str, float]) -> None:
    for name, value in other.items():
        target[name] = target.get(name, 0.0) + value


# --- group-by ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grouping:
    """How one group-by dimension reads rollup rows: SQL columns and the labels of a row."""

    name: str
    columns: tuple[str, ...]
    labels: Callable[[Mapping[str, Any]], list[str]]
    annotations: Mapping[str, Any] = field(default_factory=dict)


def _label(value: Any) -> list[str]:
    return [str(value)] if value not in (None, "") else [NONE]


def _caller_labels(caller_type: str) -> Callable[[Mapping[str, Any]], list[str]]:
    def labels(row: Mapping[str, Any]) -> list[str]:
        return [row["caller_name"]] if row["caller_type"] == caller_type else [NONE]

    return labels


def _team_labels(names: Mapping[int, str]) -> Callable[[Mapping[str, Any]], list[str]]:
    def labels(row: Mapping[str, Any]) -> list[str]:
        ids = [int(x) for x in str(row["team_ids"]).strip("|").split("|") if x.isdigit()]
        return [names.get(i, f"team #{i}") for i in ids] or [NONE]

    return labels


def validate_group_by(group_by: str, kind: Kind = "model") -> str:
    """`group_by` when valid for `kind` ('' means no grouping), else a field error."""
    if not group_by:
        return ""
    allowed = GROUP_BYS if kind == "model" else MCP_GROUP_BYS
    if group_by.startswith(METADATA_PREFIX):
        key = group_by.removeprefix(METADATA_PREFIX)
        if not valid_metadata_key(key):
            raise ValidationFailed.field("group_by", "metadata.<key> with a key of [A-Za-z0-9_.-]")
        return group_by
    if group_by not in allowed:
        raise ValidationFailed.field("group_by", f"one of {', '.join(allowed)} or metadata.<key>")
    return group_by


def valid_metadata_key(key: str) -> bool:
    """Keys are short identifiers; `__` would be read as an ORM path."""
    return (
        0 < len(key) <= 64
        and "__" not in key
        and all(c.isalnum() or c in "_.-" for c in key)
        and key.isascii()
    )


def grouping(group_by: str, kind: Kind = "model") -> Grouping | None:
    """The Grouping for a validated `group_by` ('' -> None)."""
    group_by = validate_group_by(group_by, kind)
    if not group_by:
        return None
    if group_by.startswith(METADATA_PREFIX):
        key = group_by.removeprefix(METADATA_PREFIX)
        return Grouping(
            group_by,
            ("g_meta",),
            lambda row: _label(row["g_meta"]),
            {"g_meta": KeyTextTransform(key, "metadata")},
        )
    simple = {
        "model": "model",
        "tool": "model",
        "provider_account": "provider_account",
        "status": "status_class",
        "error_type": "error_type",
    }
    if group_by in simple:
        column = simple[group_by]
        return Grouping(group_by, (column,), lambda row: _label(row[column]))
    if group_by == "server":
        return Grouping(group_by, ("model",), lambda row: [str(row["model"]).partition(".")[0]])
    if group_by in ("user", "virtual_account"):
        caller_type = "user" if group_by == "user" else "virtualaccount"
        return Grouping(group_by, ("caller_type", "caller_name"), _caller_labels(caller_type))
    names = dict(Team.objects.values_list("id", "name"))
    return Grouping(group_by, ("team_ids",), _team_labels(names))


# --- the aggregation core ------------------------------------------------------------------------


def _base(viewer: Principal, filters: LogFilters, rng: TimeRange, kind: Kind) -> QuerySet[Rollup]:
    """The visible rollup rows of the range: one granularity, or 6-hour rows then hour rows."""
    start, end = rng.aligned_start, rng.end
    if rng.granularity != "6h":
        window = replace(filters, start=start, end=end)
        return rollup_queryset(viewer, window, granularity=rng.granularity, kind=kind)
    until = compacted_until()
    split = min(max(until, start), end) if until is not None else start
    parts = []
    if split > start:
        compact = replace(filters, start=start, end=split)
        parts.append(rollup_queryset(viewer, compact, granularity="6h", kind=kind))
    if split < end:
        recent = replace(filters, start=split, end=end)
        parts.append(rollup_queryset(viewer, recent, granularity="hour", kind=kind))
    qs = parts[0]
    for part in parts[1:]:
        qs = qs | part  # one query: WHERE (6h rows ...) OR (hour rows ...)
    return qs


@contextmanager
def _analytics() -> Iterator[None]:
    """PostgreSQL: no JIT and room to hash groups, for this transaction only."""
    if connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")
        cursor.execute("SET LOCAL work_mem = '64MB'")
        yield


def _rows(
    base: QuerySet[Rollup],
    fields: Sequence[str],
    *,
    columns: Sequence[str] = (),
    annotations: Mapping[str, Any] | None = None,
    interval: int | None = None,
    only_errors: bool = False,
) -> list[dict[str, Any]]:
    qs = base
    if only_errors:
        qs = qs.filter(errors__gt=0)
    group = list(columns)
    extra = dict(annotations or {})
    if interval is not None:
        extra["t"] = EpochBucket(F("bucket"), interval)
        group.insert(0, "t")
    if extra:
        qs = qs.annotate(**extra)
    sums = {f"s_{name}": Sum(name) for name in fields}
    with _analytics():
        if not group:
            return [qs.aggregate(**sums)]
        rows: list[dict[str, Any]] = list(qs.values(*group).annotate(**sums).order_by())
    return rows


@dataclass(frozen=True)
class Series:
    """One line of a chart: a value per interval, and the value over the whole range."""

    name: str
    values: list[float | None]
    total: float | None


@dataclass(frozen=True)
class TimeSeries:
    """A metric over time, one series per group (or one, `all`, ungrouped)."""

    metric: str
    group_by: str
    granularity: str
    interval: int
    times: list[datetime]
    series: list[Series]


def _times(rng: TimeRange, interval: int) -> list[datetime]:
    first = int(_floor(rng.aligned_start, interval).timestamp())
    last = rng.end.timestamp()
    return [datetime.fromtimestamp(t, tz=UTC) for t in range(first, math.ceil(last), interval)]


def _rank(groups: Mapping[str, Acc], limit: int) -> tuple[list[str], list[str]]:
    order = sorted(groups, key=lambda g: (-groups[g].get("requests", 0.0), g == NONE, g))
    return order[:limit], order[limit:]


def _series_set(
    metrics: Sequence[str],
    cells: Mapping[str, Mapping[int, Acc]],
    totals: Mapping[str, Acc],
    times: Sequence[datetime],
    limit: int,
) -> dict[str, list[Series]]:
    """Series per metric from per-(group, time) sums; groups past `limit` become `(other)`."""
    keep, rest = _rank(totals, limit)
    merged_cells: dict[str, dict[int, Acc]] = {g: dict(cells[g]) for g in keep}
    merged_totals: dict[str, Acc] = {g: totals[g] for g in keep}
    if rest:
        other_cells: dict[int, Acc] = defaultdict(dict)
        other_total: Acc = {}
        for g in rest:
            for t, acc in cells[g].items():
                _merge(other_cells[t], acc)
            _merge(other_total, totals[g])
        merged_cells[OTHER] = dict(other_cells)
        merged_totals[OTHER] = other_total
    stamps = [int(t.timestamp()) for t in times]
    out: dict[str, list[Series]] = {}
    for metric in metrics:
        out[metric] = [
            Series(
                name,
                [
                    metric_value(metric, merged_cells[name][s])
                    if s in merged_cells[name]
                    else (0.0 if metric in COUNT_METRICS else None)
                    for s in stamps
                ],
                metric_value(metric, merged_totals[name]),
            )
            for name in merged_cells
        ]
    return out


def _collect(
    rows: Iterable[Mapping[str, Any]], fields: Sequence[str], grouper: Grouping | None
) -> tuple[dict[str, dict[int, Acc]], dict[str, Acc]]:
    cells: dict[str, dict[int, Acc]] = defaultdict(lambda: defaultdict(dict))
    totals: dict[str, Acc] = defaultdict(dict)
    for row in rows:
        labels = grouper.labels(row) if grouper is not None else [TOTAL]
        t = int(row["t"])
        for label in labels:
            _add(cells[label][t], row, fields)
            _add(totals[label], row, fields)
    return cells, totals


def validate_metric(metric: str, kind: Kind = "model") -> str:
    """`metric` when valid for `kind`, else a field error naming `metric`."""
    allowed = METRICS if kind == "model" else MCP_METRICS
    if metric not in allowed:
        raise ValidationFailed.field("metric", f"one of {', '.join(allowed)}")
    return metric


def timeseries(
    viewer: Principal,
    filters: LogFilters,
    rng: TimeRange,
    *,
    metric: str,
    group_by: str = "",
    interval: int | None = None,
    kind: Kind = "model",
    limit: int = 10,
) -> TimeSeries:
    """One metric over time, optionally per group (top `limit` groups by requests)."""
    validate_metric(metric, kind)
    grouper = grouping(group_by, kind)
    step = interval_for(rng, interval)
    fields = fields_for([metric])
    rows = _rows(
        _base(viewer, filters, rng, kind),
        fields,
        columns=grouper.columns if grouper else (),
        annotations=grouper.annotations if grouper else None,
        interval=step,
    )
    cells, totals = _collect(rows, fields, grouper)
    if grouper is None:  # one series, even when it is all zeros
        cells.setdefault(TOTAL, {})
        totals.setdefault(TOTAL, {})
    times = _times(rng, step)
    series = _series_set([metric], cells, totals, times, limit)[metric]
    return TimeSeries(metric, group_by, rng.granularity, step, times, series)


@dataclass(frozen=True)
class GroupValue:
    """A group's value over the whole range, with its request count."""

    group: str
    value: float | None
    requests: int


@dataclass(frozen=True)
class Distribution:
    metric: str
    group_by: str
    total: float | None
    groups: list[GroupValue]


def distribution(
    viewer: Principal,
    filters: LogFilters,
    rng: TimeRange,
    *,
    metric: str,
    group_by: str,
    kind: Kind = "model",
    limit: int = 50,
) -> Distribution:
    """One metric per group over the whole range (and over all visible rows)."""
    validate_metric(metric, kind)
    if not group_by:
        raise ValidationFailed.field("group_by", "required")
    grouper = grouping(group_by, kind)
    assert grouper is not None  # noqa: S101 - group_by is not empty
    fields = fields_for([metric])
    rows = _rows(
        _base(viewer, filters, rng, kind),
        fields,
        columns=grouper.columns,
        annotations=grouper.annotations,
    )
    totals: dict[str, Acc] = defaultdict(dict)
    overall: Acc = {}
    for row in rows:
        _add(overall, row, fields)
        for label in grouper.labels(row):
            _add(totals[label], row, fields)
    order = sorted(
        totals,
        key=lambda g: (-(metric_value(metric, totals[g]) or 0.0), g == NONE, g),
    )[:limit]
    groups = [
        GroupValue(g, metric_value(metric, totals[g]), int(totals[g].get("requests", 0)))
        for g in order
    ]
    return Distribution(metric, group_by, metric_value(metric, overall), groups)


@dataclass(frozen=True)
class LeaderRow:
    """One line of a leaderboard."""

    name: str
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    cost_usd: float


LEADER_FIELDS = ("requests", "errors", "input_tokens", "output_tokens", "cost_usd")


def _leader_rows(totals: Mapping[str, Acc], order: str, limit: int) -> list[LeaderRow]:
    names = [n for n in totals if n != NONE]
    names.sort(key=lambda n: (-totals[n].get(order, 0.0), -totals[n].get("requests", 0.0), n))
    return [
        LeaderRow(
            n,
            int(totals[n].get("requests", 0)),
            int(totals[n].get("errors", 0)),
            int(totals[n].get("input_tokens", 0)),
            int(totals[n].get("output_tokens", 0)),
            float(totals[n].get("cost_usd", 0.0)),
        )
        for n in names[:limit]
    ]


def validate_leaderboard(by: str, order: str, kind: Kind = "model") -> None:
    """Field errors naming `by` or `order`."""
    allowed = LEADERBOARD_BY if kind == "model" else MCP_LEADERBOARD_BY
    if by not in allowed:
        raise ValidationFailed.field("by", f"one of {', '.join(allowed)}")
    if order not in LEADERBOARD_ORDER:
        raise ValidationFailed.field("order", f"one of {', '.join(LEADERBOARD_ORDER)}")


def leaderboard(
    viewer: Principal,
    filters: LogFilters,
    rng: TimeRange,
    *,
    by: str,
    order: str = "requests",
    kind: Kind = "model",
    limit: int = 10,
) -> list[LeaderRow]:
    """Top callers, teams, models (or MCP servers and tools) by requests or cost."""
    validate_leaderboard(by, order, kind)
    grouper = grouping(by, kind)
    assert grouper is not None  # noqa: S101 - `by` is never empty
    rows = _rows(_base(viewer, filters, rng, kind), LEADER_FIELDS, columns=grouper.columns)
    totals: dict[str, Acc] = defaultdict(dict)
    for row in rows:
        for label in grouper.labels(row):
            _add(totals[label], row, LEADER_FIELDS)
    return _leader_rows(totals, order, limit)


# --- the metrics page: everything in a few scans ------------------------------------------------


@dataclass(frozen=True)
class GroupSummary:
    """A row of the page's per-group table."""

    name: str
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_p50: float | None
    latency_p99: float | None


@dataclass(frozen=True)
class Dashboard:
    """Everything the metrics page draws for one kind (model requests or MCP tool calls)."""

    kind: Kind
    range: TimeRange
    interval: int
    group_by: str
    times: list[datetime]
    kpis: dict[str, float | None]
    requests: list[Series]
    cost: list[Series]
    errors_by_type: list[Series]
    tokens: list[Series]
    latency: list[Series]
    ttft: list[Series]
    groups: list[GroupSummary]
    leaderboards: dict[str, list[LeaderRow]]


def _summary(name: str, acc: Acc) -> GroupSummary:
    return GroupSummary(
        name,
        int(acc.get("requests", 0)),
        int(acc.get("errors", 0)),
        int(acc.get("input_tokens", 0)),
        int(acc.get("output_tokens", 0)),
        float(acc.get("cost_usd", 0.0)),
        metric_value("latency_p50", acc),
        metric_value("latency_p99", acc),
    )


def dashboard(
    viewer: Principal,
    filters: LogFilters,
    rng: TimeRange,
    *,
    group_by: str = "",
    kind: Kind = "model",
    limit: int = 8,
    top: int = 10,
) -> Dashboard:
    """The metrics page in two scans of the visible rollups (see the README's benchmark).

    1. per (interval, group, error type): every sum and both histograms -> the series by
       group, errors by type, tokens, latency and TTFT percentiles, the KPIs and the table
       (the SQL rows partition the data, so overall sums add them up without double counting
       rows that a team grouping counts once per team);
    2. per (caller, teams, model) -> the leaderboards of users, teams and models (or tools).
    """
    grouper = grouping(group_by or ("model" if kind == "model" else "tool"), kind)
    assert grouper is not None  # noqa: S101 - a default dimension is always set
    step = interval_for(rng, None)
    base = _base(viewer, filters, rng, kind)
    fields = ALL_SUMS if kind == "model" else (*BASE_SUMS[:2], "latency_ms_sum", *HISTOGRAM_FIELDS)
    columns = tuple(dict.fromkeys((*grouper.columns, "error_type")))
    rows = _rows(base, fields, columns=columns, annotations=grouper.annotations, interval=step)
    cells, totals = _collect(rows, fields, grouper)
    per_time: dict[int, Acc] = defaultdict(dict)
    error_cells: dict[str, dict[int, Acc]] = defaultdict(lambda: defaultdict(dict))
    error_totals: dict[str, Acc] = defaultdict(dict)
    error_fields = ("errors",)
    for row in rows:
        t = int(row["t"])
        _add(per_time[t], row, fields)
        if row["s_errors"]:
            label = row["error_type"] or NONE
            _add(error_cells[label][t], row, error_fields)
            _add(error_totals[label], row, error_fields)
    overall: Acc = {}
    for acc in per_time.values():
        _merge(overall, acc)
    times = _times(rng, step)
    by_group = _series_set(("requests", "cost_usd"), cells, totals, times, limit)
    whole = {TOTAL: per_time}
    whole_totals = {TOTAL: overall}
    latency = _series_set(
        ("latency_p50", "latency_p90", "latency_p99"), whole, whole_totals, times, 1
    )
    ttft = _series_set(("ttft_p50", "ttft_p90", "ttft_p99"), whole, whole_totals, times, 1)
    tokens = _series_set(("input_tokens", "output_tokens"), whole, whole_totals, times, 1)
    for acc in error_totals.values():
        acc["requests"] = acc.get("errors", 0.0)  # rank error types by their errors
    errors = _series_set(error_fields, error_cells, error_totals, times, limit)["errors"]

    boards = ("user", "team", "model") if kind == "model" else ("user", "team", "tool")
    leader_columns = ("caller_type", "caller_name", "team_ids", "model")
    leader_rows = list(_rows(base, LEADER_FIELDS, columns=leader_columns))
    leaderboards: dict[str, list[LeaderRow]] = {}
    for by in boards:
        board = grouping(by, kind)
        assert board is not None  # noqa: S101
        board_totals: dict[str, Acc] = defaultdict(dict)
        for row in leader_rows:
            for label in board.labels(row):
                _add(board_totals[label], row, LEADER_FIELDS)
        leaderboards[by] = _leader_rows(board_totals, "requests", top)

    kpis: dict[str, float | None] = {
        m: metric_value(m, overall)
        for m in (
            "requests",
            "errors",
            "error_rate",
            "input_tokens",
            "output_tokens",
            "cost_usd",
            "latency_p50",
            "latency_p99",
            "ttft_p50",
        )
    }
    keep, _rest = _rank(totals, 50)
    return Dashboard(
        kind=kind,
        range=rng,
        interval=step,
        group_by=grouper.name,
        times=times,
        kpis=kpis,
        requests=by_group["requests"],
        cost=by_group["cost_usd"],
        errors_by_type=errors,
        tokens=[
            Series("input", tokens["input_tokens"][0].values, tokens["input_tokens"][0].total),
            Series("output", tokens["output_tokens"][0].values, tokens["output_tokens"][0].total),
        ]
        if tokens["input_tokens"]
        else [],
        latency=[
            Series(m.removeprefix("latency_"), s[0].values, s[0].total)
            for m, s in latency.items()
            if s
        ],
        ttft=[
            Series(m.removeprefix("ttft_"), s[0].values, s[0].total) for m, s in ttft.items() if s
        ],
        groups=[_summary(g, totals[g]) for g in keep],
        leaderboards=leaderboards,
    )
