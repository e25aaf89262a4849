#!/usr/bin/env python3
"""Benchmark the metrics page and the request log over 1,000,000 request records.

Seeds a dedicated PostgreSQL database (default `gw_bench_obs`, created if missing, migrated)
with `--rows` request records spread over `--days` days, 20 users in 5 teams, 3 virtual
accounts, metadata and a realistic mix (office-hours peaks, quieter weekends, a favourite
model per caller, 4 % errors, 60 % streamed), plus MCP tool calls (5 % as many). Raw rows go in
with COPY. The rollups are folded by `dataaccess.rollups.fold`, the code the log writer runs,
one day at a time; each day's folded rows are then COPYed, which is exactly what
`rollups.upsert` does to a table holding none of those keys (buckets never span two days), at
about 100 times the speed of its per-row `ON CONFLICT` statements. `--upsert` runs
`rollups.upsert` itself instead (the same result, some 15 minutes for 1,000,000 records).
Seeding is skipped when the database already holds exactly that data set (`--reseed` forces
it).

Then, for a tenant admin (all data) and a team member (own and team data under the default
rules), it times the median of `--runs` runs (after one warm-up) of:

- the metrics page's selectors (`dataaccess.metrics.dashboard`) for 1 h, 24 h, 7 d and 30 d,
  and the MCP tab for 24 h;
- the first page of the request log (`request_log_page`), a page 15 days deep (keyset), and
  first pages filtered by model and by user;
- the whole HTTP answer of `/monitor/metrics/?range=…` and `/monitor/requests/` (Django's test
  client in-process: URL routing, session, selectors, chart SVG and template rendering).

and prints a markdown table; a row over the budget (300 ms; `--budget-ms`) is marked and the
exit code is 1.

    .venv/bin/python bench/observability_bench.py                    # seed once, then measure
    .venv/bin/python bench/observability_bench.py --rows 100000      # a smaller data set
    .venv/bin/python bench/observability_bench.py --reseed --runs 9
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/gw_bench_obs"
BUDGET = {"ms": 300.0}  # --budget-ms
SEED = 20240601
TEAMS = ("payments", "search", "ml-platform", "support", "growth")
VAS = (("billing-bot", "payments"), ("ranker", "search"), ("helpdesk-bot", "support"))
MODELS = {  # requested model -> (provider account, $ per 1k input, $ per 1k output)
    "openai-main/gpt-4o": ("openai-main", 0.0025, 0.01),
    "openai-main/gpt-4o-mini": ("openai-main", 0.00015, 0.0006),
    "anthropic/claude-sonnet": ("anthropic", 0.003, 0.015),
    "anthropic/claude-haiku": ("anthropic", 0.0008, 0.004),
    "bedrock/llama-3-70b": ("bedrock", 0.00099, 0.00099),
    "openai-main/text-embedding-3-small": ("openai-main", 0.00002, 0.0),
}
APPS = ("checkout", "search-ui", "assistant", "ranking", "support-desk", "analytics")
ERRORS = ((429, "rate_limited", 0.02), (500, "upstream_error", 0.01), (400, "bad_request", 0.01))
MCP_TOOLS = (("github", "search_code"), ("github", "create_issue"), ("jira", "get_ticket"))
LOG_COLUMNS = (
    "id",
    "started_at",
    "endpoint",
    "requested_model",
    "provider_account",
    "provider_model",
    "status",
    "error_type",
    "streaming",
    "input_tokens",
    "output_tokens",
    "latency_ms",
    "ttft_ms",
    "cost_usd",
    "caller_type",
    "caller_id",
    "caller_name",
    "team_ids",
    "teams",
    "metadata",
)
MCP_COLUMNS = (
    "id",
    "started_at",
    "server",
    "tool",
    "status",
    "error",
    "latency_ms",
    "caller_type",
    "caller_id",
    "caller_name",
    "team_ids",
    "teams",
    "metadata",
)


def _log(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def _setup(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")
    sys.path.insert(0, str(ROOT))
    _create_database(database_url)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _create_database(url: str) -> None:
    """CREATE DATABASE when it is missing (connecting to the server's `postgres` database)."""
    import psycopg

    base, _, name = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if found is None:
            _log(f"creating database {name}")
            conn.execute(f'CREATE DATABASE "{name}"')


# --- the data set --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    kind: str  # user | virtualaccount
    id: int
    name: str
    team_ids: tuple[int, ...]
    team_names: tuple[str, ...]
    weight: float
    model: str
    app: str


def _people() -> tuple[list[Caller], dict[str, Any]]:
    """5 teams, 20 users (one tenant admin), 3 virtual accounts; idempotent."""
    from accounts.models import TENANT_ADMIN, User, VirtualAccount
    from teams.models import Team, TeamMembership

    teams = {name: Team.objects.get_or_create(name=name)[0] for name in TEAMS}
    rng = random.Random(SEED)  # noqa: S311 - a reproducible data set, not secrets
    callers: list[Caller] = []
    users = {}
    model_names = list(MODELS)
    for index in range(20):
        email = f"bench-user{index:02d}@example.com"
        user = User.objects.filter(email=email).first()
        if user is None:
            user = User.objects.create_user(email=email, password=None)
        if index == 0 and user.tenant_role_id != TENANT_ADMIN:
            user.tenant_role_id = TENANT_ADMIN
            user.save(update_fields=["tenant_role"])
        home = [TEAMS[index % len(TEAMS)]] + ([TEAMS[(index + 2) % 5]] if index % 4 == 3 else [])
        for name in home:
            TeamMembership.objects.get_or_create(team=teams[name], user=user, role="member")
        users[email] = user
        ids = tuple(sorted(teams[n].pk for n in home))
        callers.append(
            Caller(
                "user",
                user.pk,
                email,
                ids,
                tuple(t.name for t in sorted((teams[n] for n in home), key=lambda t: t.pk)),
                1 / (index + 1) ** 0.8,
                model_names[rng.randrange(5)],
                APPS[index % len(APPS)],
            )
        )
    for name, owner in VAS:
        account = VirtualAccount.objects.filter(name=name).first()
        if account is None:
            account = VirtualAccount.objects.create(
                name=name, owner_team=teams[owner], created_by="bench"
            )
        callers.append(
            Caller(
                "virtualaccount",
                account.pk,
                name,
                (teams[owner].pk,),
                (owner,),
                0.6,
                model_names[rng.randrange(5)],
                name,
            )
        )
    admin = users["bench-user00@example.com"]
    member = users["bench-user01@example.com"]  # a member of "search"
    return callers, {"admin": admin, "member": member}


def _day_weights(days: int, end: datetime) -> list[float]:
    weights = []
    for offset in range(days):
        day = end - timedelta(days=days - offset)
        weights.append(0.45 if day.weekday() >= 5 else 1.0)
    return weights


HOUR_WEIGHTS = [
    0.2 + 1.0 * math.exp(-(((h - 14) / 4.0) ** 2)) + 0.15 * math.exp(-(((h - 3) / 3.0) ** 2))
    for h in range(24)
]


def _records(
    callers: Sequence[Caller],
    day_start: datetime,
    count: int,
    rng: random.Random,
    until: datetime,
) -> Iterator[dict[str, Any]]:
    weights = [c.weight for c in callers]
    names = list(MODELS)
    span = min(24, math.ceil((until - day_start).total_seconds() / 3600))
    hour_weights = [HOUR_WEIGHTS[(day_start.hour + h) % 24] for h in range(span)]
    for _ in range(count):
        caller = rng.choices(callers, weights)[0]
        hour = rng.choices(range(span), hour_weights)[0]
        started = day_start + timedelta(
            hours=hour, seconds=rng.random() * 3600, microseconds=rng.randrange(1000)
        )
        if started >= until:  # the current hour: up to now, not beyond
            started = until - timedelta(seconds=rng.random() * 60)
        model = caller.model if rng.random() < 0.7 else names[rng.randrange(len(names))]
        account, price_in, price_out = MODELS[model]
        status, error_type = 200, ""
        roll = rng.random()
        threshold = 0.0
        for code, kind, share in ERRORS:
            threshold += share
            if roll < threshold:
                status, error_type = code, kind
                break
        embedding = "embedding" in model
        streaming = not embedding and status == 200 and rng.random() < 0.6
        tokens_in = int(rng.lognormvariate(6.0, 0.9))
        tokens_out = 0 if embedding or status != 200 else int(rng.lognormvariate(5.2, 0.8))
        latency = rng.lognormvariate(6.6, 0.7) if status != 400 else rng.uniform(2, 20)
        ttft = latency * rng.uniform(0.15, 0.45) if streaming else None
        if status == 200 and not streaming:
            ttft = latency * rng.uniform(0.9, 0.99)
        cost = (tokens_in * price_in + tokens_out * price_out) / 1000 if status == 200 else 0.0
        metadata = {"app": caller.app, "env": "prod" if rng.random() < 0.93 else "staging"}
        yield {
            "id": uuid.UUID(int=rng.getrandbits(128), version=4),
            "started_at": started,
            "endpoint": "embeddings" if embedding else "chat/completions",
            "requested_model": model,
            "provider_account": account,
            "provider_model": model.partition("/")[2],
            "status": status,
            "error_type": error_type,
            "streaming": streaming,
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "latency_ms": round(latency, 3),
            "ttft_ms": None if ttft is None else round(ttft, 3),
            "cost_usd": Decimal(f"{cost:.8f}"),
            "caller_type": caller.kind,
            "caller_id": caller.id,
            "caller_name": caller.name,
            "team_ids": "|" + "".join(f"{t}|" for t in caller.team_ids),
            "teams": list(caller.team_names),
            "metadata": metadata,
        }


def _mcp_records(
    callers: Sequence[Caller],
    day_start: datetime,
    count: int,
    rng: random.Random,
    until: datetime,
) -> Iterator[dict[str, Any]]:
    seconds = min(86400.0, (until - day_start).total_seconds())
    for _ in range(count):
        caller = rng.choices(callers, [c.weight for c in callers])[0]
        server, tool = MCP_TOOLS[rng.randrange(len(MCP_TOOLS))]
        failed = rng.random() < 0.05
        yield {
            "id": uuid.UUID(int=rng.getrandbits(128), version=4),
            "started_at": day_start + timedelta(seconds=rng.random() * seconds),
            "server": server,
            "tool": tool,
            "status": "error" if failed else "ok",
            "error": "JSON-RPC error -32603" if failed else "",
            "latency_ms": round(rng.lognormvariate(5.0, 0.8), 3),
            "caller_type": caller.kind,
            "caller_id": caller.id,
            "caller_name": caller.name,
            "team_ids": "|" + "".join(f"{t}|" for t in caller.team_ids),
            "teams": list(caller.team_names),
            "metadata": {},
        }


def _copy(table: str, columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        raw = cursor.cursor  # the psycopg cursor under Django's wrapper
        with raw.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(
                    [json.dumps(row[c]) if c in ("teams", "metadata") else row[c] for c in columns]
                )


def _load_rollups(folded: Iterable[dict[str, Any]], *, upsert: bool) -> None:
    """The folded rows into the rollup table: `rollups.upsert`, or COPY (see the docstring)."""
    from django.utils import timezone

    from dataaccess import rollups
    from dataaccess.models import Rollup

    if upsert:
        rollups.upsert(folded)
        return
    now = timezone.now()
    columns = [*rollups.KEY_FIELDS, *rollups.INFO_FIELDS, *rollups.SUM_FIELDS, "updated_at"]
    _copy(Rollup._meta.db_table, columns, ({**row, "updated_at": now} for row in folded))


def _compact() -> None:
    """Build the 6-hour rollups as the scheduled `rollup_compact_task` would."""
    from dataaccess.compaction import compact

    started = time.monotonic()
    periods = compact(max_periods=100_000)
    if periods:
        _log(f"compacted {periods} 6-hour period(s) in {time.monotonic() - started:.0f} s")


def _fingerprint(rows: int, days: int) -> str:
    return f"bench-obs rows={rows} days={days} seed={SEED} v2"


def seed(rows: int, days: int, *, force: bool, upsert: bool = False) -> dict[str, Any]:
    """Create the people and (unless already there) the records; returns the viewers."""
    from django.db import connection, transaction

    from dataaccess import rollups
    from dataaccess.models import JobState, Rollup
    from proxy.models import McpToolCall, RequestLog

    callers, viewers = _people()
    marker = JobState.objects.filter(name="bench-seed").first()
    wanted = _fingerprint(rows, days)
    if marker is not None and marker.last_error == wanted and not force:
        _log(f"data set present ({wanted}); use --reseed to rebuild it")
        _compact()
        return viewers
    _log(f"seeding {rows:,} request records over {days} days")
    with connection.cursor() as cursor:
        for model in (RequestLog, McpToolCall, Rollup):
            cursor.execute(f"TRUNCATE {model._meta.db_table}")
    JobState.objects.filter(name="bench-seed").delete()
    now = datetime.now(UTC)
    # Day chunks start on an hour so that no rollup bucket spans two chunks (see _load_rollups).
    end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    weights = _day_weights(days, end)
    total_weight = sum(weights)
    counts = [int(rows * w / total_weight) for w in weights]
    counts[-1] += rows - sum(counts)
    rng = random.Random(SEED)  # noqa: S311 - a reproducible data set, not secrets
    started = time.monotonic()
    for offset, count in enumerate(counts):
        day_start = end - timedelta(days=days - offset)
        until = min(day_start + timedelta(days=1), now)
        records = list(_records(callers, day_start, count, rng, until))
        calls = list(_mcp_records(callers, day_start, max(count // 20, 1), rng, until))
        with transaction.atomic():
            _copy(RequestLog._meta.db_table, LOG_COLUMNS, records)
            _copy(McpToolCall._meta.db_table, MCP_COLUMNS, calls)
            batch = [("request", r) for r in records] + [("mcp", c) for c in calls]
            _load_rollups(rollups.fold(batch).values(), upsert=upsert)
        done = sum(counts[: offset + 1])
        _log(f"  day {offset + 1}/{days}: {done:,} rows, {time.monotonic() - started:.0f} s")
    JobState.objects.filter(name="rollup-compact").delete()
    _compact()
    with connection.cursor() as cursor:
        for model in (RequestLog, McpToolCall, Rollup):
            cursor.execute(f"VACUUM ANALYZE {model._meta.db_table}")
    JobState.objects.create(name="bench-seed", last_error=wanted, last_count=rows)
    _log(
        f"seeded in {time.monotonic() - started:.0f} s: "
        f"{Rollup.objects.filter(granularity='minute').count():,} minute, "
        f"{Rollup.objects.filter(granularity='hour').count():,} hour and "
        f"{Rollup.objects.filter(granularity='6h').count():,} 6-hour rollup rows"
    )
    return viewers


# --- measuring -----------------------------------------------------------------------------------


@dataclass
class Result:
    viewer: str
    what: str
    median_ms: float
    p90_ms: float
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.median_ms <= BUDGET["ms"]


def _time(fn: Callable[[], Any], runs: int) -> tuple[float, float, Any]:
    out = fn()  # warm-up: caches, plans
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        out = fn()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    p90 = samples[min(len(samples) - 1, math.ceil(0.9 * len(samples)) - 1)]
    return statistics.median(samples), p90, out


def _measure_viewer(label: str, user: Any, runs: int) -> list[Result]:
    from django.test import Client

    from accounts.selectors import principal_for_user
    from dataaccess import metrics, selectors
    from dataaccess.params import RANGES
    from dataaccess.selectors import LogFilters

    principal = principal_for_user(user)
    now = _data_end()
    results = []

    def board(name: str, kind: metrics.Kind = "model") -> Callable[[], metrics.Dashboard]:
        rng = metrics.time_range(now - RANGES[name], now)
        return lambda: metrics.dashboard(principal, LogFilters(), rng, kind=kind)

    for name in ("1h", "24h", "7d", "30d"):
        median, p90, out = _time(board(name), runs)
        detail = f"{int(out.kpis['requests'] or 0):,} requests"
        results.append(Result(label, f"metrics selectors, {name}", median, p90, detail))
    median, p90, out = _time(board("24h", "mcp"), runs)
    detail = f"{int(out.kpis['requests'] or 0):,} calls"
    results.append(Result(label, "metrics selectors, MCP 24h", median, p90, detail))

    deep = selectors.request_log_page(principal, LogFilters(end=now - timedelta(days=15)), size=1)
    cursor = selectors._encode_cursor(deep.rows[0]) if deep.rows else ""
    pages = (
        ("request log, first page", LogFilters(), ""),
        ("request log, page 15 days deep", LogFilters(), cursor),
        ("request log, filtered by model", LogFilters(model="bedrock/llama-3-70b"), ""),
        ("request log, filtered by user", LogFilters(user="bench-user19@example.com"), ""),
    )

    def log_page(filters: LogFilters, position: str) -> Callable[[], selectors.LogPage]:
        return lambda: selectors.request_log_page(principal, filters, cursor=position)

    for what, filters, position in pages:
        median, p90, page = _time(log_page(filters, position), runs)
        results.append(Result(label, what, median, p90, f"{len(page.rows)} rows"))

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    pages_http: list[tuple[str, str, dict[str, str]]] = [
        (f"HTTP GET /monitor/metrics/ ({name})", "/monitor/metrics/", _window(now, RANGES[name]))
        for name in ("24h", "30d")
    ]
    pages_http.append(("HTTP GET /monitor/requests/", "/monitor/requests/", {}))

    def get(path: str, query: dict[str, str]) -> Callable[[], Any]:
        return lambda: client.get(path, query)

    for what, path, query in pages_http:
        median, p90, response = _time(get(path, query), runs)
        if response.status_code != 200:
            raise SystemExit(f"{path} answered {response.status_code}")
        results.append(Result(label, what, median, p90, f"{len(response.content):,} bytes"))
    return results


def _data_end() -> datetime:
    """Ranges end at the newest record (plus a minute), so a later run measures the same data."""
    from django.db.models import Max

    from proxy.models import RequestLog

    newest = RequestLog.objects.aggregate(at=Max("started_at"))["at"]
    if newest is None:
        raise SystemExit("no request records: run with --reseed")
    end: datetime = newest.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return end


def _window(end: datetime, span: timedelta) -> dict[str, str]:
    return {"range": "custom", "start": (end - span).isoformat(), "end": end.isoformat()}


def measure(viewers: dict[str, Any], runs: int) -> list[Result]:
    """Both viewers, every measurement."""
    return _measure_viewer("admin", viewers["admin"], runs) + _measure_viewer(
        "team member", viewers["member"], runs
    )


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = os.cpu_count()
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0]
    python = platform.python_version()
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{cpu}, {cores} cores{memory}; PostgreSQL {version}; Python {python}; "
        f"load average {load} (1/5/15 min) at the end of the run"
    )


def table(results: Sequence[Result], runs: int) -> str:
    lines = [
        f"| Viewer | Measurement | Median ms | p90 ms | Within {BUDGET['ms']:.0f} ms | |",
        "| --- | --- | ---: | ---: | :---: | --- |",
    ]
    for r in results:
        lines.append(
            f"| {r.viewer} | {r.what} | {r.median_ms:.1f} | {r.p90_ms:.1f} | "
            f"{'yes' if r.ok else '**NO**'} | {r.detail} |"
        )
    return "\n".join(lines) + f"\n\n(median and p90 of {runs} runs after one warm-up)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB))
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--reseed", action="store_true")
    parser.add_argument("--budget-ms", type=float, default=BUDGET["ms"])
    parser.add_argument("--upsert", action="store_true", help="load rollups with rollups.upsert")
    args = parser.parse_args(argv)
    if not args.database_url.startswith("postgres"):
        parser.error("the benchmark needs PostgreSQL (COPY and the production query plans)")
    BUDGET["ms"] = args.budget_ms
    _setup(args.database_url)
    viewers = seed(args.rows, args.days, force=args.reseed, upsert=args.upsert)
    results = measure(viewers, args.runs)
    print(f"Machine: {machine()}")  # noqa: T201 - the report
    print()  # noqa: T201
    print(table(results, args.runs))  # noqa: T201
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
