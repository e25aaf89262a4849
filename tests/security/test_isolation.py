"""Isolation: no byte of team B's request data reaches team A's members, on any surface.

Two teams, each with a member and a manager; team B also owns a virtual account. Real calls
through the gateway (its proxy in a thread, a fake OpenAI behind it) write request logs with
canary strings in prompts, responses and metadata; MCP tool calls are written the way the
proxy writes them (`proxy.logwriter`), which also folds the rollups the charts read. Then A's
member and A's manager walk every observability surface: the console's Monitor pages (request
list with filters and pages, request detail, MCP calls, metrics with every grouping), the REST
API (request logs with filters and pages, CSV, detail, MCP calls, metrics timeseries,
distribution and leaderboard for models and MCP, traces inside details) and export. No B
canary appears in any answer, B's ids answer 404, and every aggregate equals A's own sums
computed from the rows. A tenant admin sees B's canaries on the same surfaces, so the checks
can fail.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import virtual_accounts as va
from accounts.models import User
from accounts.selectors import principal_for_user
from dataaccess.metrics import COUNT_METRICS, GROUP_BYS, MCP_GROUP_BYS
from gateway_project import manifests
from gateway_project.manifest_io import parse_yaml
from proxy.logwriter import _insert
from proxy.models import McpToolCall, RequestLog
from teams.models import Team, TeamMembership
from tests import factories
from tests.fakes.fixtures import (  # noqa: F401 - fixtures used by this module
    FakeProvider,
    fake_provider,
    fake_provider_server,
)
from tests.servers import serve_in_thread

pytestmark = pytest.mark.timeout(180)

MODEL = "iso-openai/gpt-4o"
PROVIDER = """\
type: provider-account/openai
name: iso-openai
auth_data: {{type: api-key, api_key: {key}}}
base_url: {url}/v1
collaborators: [{{subject: team:everyone, role_id: provider-account-access}}]
integrations:
  - {{type: integration/model/openai, name: gpt-4o, model_id: gpt-4o,
      cost: {{metric: per_1000_tokens, value: {{input: 2.5, output: 10}}}}}}
"""


def canary(label: str) -> str:
    """A string that appears nowhere else: letters and digits only, so no encoding hides it."""
    return f"{label}{uuid.uuid4().hex[:16]}"


@dataclass
class World:
    admin: User
    a_member: User
    a_manager: User
    b_member: User
    b_manager: User
    alpha: Team
    bravo: Team
    bot_name: str
    named: dict[str, str] = field(default_factory=dict)  # B canaries used as search terms
    a_canaries: list[str] = field(default_factory=list)
    b_canaries: list[str] = field(default_factory=list)

    @property
    def b_identities(self) -> list[str]:
        """B's callers: their names may not show either (raw and as a URL would quote them)."""
        names = [self.b_member.email, self.b_manager.email, self.bot_name]
        return names + [quote(n) for n in names]

    @property
    def b_secrets(self) -> list[str]:
        return self.b_canaries + self.b_identities


def chat(url: str, token: str, text: str, metadata: dict[str, str], *, stream: bool) -> None:
    """One real model call through the gateway's proxy."""
    headers = {"Authorization": f"Bearer {token}", "x-gateway-metadata": json.dumps(metadata)}
    body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": text}]}
    if stream:
        body["stream"] = True
    response = httpx.post(f"{url}/api/llm/v1/chat/completions", json=body, headers=headers)
    assert response.status_code == 200, response.text
    if not stream:
        assert response.json()["choices"][0]["message"]["content"] == f"echo: {text}"


def wait_for_logs(expected: int, timeout: float = 20.0) -> None:
    """The proxy writes request logs off the request path: poll until they are all in."""
    deadline = time.monotonic() + timeout
    while RequestLog.objects.count() < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert RequestLog.objects.count() == expected


def mcp_call(
    user: User, team: Team, *, tool: str, error: str, meta: dict[str, str]
) -> tuple[str, dict[str, Any]]:
    return (
        "mcp",
        {
            "id": uuid.uuid4(),
            "started_at": timezone.now() - timedelta(minutes=5),
            "server": "iso-tools",
            "tool": tool,
            "status": "error" if error else "ok",
            "error": error,
            "latency_ms": 42.0,
            "caller_type": "user",
            "caller_id": user.pk,
            "caller_name": user.email,
            "team_ids": f"|{team.pk}|",
            "teams": [team.name],
            "metadata": meta,
        },
    )


