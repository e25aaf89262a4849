"""The request-log and metrics API under the Data Access rules: every viewer, every answer."""

from __future__ import annotations

import csv
import io
import uuid
from typing import cast

import pytest
from django.http import StreamingHttpResponse
from django.urls import reverse
from rest_framework.test import APIClient

from dataaccess import services
from proxy.logwriter import _insert
from proxy.models import RequestLog
from teams.models import TeamMembership
from tests import factories
from tests.dataaccess.conftest import CLAUDE, GPT, VISIBLE, World, log_record

pytestmark = pytest.mark.django_db

LOGS = "/api/v1/request-logs"
CSV = "/api/v1/request-logs.csv"
SERIES = "/api/v1/metrics/timeseries"
DISTRIBUTION = "/api/v1/metrics/distribution"
LEADERBOARD = "/api/v1/metrics/leaderboard"


def client_for(world: World, who: str) -> APIClient:
    client = APIClient()
    user = getattr(world, who)
    token = (
        world.billing_token if who == "billing_bot" else factories.pat_for(user, uuid.uuid4().hex)
    )
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def tokens_of(client: APIClient, **params) -> list[int]:
    response = client.get(LOGS, params)
    assert response.status_code == 200, response.content
    return sorted(r["input_tokens"] for r in response.json()["results"])


def csv_rows(client: APIClient, **params) -> list[dict[str, str]]:
    response = client.get(CSV, params)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    text = response.getvalue().decode()
    return list(csv.DictReader(io.StringIO(text)))


# --- the matrix ----------------------------------------------------------------------------------


@pytest.mark.parametrize("who", sorted(VISIBLE))
def test_request_logs_answer_exactly_the_visible_rows(world, who):
    client = client_for(world, who)
    assert tokens_of(client) == VISIBLE[who]
    series = client.get(SERIES, {"metric": "input_tokens"}).json()
    assert series["series"] == [
        {"group": None, "values": series["series"][0]["values"], "total": sum(VISIBLE[who])}
    ]
    assert sum(series["series"][0]["values"]) == sum(VISIBLE[who])
    assert sorted(int(r["input_tokens"]) for r in csv_rows(client)) == VISIBLE[who]


@pytest.mark.parametrize("who", sorted(VISIBLE))
def test_details_of_hidden_rows_are_404(world, who):
    client = client_for(world, who)
    for row in RequestLog.objects.all():
        response = client.get(f"{LOGS}/{row.pk}")
        expected = 200 if row.input_tokens in VISIBLE[who] else 404
        assert response.status_code == expected, (who, row.input_tokens)
        if expected == 404:
            assert response.json() == {"error": {"message": "request log not found", "fields": {}}}


def test_answers_follow_rule_and_membership_changes(world):
    admin = world.principal("admin")
    dave = client_for(world, "dave")
    assert tokens_of(dave) == []
    services.data_access_config_put(
        actor=admin,
        rules=[
            *services.default_rules(),
            {
                "id": "auditors",
                "subjects": ["team:finance-auditors"],
                "scope": "all_data",
                "filters": [
                    {"field": "created_by", "value": ["virtualaccount:billing-bot", "team:ml"]}
                ],
            },
        ],
    )
    assert tokens_of(dave) == [10, 1000, 10000, 100000]
    assert dave.get(SERIES, {"metric": "requests"}).json()["series"][0]["total"] == 4
    TeamMembership.objects.filter(user=world.dave).delete()
    assert tokens_of(dave) == []
    assert dave.get(SERIES, {"metric": "requests"}).json()["series"][0]["total"] == 0


