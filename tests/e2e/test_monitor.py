"""In a real browser: the request log, a request's detail and trace, the metrics charts, and a
Data Access preview. Screenshots go to test-artifacts/ (monitor-*.png)."""

from __future__ import annotations

import random
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from accounts.models import User
from proxy.logwriter import _insert
from proxy.models import RequestLog
from teams.models import Team, TeamMembership
from tests import factories
from tests.dataaccess.conftest import log_record, mcp_record

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("transactional_db")]

MODELS = ("openai-main/gpt-4o", "openai-main/gpt-4o-mini", "anthropic/claude-sonnet")


def seed() -> dict[str, User]:
    """A day of traffic: 4 users in 2 teams, errors, streams, latencies, MCP calls."""
    pay: Team = factories.TeamFactory(name="payments")
    ml: Team = factories.TeamFactory(name="ml")
    admin = factories.UserFactory(email="admin@example.com", tenant_role_id="tenant-admin")
    people = {
        "alice": (factories.UserFactory(email="alice@example.com"), [pay]),
        "bob": (factories.UserFactory(email="bob@example.com"), [ml]),
        "erin": (factories.UserFactory(email="erin@example.com"), [pay, ml]),
        "frank": (factories.UserFactory(email="frank@example.com"), [ml]),
    }
    for user, teams in people.values():
        for team in teams:
            TeamMembership.objects.create(team=team, user=user, role="member")
    rng = random.Random(7)  # noqa: S311 - reproducible test data
    now = timezone.now()
    batch = []
    weights = [5, 2, 3, 1]
    for _ in range(420):
        hours_ago = rng.triangular(0, 24, 6)
        user, teams = rng.choices(list(people.values()), weights)[0]
        model = rng.choice(MODELS)
        roll = rng.random()
        status, error = (429, "rate_limited") if roll < 0.05 else (200, "")
        if 0.05 <= roll < 0.08:
            status, error = 502, "upstream_error"
        latency = rng.lognormvariate(6.3 if "mini" not in model else 5.6, 0.6)
        streaming = status == 200 and rng.random() < 0.6
        record = log_record(
            user,
            teams,
            tokens=int(rng.lognormvariate(6, 0.8)),
            app=rng.choice(["checkout", "search", "assistant"]),
            model=model,
            status=status,
            error_type=error,
            latency=round(latency, 1),
            ttft=round(latency * rng.uniform(0.2, 0.5), 1) if streaming else None,
            at=now - timedelta(hours=hours_ago),
            streaming=streaming,
            bodies=rng.random() < 0.3,
        )
        record["cost_usd"] = Decimal(record["input_tokens"]) * Decimal("0.00001")
        batch.append(("request", record))
    for _ in range(60):
        user, teams = rng.choices(list(people.values()), weights)[0]
        call = mcp_record(
            user,
            teams,
            server=rng.choice(["github", "jira"]),
            tool=rng.choice(["search", "get_issue"]),
            status="ok" if rng.random() < 0.9 else "error",
            latency=round(rng.lognormvariate(4.5, 0.7), 1),
        )
        call["started_at"] = now - timedelta(hours=rng.uniform(0, 24))
        batch.append(("mcp", call))
    _insert(batch)
    return {"admin": admin, **{name: user for name, (user, _teams) in people.items()}}


def log_in(page: Page, email: str, next_url: str) -> None:
    page.goto(f"/login/?next={next_url}")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(factories.PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(re.escape(next_url) + "$"))