@pytest.fixture(autouse=True)
def _close_proxy_db_threads() -> Iterator[None]:
    """The in-thread proxy leaves its database threads open: close them."""
    yield
    from proxy import db

    db.shutdown()


@pytest.fixture
def world(transactional_db: None, fake_provider: FakeProvider) -> World:  # noqa: F811
    """Both teams' traffic: real proxied calls and MCP calls as the proxy writes them."""
    alpha = factories.TeamFactory(name="iso-alpha")
    bravo = factories.TeamFactory(name=canary("bravo"))
    admin = factories.tenant_admin()
    w = World(
        admin=admin,
        a_member=factories.team_member_of(alpha),
        a_manager=factories.team_manager_of(alpha),
        b_member=factories.team_member_of(bravo),
        b_manager=factories.team_manager_of(bravo),
        alpha=alpha,
        bravo=bravo,
        bot_name=canary("bravo-bot-"),
    )
    for user, label in ((w.a_member, "alphamember"), (w.a_manager, "alphamanager")):
        user.email = f"{canary(label)}@example.com"
        user.save()
    for user, label in ((w.b_member, "bravomember"), (w.b_manager, "bravomanager")):
        user.email = f"{canary(label)}@example.com"
        user.save()
    w.b_canaries.append(bravo.name)
    text = PROVIDER.format(url=fake_provider.url, key=fake_provider.OPENAI_KEY)
    manifests.apply(parse_yaml(text), actor=principal_for_user(admin))
    grant = [va.PermissionSpec("provider-account-access", "provider-account", "iso-openai")]
    _bot, bot_token = va.va_create(
        actor=principal_for_user(admin),
        spec=va.VirtualAccountSpec(name=w.bot_name, owner_team=bravo.name, permissions=grant),
    )
    from gateway_project.asgi import application

    w.named["project"] = canary("bravometa")
    with serve_in_thread(application) as url:
        calls = [
            (w.a_member, "alpha", {"app": canary("alphameta")}, False),
            (w.a_manager, "alphamgr", {"app": "shared-app"}, True),
            (w.b_member, "bravoprompt", {"project": w.named["project"]}, False),
            (w.b_member, "bravostream", {"app": "shared-app"}, True),
            (w.b_manager, "bravomgr", {canary("bravokey"): canary("bravoval")}, False),
        ]
        for user, label, meta, stream in calls:
            prompt = canary(label)
            chat(url, factories.pat_for(user, uuid.uuid4().hex), prompt, meta, stream=stream)
            owned = w.a_canaries if label.startswith("alpha") else w.b_canaries
            owned += [prompt, *(v for v in meta.values() if v != "shared-app")]
            owned += [k for k in meta if k not in ("app", "project")]
        bot_prompt = canary("bravobot")
        chat(url, bot_token, bot_prompt, {"app": "shared-app"}, stream=False)
        w.b_canaries.append(bot_prompt)
        wait_for_logs(6)
    b_tool, b_error, b_meta = canary("bravotool"), canary("bravoerror"), canary("bravomcp")
    a_tool = canary("alphatool")
    _insert(
        [
            mcp_call(w.a_member, alpha, tool=a_tool, error="", meta={}),
            mcp_call(w.b_member, bravo, tool=b_tool, error=b_error, meta={"ticket": b_meta}),
        ]
    )
    w.a_canaries.append(a_tool)
    w.b_canaries += [b_tool, b_error, b_meta]
    w.named["tool"] = b_tool
    return w


# --- what A may see, computed from the rows ---------------------------------------------------


def a_rows(w: World) -> list[RequestLog]:
    """A's rows by who made them (A's member and manager), not through any selector."""
    return list(RequestLog.objects.filter(caller_name__in=[w.a_member.email, w.a_manager.email]))


def sums(rows: list[RequestLog]) -> dict[str, float]:
    return {
        "requests": len(rows),
        "errors": sum(1 for r in rows if r.status >= 400),
        "input_tokens": sum(r.input_tokens for r in rows),
        "output_tokens": sum(r.output_tokens for r in rows),
        "cost_usd": float(sum((r.cost_usd for r in rows), Decimal(0))),
    }


# --- checking answers ---------------------------------------------------------------------------


