"""Metrics from rollups: the rule matrix on chart totals, percentiles, group-by, compaction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from dataaccess import compaction, metrics, services
from dataaccess.metrics import percentile
from dataaccess.models import LATENCY_BOUNDS_MS, Rollup
from dataaccess.selectors import LogFilters
from proxy.logwriter import _insert
from teams.models import TeamMembership
from tests.dataaccess.conftest import CLAUDE, GPT, VISIBLE, World, log_record

pytestmark = pytest.mark.django_db


def last(hours: float = 24) -> metrics.TimeRange:
    now = timezone.now()
    return metrics.time_range(now - timedelta(hours=hours), now)


def board_totals(world: World, who: str, **kwargs: Any) -> dict[str, Any]:
    board = metrics.dashboard(world.principal(who), LogFilters(), last(), **kwargs)
    return board.kpis


# --- the rule matrix on charts ----------------------------------------------------------------


@pytest.mark.parametrize("who", sorted(VISIBLE))
def test_chart_totals_are_exactly_the_visible_rows(world, who):
    rows = VISIBLE[who]
    kpis = board_totals(world, who)
    assert kpis["requests"] == len(rows)
    assert kpis["input_tokens"] == sum(rows)
    assert kpis["output_tokens"] == 2 * sum(rows)
    assert kpis["cost_usd"] == pytest.approx(sum(rows) / 1000)
    series = metrics.timeseries(
        world.principal(who), LogFilters(), last(), metric="input_tokens", interval=3600
    )
    assert sum(v or 0 for v in series.series[0].values) == sum(rows)
    assert series.series[0].total == sum(rows)


@pytest.mark.parametrize("who", sorted(VISIBLE))
def test_leaderboards_only_rank_visible_callers(world, who):
    board = metrics.dashboard(world.principal(who), LogFilters(), last())
    seen = {r.name: r.requests for r in board.leaderboards["user"]}
    expected_users = {
        "admin": {"alice", "bob", "carol", "erin"},
        "alice": {"alice", "erin"},
        "bob": {"bob", "erin"},
        "carol": {"carol"},
        "dave": set(),
        "erin": {"alice", "bob", "erin"},
        "billing_bot": set(),
    }[who]
    assert seen == {f"{name}@example.com": 1 for name in expected_users}
    models = {r.name: r.input_tokens for r in board.leaderboards["model"]}
    visible = VISIBLE[who]
    expected_models = {
        GPT: sum(t for t in visible if t in (1, 10, 100, 10000)),
        CLAUDE: sum(t for t in visible if t in (1000, 100000)),
    }
    assert models == {k: v for k, v in expected_models.items() if v}


def test_minute_and_hour_rollups_agree(world):
    viewer = world.principal("erin")
    minute = metrics.dashboard(viewer, LogFilters(), last(1))
    hour = metrics.dashboard(viewer, LogFilters(), last(24))
    assert minute.range.granularity == "minute"
    assert hour.range.granularity == "hour"
    assert minute.kpis == hour.kpis
    assert minute.kpis["input_tokens"] == 111011


def test_totals_follow_rule_and_membership_changes(world):
    admin = world.principal("admin")
    assert board_totals(world, "dave")["input_tokens"] == 0
    services.data_access_config_put(
        actor=admin,
        rules=[
            *services.default_rules(),
            {
                "id": "auditors-see-app-rows",
                "subjects": ["team:finance-auditors"],
                "scope": "all_data",
                "data_types": ["metrics"],
                "filters": [
                    {"field": "metadata", "key": "app", "value": ["billing-bot", "research"]}
                ],
            },
        ],
    )
    assert board_totals(world, "dave")["input_tokens"] == 10 + 1000 + 100000
    TeamMembership.objects.create(team=world.ml, user=world.carol, role="member")
    assert board_totals(world, "carol")["input_tokens"] == 100 + 10 + 10000 + 100000
    TeamMembership.objects.filter(team=world.pay, user=world.alice).delete()
    assert board_totals(world, "alice")["input_tokens"] == 1
    metrics_only = [
        {**r, "data_types": ["traces"]} if r["id"] == "default-everyone-own-data" else r
        for r in services.default_rules()
    ]
    services.data_access_config_put(actor=admin, rules=metrics_only)
    assert board_totals(world, "alice")["input_tokens"] == 0  # own data: logs, no longer charts


def test_virtual_accounts_read_metrics_only_when_a_rule_names_them(world):
    assert board_totals(world, "billing_bot")["requests"] == 0
    services.data_access_config_put(
        actor=world.principal("admin"),
        rules=[
            *services.default_rules(),
            {"id": "bots-own", "subjects": ["virtualaccount:billing-bot"], "scope": "own_data"},
        ],
    )
    assert board_totals(world, "billing_bot")["input_tokens"] == 1000


# --- group-by ----------------------------------------------------------------------------------


def test_group_by_team_counts_a_row_once_per_visible_team(world):
    result = metrics.distribution(
        world.principal("erin"), LogFilters(), last(), metric="input_tokens", group_by="team"
    )
    assert {g.group: g.value for g in result.groups} == {
        "payments": 1 + 1000 + 10000,
        "ml": 10 + 10000 + 100000,
    }
    assert result.total == 111011  # less than the sum of the teams: erin's row is in both


def test_group_by_team_for_admin_includes_rows_without_team(world):
    result = metrics.distribution(
        world.principal("admin"), LogFilters(), last(), metric="requests", group_by="team"
    )
    assert {g.group: g.value for g in result.groups} == {"payments": 3, "ml": 3, "(none)": 1}
    board = metrics.dashboard(world.principal("admin"), LogFilters(), last(), group_by="team")
    assert board.kpis["requests"] == 6  # the overall total still counts each row once
    assert sum(s.total or 0 for s in board.requests) == 7


def test_group_by_metadata_key(world):
    result = metrics.distribution(
        world.principal("admin"), LogFilters(), last(), metric="requests", group_by="metadata.app"
    )
    assert {g.group: g.value for g in result.groups} == {
        "checkout": 2,
        "research": 2,
        "billing-bot": 1,
        "(none)": 1,
    }


@pytest.mark.parametrize(
    ("group_by", "expected"),
    [
        ("model", {GPT: 4, CLAUDE: 2}),
        ("provider_account", {"openai-main": 4, "anthropic": 2}),
        (
            "user",
            {f"{n}@example.com": 1 for n in ("alice", "bob", "carol", "erin")} | {"(none)": 2},
        ),
        ("virtual_account", {"billing-bot": 1, "research-bot": 1, "(none)": 4}),
        ("status", {"ok": 4, "4xx": 1, "5xx": 1}),
        ("error_type", {"(none)": 4, "upstream_error": 1, "rate_limited": 1}),
    ],
)
def test_group_by_dimensions(world, group_by, expected):
    result = metrics.distribution(
        world.principal("admin"), LogFilters(), last(), metric="requests", group_by=group_by
    )
    assert {g.group: g.value for g in result.groups} == expected


def test_timeseries_groups_past_the_limit_are_other(world):
    result = metrics.timeseries(
        world.principal("admin"),
        LogFilters(),
        last(),
        metric="requests",
        group_by="metadata.app",
        limit=2,
    )
    assert [s.name for s in result.series] == ["checkout", "research", "(other)"]
    assert [s.total for s in result.series] == [2, 2, 2]


def test_filters_apply_to_metrics(world):
    viewer = world.principal("admin")
    cases = {
        LogFilters(model=CLAUDE): 101000,
        LogFilters(team="payments"): 11001,
        LogFilters(user="ALICE@example.com"): 1,
        LogFilters(virtual_account="billing-bot"): 1000,
        LogFilters(status="5xx"): 100,
        LogFilters(metadata_key="app", metadata_value="research"): 100010,
        LogFilters(error_type="rate_limited"): 1000,
    }
    for filters, tokens in cases.items():
        kpis = metrics.dashboard(viewer, filters, last()).kpis
        assert kpis["input_tokens"] == tokens, filters


# --- percentiles -------------------------------------------------------------------------------


def test_percentile_interpolates_inside_the_bucket():
    counts = [0] * (len(LATENCY_BOUNDS_MS) + 1)
    counts[4] = 10  # ten values in (50, 100]
    assert percentile(counts, 0.5) == 75.0
    assert percentile(counts, 0.1) == 55.0
    assert percentile(counts, 1.0) == 100.0
    assert percentile([0] * 13, 0.5) is None


def test_percentile_of_the_open_bucket_is_its_lower_bound():
    counts = [0] * (len(LATENCY_BOUNDS_MS) + 1)
    counts[-1] = 3
    assert percentile(counts, 0.99) == 30000.0


def test_percentile_error_stays_within_the_bucket():
    values = [60, 61, 62, 63, 64, 99, 99, 99, 99, 99]  # all in (50, 100]
    counts = [0] * (len(LATENCY_BOUNDS_MS) + 1)
    counts[4] = len(values)
    estimate = percentile(counts, 0.5)
    true = sorted(values)[4]
    assert estimate is not None
    assert abs(estimate - true) <= 100 - 50


def test_latency_percentiles_from_the_histograms(world):
    # 12, 40, 120, 600, 3000, 7000 ms: one per bucket (10,25], (25,50], (100,250], (500,1000],
    # (2500,5000], (5000,10000].
    kpis = board_totals(world, "admin")
    assert kpis["latency_p50"] == 250.0  # rank 3 ends the (100, 250] bucket
    assert kpis["latency_p99"] == pytest.approx(5000 + 5000 * 0.94)
    board = metrics.dashboard(world.principal("admin"), LogFilters(), last())
    p90 = next(s for s in board.latency if s.name == "p90")
    assert p90.total == pytest.approx(7000.0)
    ttft = next(s for s in board.ttft if s.name == "p50")
    assert ttft.total == 10.0  # 8 ms and 30 ms: rank 1 ends the (5, 10] bucket


def test_percentiles_only_count_visible_rows(world):
    result = metrics.distribution(
        world.principal("alice"), LogFilters(), last(), metric="latency_p99", group_by="model"
    )
    values = {g.group: g.value for g in result.groups}
    # alice sees 12 ms and 40 ms on gpt-4o, 3000 ms on claude.
    assert values[GPT] == pytest.approx(25 + 25 * 0.98)
    assert values[CLAUDE] == pytest.approx(2500 + 2500 * 0.99)


# --- MCP -----------------------------------------------------------------------------------------


def test_mcp_metrics_follow_the_rules(world):
    admin = metrics.dashboard(world.principal("admin"), LogFilters(), last(), kind="mcp")
    assert admin.kpis["requests"] == 2
    assert admin.kpis["errors"] == 1
    assert {r.name for r in admin.leaderboards["tool"]} == {"github.search", "jira.get"}
    alice = metrics.dashboard(world.principal("alice"), LogFilters(), last(), kind="mcp")
    assert alice.kpis["requests"] == 1
    assert [s.name for s in alice.requests] == ["github.search"]
    servers = metrics.distribution(
        world.principal("admin"),
        LogFilters(),
        last(),
        metric="requests",
        group_by="server",
        kind="mcp",
    )
    assert {g.group: g.value for g in servers.groups} == {"github": 1, "jira": 1}


# --- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda v: metrics.timeseries(v, LogFilters(), last(), metric="nope"), "metric"),
        (
            lambda v: metrics.timeseries(v, LogFilters(), last(), metric="requests", group_by="x"),
            "group_by",
        ),
        (
            lambda v: metrics.timeseries(
                v, LogFilters(), last(), metric="requests", group_by="metadata.a__b"
            ),
            "group_by",
        ),
        (
            lambda v: metrics.timeseries(v, LogFilters(), last(), metric="requests", interval=60),
            "interval",
        ),
        (lambda v: metrics.leaderboard(v, LogFilters(), last(), by="galaxy"), "by"),
        (lambda v: metrics.leaderboard(v, LogFilters(), last(), by="user", order="x"), "order"),
    ],
)
def test_validation_names_the_parameter(world, call, field):
    from gateway_project.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as info:
        call(world.principal("admin"))
    assert list(info.value.fields) == [field]


# --- long ranges: 6-hour rollups ----------------------------------------------------------------


def test_long_ranges_read_compacted_rows_and_fresh_hour_rows(world):
    now = timezone.now()
    old = now - timedelta(days=5)
    _insert([("request", log_record(world.alice, [world.pay], tokens=7, app="old", at=old))])
    viewer = world.principal("alice")
    rng = metrics.time_range(now - timedelta(days=7), now)
    assert rng.granularity == "6h"
    before = metrics.dashboard(viewer, LogFilters(), rng).kpis
    assert before["input_tokens"] == 7 + 1 + 1000 + 10000  # nothing compacted: hour rows
    assert compaction.compact(now=now) > 0
    assert Rollup.objects.filter(granularity="6h").exists()
    after = metrics.dashboard(viewer, LogFilters(), rng).kpis
    assert after == before
    assert compaction.compacted_until() is not None


def test_compaction_picks_up_late_records(world):
    now = timezone.now()
    at = now - timedelta(days=3, hours=2)
    _insert([("request", log_record(world.bob, [world.ml], tokens=5, at=at))])
    compaction.compact(now=now)
    start = compaction.period_start(at)
    rows = Rollup.objects.filter(granularity="6h", bucket=start)
    assert sum(r.input_tokens for r in rows) == 5
    _insert([("request", log_record(world.bob, [world.ml], tokens=6, at=at))])  # replayed late
    compaction.compact(now=timezone.now())
    assert sum(r.input_tokens for r in Rollup.objects.filter(granularity="6h", bucket=start)) == 11


def test_ranges_pick_granularity_and_interval():
    start = datetime(2025, 1, 1, tzinfo=UTC)
    assert metrics.time_range(start, start + timedelta(hours=6)).granularity == "minute"
    assert metrics.time_range(start, start + timedelta(days=3)).granularity == "hour"
    month = metrics.time_range(start, start + timedelta(days=30))
    assert month.granularity == "6h"
    assert metrics.interval_for(month) == 12 * 3600
    assert metrics.interval_for(metrics.time_range(start, start + timedelta(hours=24))) == 3600