def test_requests_detail_and_metrics_in_the_browser(page: Page, artifacts):
    seed()
    log_in(page, "admin@example.com", "/monitor/requests/")
    table = page.get_by_test_id("request-table")
    expect(table.locator("tbody tr")).to_have_count(50)
    expect(page.get_by_test_id("next-page")).to_be_visible()
    page.screenshot(path=str(artifacts / "monitor-requests.png"), full_page=True)

    # Filter by model and status, then open the newest streamed request.
    page.get_by_label("Model").fill("anthropic/claude-sonnet")
    page.get_by_label("Status").fill("ok")
    page.get_by_role("button", name="Apply filters").click()
    expect(page).to_have_url(re.compile(r"model=anthropic%2Fclaude-sonnet"))
    rows = table.locator("tbody tr")
    expected = RequestLog.objects.filter(requested_model="anthropic/claude-sonnet", status=200)
    expect(rows).to_have_count(min(expected.count(), 50))
    streamed = expected.filter(streaming=True, request_body__isnull=False).order_by("-started_at")
    target = streamed.first()
    assert target is not None
    page.goto(f"/monitor/requests/{target.pk}/")
    expect(page.get_by_test_id("caller")).to_contain_text(target.caller_name)
    expect(page.get_by_test_id("span")).to_have_count(4)
    expect(page.get_by_test_id("request-body")).to_contain_text('"content": "hi"')
    page.screenshot(path=str(artifacts / "monitor-request-detail.png"), full_page=True)

    # Metrics: charts drawn from the rollups.
    page.goto("/monitor/metrics/?range=24h")
    expect(page.get_by_test_id("kpi-requests")).to_have_text("420")
    for chart in ("requests", "errors", "tokens", "cost", "latency", "ttft"):
        figure = page.get_by_test_id(f"chart-{chart}")
        expect(figure.locator("svg")).to_be_visible()
        assert figure.locator("path").count() >= 1, chart
    assert int(page.get_by_test_id("chart-requests").get_attribute("data-series") or 0) == 3
    expect(page.get_by_test_id("leaders-user").locator("rect")).to_have_count(4)
    page.screenshot(path=str(artifacts / "monitor-metrics.png"), full_page=True)

    page.get_by_test_id("group-by").select_option("team")
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_test_id("group-table")).to_contain_text("payments")
    page.get_by_test_id("range-picker").get_by_role("link", name="7d").click()
    expect(page).to_have_url(re.compile(r"range=7d"))
    expect(page.get_by_test_id("group-table")).to_contain_text("ml")
    page.screenshot(path=str(artifacts / "monitor-metrics-by-team.png"), full_page=True)

    page.get_by_test_id("tab-mcp").click()
    expect(page.get_by_test_id("kpi-requests")).to_have_text("60")
    expect(page.get_by_test_id("chart-latency").locator("path")).to_have_count(3)
    page.screenshot(path=str(artifacts / "monitor-metrics-mcp.png"), full_page=True)


def test_a_team_member_sees_only_their_teams_and_a_preview_agrees(page: Page, artifacts):
    people = seed()
    bob = people["bob"]
    visible = RequestLog.objects.filter(team_ids__contains=f"|{Team.objects.get(name='ml').pk}|")
    log_in(page, "bob@example.com", "/monitor/metrics/")
    expect(page.get_by_test_id("kpi-requests")).to_have_text(str(visible.count()))
    expect(page.get_by_test_id("leaders-user")).not_to_contain_text("alice@example.com")
    page.screenshot(path=str(artifacts / "monitor-metrics-member.png"), full_page=True)
    page.goto("/monitor/requests/?sort=oldest&page_size=500")
    expect(page.get_by_test_id("request-table").locator("tbody tr")).to_have_count(visible.count())
    hidden = RequestLog.objects.exclude(pk__in=visible).first()
    assert hidden is not None
    response = page.goto(f"/monitor/requests/{hidden.pk}/")
    assert response is not None
    assert response.status == 404

    page.context.clear_cookies()
    log_in(page, "admin@example.com", "/controls/data-access/")
    page.get_by_test_id("edit-rules").click()
    page.get_by_test_id("preview-subject").select_option(bob.subject)
    page.get_by_role("button", name="Preview").click()
    expect(page.get_by_test_id("preview-requests")).to_have_text(str(visible.count()))
    expect(page.get_by_test_id("preview-teams")).to_contain_text("ml")
    page.screenshot(path=str(artifacts / "controls-data-access-preview.png"), full_page=True)