@dataclass
class Viewer:
    """One person walking the surfaces; every answer goes through `check`."""

    world: World
    api: APIClient
    console: Client
    forbidden: list[str]
    seen: dict[str, int] = field(default_factory=dict)

    def check(self, where: str, body: bytes, searched: str = "") -> str:
        text = body.decode()
        if searched:
            text = text.replace(searched, "").replace(quote(searched), "")
        leaked = [c for c in self.forbidden if c in text]
        assert not leaked, f"{where} shows {leaked}"
        for value in self.world.b_secrets:
            self.seen[value] = self.seen.get(value, 0) + text.count(value)
        return text

    def get_api(self, path: str, params: dict[str, str] | None = None, status: int = 200) -> Any:
        response = self.api.get(path, params or {})
        assert response.status_code == status, (path, params, response.status_code)
        searched = next((v for v in (params or {}).values() if v in self.forbidden), "")
        body = response.getvalue() if hasattr(response, "streaming_content") else response.content
        self.check(f"{path} {params}", body, searched)
        return response.json() if response["Content-Type"].startswith("application/json") else None

    def get_page(self, path: str, params: dict[str, str] | None = None, status: int = 200) -> str:
        response = self.console.get(path, params or {})
        assert response.status_code == status, (path, params, response.status_code)
        searched = next((v for v in (params or {}).values() if v in self.forbidden), "")
        return self.check(f"{path} {params}", response.content, searched)


def viewer(w: World, user: User, forbidden: list[str]) -> Viewer:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {factories.pat_for(user, uuid.uuid4().hex)}")
    console = Client()
    console.force_login(user)
    return Viewer(w, api, console, forbidden)


def log_filter_variants(w: World) -> list[dict[str, str]]:
    """Every request-log filter, with A's values and with B's (which must match nothing)."""
    return [
        {},
        {"range": "24h"},
        {"range": "15m", "order": "asc"},
        {"model": MODEL},
        {"provider_account": "iso-openai"},
        {"status": "ok"},
        {"status": "200"},
        {"user": w.a_member.email},
        {"user": w.b_member.email},
        {"team": w.alpha.name},
        {"team": w.bravo.name},
        {"virtual_account": w.bot_name},
        {"metadata_key": "app", "metadata_value": "shared-app"},
        {"metadata_key": "project", "metadata_value": w.named["project"]},
        {"error_type": "upstream_error"},
    ]


# --- the walk -----------------------------------------------------------------------------------


def walk_request_log_api(v: Viewer, expected_ids: set[str]) -> None:
    for params in log_filter_variants(v.world):
        v.get_api("/api/v1/request-logs", params)
        v.get_api("/api/v1/request-logs.csv", params)
    ids: list[str] = []
    cursor = ""
    while True:  # one row per page: every page of the walk is checked
        page = v.get_api("/api/v1/request-logs", {"page_size": "1", "cursor": cursor})
        ids += [r["id"] for r in page["results"]]
        if not page["next_cursor"]:
            break
        cursor = page["next_cursor"]
    assert set(ids) == expected_ids
    assert len(ids) == len(expected_ids)
    for row in RequestLog.objects.all():
        visible = str(row.id) in expected_ids
        detail = v.get_api(f"/api/v1/request-logs/{row.id}", status=200 if visible else 404)
        if visible:
            assert detail["trace"], "the detail carries its trace"
        else:
            assert detail == {"error": {"message": "request log not found", "fields": {}}}


def walk_mcp_api(v: Viewer, expected_ids: set[str]) -> None:
    for params in (
        {},
        {"server": "iso-tools"},
        {"status": "error"},
        {"user": v.world.b_member.email},
    ):
        v.get_api("/api/v1/mcp-calls", params)
    listed = {r["id"] for r in v.get_api("/api/v1/mcp-calls")["results"]}
    assert listed == expected_ids
    for call in McpToolCall.objects.all():
        visible = str(call.id) in expected_ids
        v.get_api(f"/api/v1/mcp-calls/{call.id}", status=200 if visible else 404)


def walk_metrics_api(v: Viewer, own: dict[str, float]) -> None:
    for kind, groups in (("", GROUP_BYS), ("mcp/", MCP_GROUP_BYS)):
        base = f"/api/v1/metrics/{kind}"
        for group_by in ("", *groups, "metadata.app", "metadata.project"):
            if kind and group_by.startswith("metadata"):
                continue
            v.get_api(f"{base}timeseries", {"group_by": group_by, "range": "24h"})
            v.get_api(f"{base}distribution", {"group_by": group_by or "user", "range": "7d"})
        boards = ("user", "virtual_account", "team") + (("server", "tool") if kind else ("model",))
        for by in boards:
            v.get_api(f"{base}leaderboard", {"by": by, "range": "30d"})
    for metric in COUNT_METRICS:
        series = v.get_api("/api/v1/metrics/timeseries", {"metric": metric, "range": "24h"})
        total = sum(s["total"] for s in series["series"])
        assert total == pytest.approx(own[metric]), metric
        dist = v.get_api(
            "/api/v1/metrics/distribution", {"metric": metric, "group_by": "model", "range": "24h"}
        )
        assert dist["total"] == pytest.approx(own[metric]), metric
    rows = [  # people and virtual accounts: every caller once
        row
        for by in ("user", "virtual_account")
        for row in v.get_api("/api/v1/metrics/leaderboard", {"by": by, "range": "24h"})["rows"]
    ]
    assert sum(r["requests"] for r in rows) == own["requests"]
    assert sum(r["input_tokens"] for r in rows) == own["input_tokens"]
    assert sum(r["cost_usd"] for r in rows) == pytest.approx(own["cost_usd"])