def test_virtual_account_token_reads_metrics_when_a_rule_allows(world):
    bot = client_for(world, "billing_bot")
    assert bot.get(SERIES, {"metric": "requests"}).json()["series"][0]["total"] == 0
    services.data_access_config_put(
        actor=world.principal("admin"),
        rules=[
            *services.default_rules(),
            {
                "id": "bots-team",
                "subjects": ["virtualaccount:billing-bot"],
                "scope": "team_data",
                "data_types": ["metrics"],
            },
        ],
    )
    body = bot.get(DISTRIBUTION, {"metric": "input_tokens", "group_by": "model"}).json()
    assert body["total"] == 11001
    assert body["groups"] == [
        {"group": GPT, "value": 10001, "requests": 2},
        {"group": CLAUDE, "value": 1000, "requests": 1},
    ]
    assert tokens_of(bot) == []  # metrics only: no request logs


# --- request logs ---------------------------------------------------------------------------------


def test_keyset_pages_walk_every_row_once(world):
    client = client_for(world, "admin")
    _insert([("request", log_record(world.alice, [world.pay], tokens=n)) for n in range(2, 9)])
    for order in ("desc", "asc"):
        seen, url, params = [], LOGS, {"page_size": 3, "order": order}
        while url:
            body = client.get(url, params).json()
            seen += [r["started_at"] for r in body["results"]]
            url, params = body["next"], {}
            assert len(body["results"]) <= 3
        assert len(seen) == 13
        assert seen == sorted(seen, reverse=order == "desc")


def test_filters_as_query_parameters(world):
    client = client_for(world, "admin")
    cases = [
        ({"model": CLAUDE}, [1000, 100000]),
        ({"provider_account": "anthropic"}, [1000, 100000]),
        ({"user": "Erin@Example.com"}, [10000]),
        ({"virtual_account": "research-bot"}, [100000]),
        ({"team": "payments"}, [1, 1000, 10000]),
        ({"team": "no-such-team"}, []),
        ({"status": "4xx"}, [1000]),
        ({"status": "500"}, [100]),
        ({"status": "ok"}, [1, 10, 10000, 100000]),
        ({"metadata_key": "app", "metadata_value": "checkout"}, [1, 10000]),
        ({"metadata_key": "app"}, [1, 10, 1000, 10000, 100000]),
        ({"error_type": "rate_limited"}, [1000]),
        ({"range": "1h"}, [1, 10, 100, 1000, 10000, 100000]),
        ({"start": "2000-01-01T00:00:00Z", "end": "2000-01-02T00:00:00Z"}, []),
    ]
    for params, expected in cases:
        assert tokens_of(client, **params) == expected, params


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"start": "yesterday"}, "start"),
        ({"end": "2025-13-01"}, "end"),
        ({"start": "2025-02-01", "end": "2025-01-01"}, "start"),
        ({"range": "3w"}, "range"),
        ({"status": "teapot"}, "status"),
        ({"metadata_key": "a__b"}, "metadata_key"),
        ({"metadata_value": "x"}, "metadata_key"),
        ({"page_size": "0"}, "page_size"),
        ({"page_size": "501"}, "page_size"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"order": "sideways"}, "order"),
    ],
)
def test_request_log_validation_names_the_parameter(world, params, field):
    response = client_for(world, "admin").get(LOGS, params)
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == [field]


def test_detail_has_bodies_tokens_timing_and_trace(world):
    row = RequestLog.objects.get(input_tokens=10000)
    body = client_for(world, "erin").get(f"{LOGS}/{row.pk}").json()
    assert body["request_body"] == row.request_body
    assert body["response_body"] == row.response_body
    assert body["caller"] == {
        "type": "user",
        "id": world.erin.pk,
        "name": "erin@example.com",
        "subject": "user:erin@example.com",
    }
    assert body["teams"] == ["payments", "ml"]
    assert (body["input_tokens"], body["output_tokens"], body["cost_usd"]) == (10000, 20000, 10.0)
    assert (body["latency_ms"], body["ttft_ms"]) == (40.0, 30.0)
    assert [s["name"] for s in body["trace"]] == [
        "gateway chat/completions",
        "gateway.auth_routing",
        "provider.call",
        "response.stream",
    ]
    assert {s["trace_id"] for s in body["trace"]} == {row.pk.hex}
    stream = body["trace"][3]
    assert stream["duration_ms"] == 10.0
    list_row = client_for(world, "erin").get(LOGS, {"user": "erin@example.com"}).json()
    assert "request_body" not in list_row["results"][0]


