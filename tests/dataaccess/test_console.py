"""Console pages: Monitor > Requests and Metrics, Controls > Data Access (edit and preview)."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from accounts.models import AuditEvent, Role
from accounts.policy import Permission
from dataaccess import services
from dataaccess.models import DataAccessConfig
from dataaccess.selectors import data_access_rules
from proxy.models import McpToolCall, RequestLog
from tests.dataaccess.conftest import CLAUDE, GPT, VISIBLE, World

pytestmark = pytest.mark.django_db

REQUESTS = "/monitor/requests/"
METRICS = "/monitor/metrics/"
CONTROLS = "/controls/data-access/"
EDIT = "/controls/data-access/edit/"


def signed_in(client: Client, world: World, who: str) -> Client:
    client.force_login(getattr(world, who))
    return client


def found(pattern: str, html: str) -> str:
    """The first group of `pattern` in `html` (which must match)."""
    match = re.search(pattern, html)
    assert match is not None, pattern
    return match.group(1)


def row_tokens(html: str) -> list[int]:
    ids = re.findall(r'<tr data-id="([0-9a-f-]+)">', html)
    return sorted(RequestLog.objects.get(pk=i).input_tokens for i in ids)


# --- Monitor > Requests -------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["admin", "alice", "bob", "carol", "dave", "erin"])
def test_request_list_shows_exactly_the_visible_rows(client, world, who):
    response = signed_in(client, world, who).get(REQUESTS)
    assert response.status_code == 200
    assert row_tokens(response.content.decode()) == VISIBLE[who]


def test_request_list_filters_sort_and_keyset_pages(client, world):
    signed_in(client, world, "admin")
    html = client.get(REQUESTS, {"model": CLAUDE}).content.decode()
    assert row_tokens(html) == [1000, 100000]
    assert row_tokens(client.get(REQUESTS, {"status": "5xx"}).content.decode()) == [100]
    assert row_tokens(client.get(REQUESTS, {"team": "ml"}).content.decode()) == [10, 10000, 100000]
    first = client.get(REQUESTS, {"page_size": 4, "sort": "oldest"}).content.decode()
    ids = re.findall(r'<tr data-id="([0-9a-f-]+)">', first)
    times = [RequestLog.objects.get(pk=i).started_at for i in ids]
    assert times == sorted(times)
    assert len(ids) == 4
    older = re.search(r'href="\?([^"]+)" rel="next"', first)
    assert older is not None
    rest = client.get(REQUESTS + "?" + older.group(1).replace("&amp;", "&")).content.decode()
    more = re.findall(r'<tr data-id="([0-9a-f-]+)">', rest)
    assert len(more) == 2
    assert not set(more) & set(ids)
    assert 'rel="next"' not in rest


def test_request_list_shows_filter_errors_in_place(client, world):
    response = signed_in(client, world, "admin").get(REQUESTS, {"start": "last tuesday"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "an ISO 8601 date-time" in html
    assert "Correct the filters above." in html


def test_csv_link_carries_the_filters(client, world):
    html = signed_in(client, world, "alice").get(REQUESTS, {"model": GPT}).content.decode()
    link = re.search(r'href="([^"]+)" data-testid="csv-link"', html)
    assert link is not None
    assert link.group(1) == "/api/v1/request-logs.csv?model=openai-main%2Fgpt-4o"


def test_request_detail_shows_everything_about_a_visible_row(client, world):
    row = RequestLog.objects.get(input_tokens=10000)
    response = signed_in(client, world, "alice").get(f"{REQUESTS}{row.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "erin@example.com" in html
    assert "user:erin@example.com" in html
    assert "payments" in html
    assert "ml" in html
    assert "<strong>app</strong>: checkout" in html
    assert "$10.00" in html  # cost
    assert "40 ms" in html  # latency
    assert "30 ms" in html  # TTFT
    assert "&quot;content&quot;: &quot;hello&quot;" in html  # the response body, indented JSON
    assert '"choices": [' not in html  # escaped, never raw
    spans = re.findall(r'data-span="([^"]+)"', html)
    assert spans == [
        "gateway chat/completions",
        "gateway.auth_routing",
        "provider.call",
        "response.stream",
    ]
    assert response["Cache-Control"].startswith("no-store")


def test_request_detail_of_a_hidden_row_is_404(client, world):
    hidden = RequestLog.objects.get(input_tokens=10)  # bob's
    assert signed_in(client, world, "alice").get(f"{REQUESTS}{hidden.pk}/").status_code == 404
    carol = Client()
    assert signed_in(carol, world, "carol").get(f"{REQUESTS}{hidden.pk}/").status_code == 404


def test_bodies_not_logged_say_so(client, world):
    row = RequestLog.objects.get(input_tokens=1)
    html = signed_in(client, world, "alice").get(f"{REQUESTS}{row.pk}/").content.decode()
    assert html.count("Not logged for this request.") == 2


def test_mcp_pages_follow_the_rules(client, world):
    signed_in(client, world, "alice")
    html = client.get("/monitor/mcp-calls/").content.decode()
    assert "search" in html
    assert "jira" not in html
    mine = McpToolCall.objects.get(server="github")
    hidden = McpToolCall.objects.get(server="jira")
    detail = client.get(f"/monitor/mcp-calls/{mine.pk}/").content.decode()
    assert re.findall(r'data-span="([^"]+)"', detail) == [
        "mcp tools/call github.search",
        "mcp.upstream",
    ]
    assert client.get(f"/monitor/mcp-calls/{hidden.pk}/").status_code == 404


def test_monitor_pages_need_a_signed_in_user(client, world):
    row = RequestLog.objects.get(input_tokens=1)
    for url in (REQUESTS, f"{REQUESTS}{row.pk}/", METRICS, "/monitor/mcp-calls/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/login/")


# --- Monitor > Metrics ----------------------------------------------------------------------------


def test_metrics_page_draws_charts_of_the_visible_rows(client, world):
    response = signed_in(client, world, "alice").get(METRICS)
    assert response.status_code == 200
    html = response.content.decode()
    kpi = re.search(r'data-testid="kpi-requests">([^<]+)<', html)
    assert kpi is not None
    assert kpi.group(1) == "3"
    assert found(r'data-testid="kpi-input">([^<]+)<', html) == "11k"
    for chart in ("requests", "errors", "tokens", "cost", "latency", "ttft"):
        assert f'data-testid="chart-{chart}"' in html, chart
    assert html.count("<svg") >= 9  # six charts and three leaderboards
    assert "bob@example.com" not in html  # not visible to alice, not in any leaderboard
    assert "erin@example.com" in html


def test_metrics_page_group_by_team_and_metadata(client, world):
    signed_in(client, world, "erin")
    html = client.get(METRICS, {"group_by": "team"}).content.decode()
    table = html[html.index('data-testid="group-table"') :]
    assert re.findall(r"<tr><td>([^<]+)</td><td class=\"num\">(\d+)</td>", table) == [
        ("ml", "3"),
        ("payments", "3"),
    ]
    html = client.get(METRICS, {"group_by": "metadata", "metadata_group": "app"}).content.decode()
    table = html[html.index('data-testid="group-table"') :]
    assert dict(re.findall(r"<tr><td>([^<]+)</td><td class=\"num\">(\d+)</td>", table)) == {
        "checkout": "2",
        "research": "2",
        "billing-bot": "1",
    }


def test_metrics_page_ranges_mcp_and_errors(client, world):
    signed_in(client, world, "admin")
    for name in ("15m", "1h", "6h", "24h", "7d", "30d"):
        assert client.get(METRICS, {"range": name}).status_code == 200, name
    mcp = client.get(METRICS, {"kind": "mcp"}).content.decode()
    assert found(r'data-testid="kpi-requests">([^<]+)<', mcp) == "2"
    assert 'data-testid="board-tool"' in mcp
    bad = client.get(METRICS, {"group_by": "planet"})
    assert bad.status_code == 400
    assert "one of model" in bad.content.decode()
    custom = client.get(
        METRICS, {"range": "custom", "start": "2025-01-02T00:00", "end": "2025-01-01T00:00"}
    )
    assert custom.status_code == 400
    assert "must be before end" in custom.content.decode()


# --- Controls > Data Access --------------------------------------------------------------------


def controls_viewer(world: World) -> None:
    role = Role.objects.create(
        slug="controls-viewer",
        display_name="Controls viewer",
        resource_type="tenant",
        permissions=[Permission.GATEWAY_CONTROLS_LIST.value],
    )
    world.dave.tenant_role = role
    world.dave.save()


def test_data_access_pages_need_controls_permissions(client, world):
    signed_in(client, world, "alice")
    assert client.get(CONTROLS).status_code == 403
    assert client.get(EDIT).status_code == 403
    assert (
        client.post(EDIT, {"mode": "yaml", "action": "save", "manifest": "rules: []"}).status_code
        == 403
    )
    assert [r.id for r in data_access_rules()] == [r["id"] for r in services.default_rules()]
    controls_viewer(world)
    viewer = signed_in(Client(), world, "dave")
    page = viewer.get(CONTROLS)
    assert page.status_code == 200
    assert "default-everyone-team-data" in page.content.decode()
    assert "Edit rules" not in page.content.decode()
    assert viewer.get(EDIT).status_code == 403


def management_form(count: int) -> dict[str, str]:
    return {
        "rules-TOTAL_FORMS": str(count),
        "rules-INITIAL_FORMS": "0",
        "rules-MIN_NUM_FORMS": "0",
        "rules-MAX_NUM_FORMS": "1000",
    }


def rule_fields(index: int, **values: str) -> dict[str, str]:
    return {f"rules-{index}-{k}": v for k, v in values.items()}


def test_data_access_form_edit_saves_and_audits(client, world):
    signed_in(client, world, "admin")
    assert "default-tenant-admin-all-data" in client.get(EDIT).content.decode()
    data = {
        "mode": "form",
        "action": "save",
        **management_form(2),
        **rule_fields(
            0,
            id="admins",
            subjects="role:tenant-admin",
            data_types="traces",
            scope="all_data",
            enabled="on",
        ),
        **rule_fields(
            1,
            id="auditors-apps",
            description="Auditors read billing apps",
            subjects="team:finance-auditors, user:carol@example.com",
            scope="all_data",
            enabled="on",
            metadata_filters="app: billing-bot, research",
        ),
    }
    data["rules-0-data_types"] = "traces"
    response = client.post(EDIT, {**data, "rules-1-data_types": ["traces", "metrics"]})
    assert response.status_code == 302
    rules = DataAccessConfig.objects.get().rules
    assert [r["id"] for r in rules] == ["admins", "auditors-apps"]
    assert rules[1]["subjects"] == ["team:finance-auditors", "user:carol@example.com"]
    assert rules[1]["filters"] == [
        {"field": "metadata", "key": "app", "operator": "IN", "value": ["billing-bot", "research"]}
    ]
    assert rules[0]["data_types"] == ["traces"]
    assert rules[1]["data_types"] == ["traces", "metrics"]
    assert AuditEvent.objects.filter(action="data_access.updated").count() == 1


def test_data_access_form_errors_land_on_the_rule(client, world):
    signed_in(client, world, "admin")
    before = DataAccessConfig.objects.get().rules
    data = {
        "mode": "form",
        "action": "save",
        **management_form(2),
        **rule_fields(0, id="ok-rule", subjects="team:ml", scope="own_data", enabled="on"),
        **rule_fields(
            1,
            id="bad-rule",
            subjects="team:ml",
            scope="team_data",
            enabled="on",
            metadata_filters="app: x",
        ),
        "rules-0-data_types": "metrics",
        "rules-1-data_types": "metrics",
    }
    response = client.post(EDIT, data)
    assert response.status_code == 400
    html = response.content.decode()
    second = html[html.index('data-testid="rule-1"') :]
    assert "filters are only valid with scope all_data" in second
    assert DataAccessConfig.objects.get().rules == before


def test_data_access_yaml_edit_and_errors(client, world):
    signed_in(client, world, "admin")
    html = client.get(EDIT, {"mode": "yaml"}).content.decode()
    assert "type: gateway-data-access-config" in html
    broken = client.post(EDIT, {"mode": "yaml", "action": "save", "manifest": "rules: [\n  - {id"})
    assert broken.status_code == 400
    assert "invalid YAML (line" in broken.content.decode()
    invalid = client.post(
        EDIT,
        {
            "mode": "yaml",
            "action": "save",
            "manifest": "type: gateway-data-access-config\nname: data-access\nrules:\n"
            "  - {id: x1, subjects: [nobody], scope: own_data}\n",
        },
    )
    assert invalid.status_code == 400
    assert "rules[0]: not a subject: nobody" in invalid.content.decode()
    saved = client.post(
        EDIT,
        {
            "mode": "yaml",
            "action": "save",
            "manifest": "type: gateway-data-access-config\nname: data-access\nrules:\n"
            "  - {id: admins-only, subjects: ['role:tenant-admin'], scope: all_data}\n",
        },
    )
    assert saved.status_code == 302
    assert [r.id for r in data_access_rules()] == ["admins-only"]


def test_preview_shows_what_a_subject_would_see_without_saving(client, world):
    signed_in(client, world, "admin")
    before = DataAccessConfig.objects.get().rules
    own_only = (
        "type: gateway-data-access-config\nname: data-access\nrules:\n"
        "  - {id: own, subjects: ['team:everyone'], scope: own_data}\n"
    )
    response = client.post(
        EDIT,
        {
            "mode": "yaml",
            "action": "preview",
            "manifest": own_only,
            "subject": "user:alice@example.com",
        },
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "As user:alice@example.com, you would see" in html
    assert found(r'data-testid="preview-requests">(\d+)<', html) == "1"
    current = client.post(
        EDIT,
        {
            "mode": "form",
            "action": "preview",
            "subject": "user:erin@example.com",
            **management_form(len(before)),
            **{
                k: v
                for i, rule in enumerate(before)
                for k, v in rule_fields(
                    i,
                    id=rule["id"],
                    subjects="\n".join(rule["subjects"]),
                    scope=rule["scope"],
                    enabled="on",
                ).items()
            },
            **{f"rules-{i}-data_types": "traces" for i in range(len(before))},
        },
    ).content.decode()
    assert found(r'data-testid="preview-requests">(\d+)<', current) == "5"
    callers = current[current.index('data-testid="preview-callers"') :]
    assert "virtualaccount:research-bot" in callers
    teams = current[current.index('data-testid="preview-teams"') :]
    assert "payments" in teams
    bot = client.post(
        EDIT,
        {
            "mode": "yaml",
            "action": "preview",
            "manifest": own_only,
            "subject": "virtualaccount:billing-bot",
        },
    ).content.decode()
    assert found(r'data-testid="preview-requests">(\d+)<', bot) == "0"
    missing = client.post(EDIT, {"mode": "yaml", "action": "preview", "manifest": own_only})
    assert missing.status_code == 400
    assert DataAccessConfig.objects.get().rules == before


def test_data_access_page_shows_retention_and_export(client, world, settings):
    settings.GATEWAY_OTLP_ENDPOINT = "http://collector.example:4318"
    html = signed_in(client, world, "admin").get(CONTROLS).content.decode()
    assert "30 days" in html
    assert "http://collector.example:4318/v1/traces" in html