def walk_console(v: Viewer, expected_ids: set[str], mcp_ids: set[str]) -> None:
    for params in log_filter_variants(v.world):
        params = {k: val for k, val in params.items() if k != "order"}
        v.get_page("/monitor/requests/", params)
    v.get_page("/monitor/requests/", {"sort": "oldest", "page_size": "1"})
    for row in RequestLog.objects.all():
        visible = str(row.id) in expected_ids
        v.get_page(f"/monitor/requests/{row.id}/", status=200 if visible else 404)
    v.get_page("/monitor/mcp-calls/")
    v.get_page("/monitor/mcp-calls/", {"tool": v.world.named["tool"]})
    for call in McpToolCall.objects.all():
        visible = str(call.id) in mcp_ids
        v.get_page(f"/monitor/mcp-calls/{call.id}/", status=200 if visible else 404)
    for range_ in ("1h", "24h", "7d", "30d"):
        v.get_page("/monitor/metrics/", {"range": range_})
    for group_by in GROUP_BYS:
        v.get_page("/monitor/metrics/", {"group_by": group_by})
    for key in ("app", "project"):
        v.get_page("/monitor/metrics/", {"group_by": "metadata", "metadata_group": key})
    for group_by in MCP_GROUP_BYS:
        v.get_page("/monitor/metrics/", {"kind": "mcp", "group_by": group_by})


def walk_everything(v: Viewer, log_ids: set[str], mcp_ids: set[str], own: dict[str, float]) -> None:
    walk_request_log_api(v, log_ids)
    walk_mcp_api(v, mcp_ids)
    walk_metrics_api(v, own)
    walk_console(v, log_ids, mcp_ids)
    export = v.api.get("/api/v1/export")
    assert export.status_code in (200, 403)
    v.check("/api/v1/export", export.content)


# --- the tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["a_member", "a_manager"])
def test_team_a_sees_none_of_team_b_anywhere(world: World, who: str) -> None:
    user = getattr(world, who)
    v = viewer(world, user, world.b_secrets)
    own = a_rows(world)
    assert len(own) == 2
    assert {r.streaming for r in own} == {True, False}
    mcp_ids = {str(c.id) for c in McpToolCall.objects.filter(caller_name=world.a_member.email)}
    walk_everything(v, {str(r.id) for r in own}, mcp_ids, sums(own))
    # A's own canaries do show: the walk really read the data it was meant to.
    body = v.get_api(f"/api/v1/request-logs/{own[0].id}")
    assert any(c in str(body) for c in world.a_canaries)


def test_a_tenant_admin_sees_both_teams(world: World) -> None:
    """The reverse: the same walk as a tenant admin meets every B canary (the checks bite)."""
    v = viewer(world, world.admin, [])
    everything = list(RequestLog.objects.all())
    assert len(everything) == 6
    log_ids = {str(r.id) for r in everything}
    mcp_ids = {str(c.id) for c in McpToolCall.objects.all()}
    walk_everything(v, log_ids, mcp_ids, sums(everything))
    unseen = [value for value in world.b_canaries if not v.seen.get(value)]
    assert not unseen, f"the admin's walk never met {unseen}"


def test_b_rows_are_written_where_the_walk_looks(world: World) -> None:
    """B's canaries really are in the rows (prompt, response, metadata, MCP fields)."""
    stored = " ".join(
        f"{r.request_body} {r.response_body} {r.metadata}" for r in RequestLog.objects.all()
    ) + " ".join(f"{c.tool} {c.error} {c.metadata}" for c in McpToolCall.objects.all())
    missing = [c for c in world.b_canaries if c not in stored and c != world.bravo.name]
    assert not missing
    assert TeamMembership.objects.filter(team=world.bravo).count() == 2