def test_unknown_or_malformed_ids_are_404(world):
    client = client_for(world, "admin")
    assert client.get(f"{LOGS}/{uuid.uuid4()}").status_code == 404
    assert client.get(f"{LOGS}/nope").status_code == 404


def test_anonymous_callers_are_refused(world):
    for url in (LOGS, CSV, SERIES, "/api/v1/mcp-calls"):
        assert APIClient().get(url).status_code == 401


# --- CSV ------------------------------------------------------------------------------------------


def test_csv_is_the_filtered_visible_view(world):
    rows = csv_rows(client_for(world, "alice"), model=GPT)
    assert [(r["caller_name"], r["input_tokens"]) for r in rows] == [
        ("erin@example.com", "10000"),
        ("alice@example.com", "1"),
    ]
    assert list(rows[0]) == [
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
    ]
    assert all("request_body" not in r for r in rows)


def test_csv_is_bounded_and_neutralises_formulas(world):
    record = log_record(world.alice, [world.pay], tokens=3, status=400, error_type="=1+2")
    _insert([("request", record)])
    client = client_for(world, "admin")
    assert len(csv_rows(client, limit=2)) == 2
    row = next(r for r in csv_rows(client) if r["input_tokens"] == "3")
    assert row["error_type"] == "'=1+2"
    response = client.get(CSV, {"limit": "0"})
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["limit"]


def test_csv_via_the_console_session(world, client):
    client.force_login(world.bob)
    response = client.get(CSV)
    text = response.getvalue().decode()
    assert sorted(int(r["input_tokens"]) for r in csv.DictReader(io.StringIO(text))) == [
        10,
        10000,
        100000,
    ]


# --- metrics API ----------------------------------------------------------------------------------


def test_timeseries_grouped_by_team_and_interval(world):
    body = (
        client_for(world, "erin")
        .get(SERIES, {"metric": "requests", "group_by": "team", "interval": "1h", "range": "24h"})
        .json()
    )
    assert body["granularity"] == "hour"
    assert body["interval"] == "1h"
    assert body["interval_seconds"] == 3600
    assert len(body["timestamps"]) == len(body["series"][0]["values"])
    assert {s["group"]: s["total"] for s in body["series"]} == {"payments": 3, "ml": 3}


def test_distribution_and_percentiles(world):
    client = client_for(world, "admin")
    body = client.get(DISTRIBUTION, {"metric": "latency_p50", "group_by": "metadata.app"}).json()
    values = {g["group"]: g["value"] for g in body["groups"]}
    assert values == {
        "checkout": 25,  # 12 and 40 ms: rank 1 ends the (10, 25] bucket
        "research": 250,  # 120 and 7000 ms
        "billing-bot": 3750,  # 3000 ms alone: the middle of (2500, 5000]
        "(none)": 750,
    }
    assert body["total"] == 250


def test_leaderboards(world):
    client = client_for(world, "alice")
    by_cost = client.get(LEADERBOARD, {"by": "user", "order": "cost_usd"}).json()
    assert [(r["name"], r["cost_usd"]) for r in by_cost["rows"]] == [
        ("erin@example.com", 10),
        ("alice@example.com", 0.001),
    ]
    teams = client.get(LEADERBOARD, {"by": "team"}).json()["rows"]
    assert [(r["name"], r["requests"]) for r in teams] == [("payments", 3), ("ml", 1)]
    bots = client.get(LEADERBOARD, {"by": "virtual_account"}).json()["rows"]
    assert [(r["name"], r["input_tokens"]) for r in bots] == [("billing-bot", 1000)]


@pytest.mark.parametrize(
    ("url", "params", "field"),
    [
        (SERIES, {"metric": "joules"}, "metric"),
        (SERIES, {"metric": "requests", "group_by": "planet"}, "group_by"),
        (SERIES, {"metric": "requests", "interval": "2m"}, "interval"),
        (SERIES, {"metric": "requests", "range": "30d", "interval": "1m"}, "interval"),
        (SERIES, {"metric": "requests", "status": "404"}, "status"),
        (SERIES, {"start": "2000-01-01", "end": "2003-01-01"}, "start"),
        (DISTRIBUTION, {"metric": "requests"}, "group_by"),
        (LEADERBOARD, {"by": "planet"}, "by"),
        (LEADERBOARD, {"order": "vibes"}, "order"),
        (SERIES, {"limit": "0"}, "limit"),
    ],
)
def test_metrics_validation_names_the_parameter(world, url, params, field):
    response = client_for(world, "admin").get(url, params)
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == [field]


# --- MCP -----------------------------------------------------------------------------------------


def test_mcp_calls_and_metrics_follow_the_rules(world):
    alice = client_for(world, "alice")
    calls = alice.get("/api/v1/mcp-calls").json()["results"]
    assert [(c["server"], c["tool"], c["status"]) for c in calls] == [("github", "search", "ok")]
    detail = alice.get(f"/api/v1/mcp-calls/{calls[0]['id']}").json()
    assert [s["name"] for s in detail["trace"]] == ["mcp tools/call github.search", "mcp.upstream"]
    admin = client_for(world, "admin")
    hidden = next(
        c for c in admin.get("/api/v1/mcp-calls").json()["results"] if c["server"] == "jira"
    )
    assert alice.get(f"/api/v1/mcp-calls/{hidden['id']}").status_code == 404
    assert [
        c["tool"] for c in admin.get("/api/v1/mcp-calls", {"status": "error"}).json()["results"]
    ] == ["get"]
    body = admin.get(
        "/api/v1/metrics/mcp/timeseries", {"metric": "errors", "group_by": "server"}
    ).json()
    assert {s["group"]: s["total"] for s in body["series"]} == {"github": 0, "jira": 1}
    tools = admin.get("/api/v1/metrics/mcp/leaderboard", {"by": "tool"}).json()["rows"]
    assert [r["name"] for r in tools] == ["github.search", "jira.get"]
    bad = admin.get("/api/v1/metrics/mcp/timeseries", {"metric": "cost_usd"})
    assert list(bad.json()["error"]["fields"]) == ["metric"]


def test_openapi_schema_lists_the_endpoints(client):
    schema = client.get(
        reverse("api_schema"), HTTP_ACCEPT="application/vnd.oai.openapi+json"
    ).json()
    for path in (
        "/api/v1/request-logs",
        "/api/v1/request-logs.csv",
        "/api/v1/request-logs/{log_id}",
        "/api/v1/metrics/timeseries",
        "/api/v1/metrics/distribution",
        "/api/v1/metrics/leaderboard",
        "/api/v1/mcp-calls",
        "/api/v1/metrics/mcp/timeseries",
    ):
        assert path in schema["paths"], path


def test_csv_streams_from_an_async_iterator_under_asgi(world):
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    client = AsyncClient()
    token = factories.pat_for(world.alice, "asgi")

    async def fetch() -> bytes:
        response = await client.get(CSV, headers={"authorization": f"Bearer {token}"})
        stream = cast(StreamingHttpResponse, response)
        assert stream.is_async  # streamed chunk by chunk, not read whole first
        return b"".join([chunk async for chunk in stream])

    text = async_to_sync(fetch)().decode()
    assert sorted(int(r["input_tokens"]) for r in csv.DictReader(io.StringIO(text))) == [
        1,
        1000,
        10000,
    ]
