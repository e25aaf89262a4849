"""A small world for the Data Access matrix: teams, users, virtual accounts, logs and MCP calls.

Rows (input tokens identify them; latency puts each in a different histogram bucket):

| tokens | caller               | teams          | app          | model          | status | ms   |
| ------ | -------------------- | -------------- | ------------ | -------------- | ------ | ---- |
| 1      | alice                | payments       | checkout     | gpt-4o         | 200    | 12   |
| 10     | bob                  | ml             | research     | gpt-4o         | 200    | 120  |
| 100    | carol                | -              | -            | gpt-4o         | 500    | 600  |
| 1000   | billing-bot (VA)     | payments       | billing-bot  | claude         | 429    | 3000 |
| 10000  | erin                 | payments, ml   | checkout     | gpt-4o         | 200    | 40   |
| 100000 | research-bot (VA)    | ml             | research     | claude         | 200    | 7000 |
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from accounts import virtual_accounts as va
from accounts.models import User, VirtualAccount
from accounts.policy import Principal
from accounts.selectors import principal_for_user
from gateway_project import manifests
from gateway_project.manifest_io import parse_yaml
from proxy.logwriter import _insert
from teams.models import Team, TeamMembership
from tests import factories

PROVIDERS = """\
type: provider-account/openai
name: openai-main
auth_data: {type: api-key, api_key: sk-test}
base_url: http://127.0.0.1:9/v1
collaborators: [{subject: team:everyone, role_id: provider-account-access}]
integrations: [{type: integration/model/openai, name: gpt-4o, model_id: gpt-4o}]
---
type: provider-account/anthropic
name: anthropic
auth_data: {type: api-key, api_key: sk-ant-test}
base_url: http://127.0.0.1:9
collaborators: [{subject: team:everyone, role_id: provider-account-access}]
integrations: [{type: integration/model/anthropic, name: claude, model_id: claude-sonnet}]
"""
GPT = "openai-main/gpt-4o"
CLAUDE = "anthropic/claude"


def team_ids(teams: list[Team]) -> str:
    return "|" + "".join(f"{t.pk}|" for t in teams)


def log_record(
    caller: User | VirtualAccount,
    teams: list[Team],
    *,
    tokens: int,
    app: str = "",
    model: str = GPT,
    status: int = 200,
    error_type: str = "",
    latency: float = 12.0,
    ttft: float | None = None,
    at: datetime | None = None,
    streaming: bool = False,
    bodies: bool = False,
) -> dict[str, Any]:
    kind = "user" if isinstance(caller, User) else "virtualaccount"
    return {
        "id": uuid.uuid4(),
        "started_at": at or timezone.now() - timedelta(minutes=10),
        "endpoint": "chat/completions",
        "requested_model": model,
        "provider_account": model.partition("/")[0],
        "provider_model": model.partition("/")[2],
        "status": status,
        "error_type": error_type,
        "streaming": streaming,
        "caller_type": kind,
        "caller_id": caller.pk,
        "caller_name": caller.email if isinstance(caller, User) else caller.name,
        "team_ids": team_ids(teams),
        "teams": [t.name for t in teams],
        "metadata": {"app": app} if app else {},
        "input_tokens": tokens,
        "output_tokens": tokens * 2,
        "latency_ms": latency,
        "ttft_ms": ttft,
        "cost_usd": Decimal(tokens) / 1000,
        "request_body": '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}'
        if bodies
        else None,
        "response_body": '{"choices":[{"message":{"content":"hello"}}]}' if bodies else None,
    }


def mcp_record(
    caller: User, teams: list[Team], *, server: str, tool: str, status: str, latency: float
) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "started_at": timezone.now() - timedelta(minutes=10),
        "server": server,
        "tool": tool,
        "status": status,
        "error": "" if status == "ok" else "JSON-RPC error -32603",
        "latency_ms": latency,
        "caller_type": "user",
        "caller_id": caller.pk,
        "caller_name": caller.email,
        "team_ids": team_ids(teams),
        "teams": [t.name for t in teams],
        "metadata": {},
    }


@dataclass
class World:
    admin: User
    alice: User
    bob: User
    carol: User
    dave: User
    erin: User
    billing_bot: VirtualAccount
    billing_token: str
    research_bot: VirtualAccount
    pay: Team
    ml: Team
    auditors: Team

    def principal(self, who: str) -> Principal:
        if who in ("billing_bot", "research_bot"):
            return va.principal_for_virtual_account(getattr(self, who))
        return principal_for_user(User.objects.get(pk=getattr(self, who).pk))


VISIBLE = {  # input tokens of the rows each viewer sees under the default rules
    "admin": [1, 10, 100, 1000, 10000, 100000],
    "alice": [1, 1000, 10000],
    "bob": [10, 10000, 100000],
    "carol": [100],
    "dave": [],
    "erin": [1, 10, 1000, 10000, 100000],
    "billing_bot": [],
}


@pytest.fixture
def world(db: None) -> World:
    pay = factories.TeamFactory(name="payments")
    ml = factories.TeamFactory(name="ml")
    auditors = factories.TeamFactory(name="finance-auditors")
    admin = factories.UserFactory(email="admin@example.com", tenant_role_id="tenant-admin")
    acting = principal_for_user(admin)
    manifests.apply(parse_yaml(PROVIDERS), actor=acting)
    alice = factories.UserFactory(email="alice@example.com")
    bob = factories.UserFactory(email="bob@example.com")
    carol = factories.UserFactory(email="carol@example.com")
    dave = factories.UserFactory(email="dave@example.com")
    erin = factories.UserFactory(email="erin@example.com")
    for user, teams in ((alice, [pay]), (bob, [ml]), (dave, [auditors]), (erin, [pay, ml])):
        for team in teams:
            TeamMembership.objects.create(team=team, user=user, role="member")
    grant = [va.PermissionSpec("provider-account-access", "provider-account", "openai-main")]
    billing_bot, billing_token = va.va_create(
        actor=acting,
        spec=va.VirtualAccountSpec(name="billing-bot", owner_team="payments", permissions=grant),
    )
    research_bot, _ = va.va_create(
        actor=acting,
        spec=va.VirtualAccountSpec(name="research-bot", owner_team="ml", permissions=grant),
    )
    _insert(
        [
            ("request", log_record(alice, [pay], tokens=1, app="checkout", latency=12, ttft=8)),
            ("request", log_record(bob, [ml], tokens=10, app="research", latency=120)),
            (
                "request",
                log_record(
                    carol, [], tokens=100, status=500, error_type="upstream_error", latency=600
                ),
            ),
            (
                "request",
                log_record(
                    billing_bot,
                    [pay],
                    tokens=1000,
                    app="billing-bot",
                    model=CLAUDE,
                    status=429,
                    error_type="rate_limited",
                    latency=3000,
                ),
            ),
            (
                "request",
                log_record(
                    erin,
                    [pay, ml],
                    tokens=10000,
                    app="checkout",
                    latency=40,
                    ttft=30,
                    streaming=True,
                    bodies=True,
                ),
            ),
            (
                "request",
                log_record(
                    research_bot, [ml], tokens=100000, app="research", model=CLAUDE, latency=7000
                ),
            ),
            (
                "mcp",
                mcp_record(alice, [pay], server="github", tool="search", status="ok", latency=30),
            ),
            ("mcp", mcp_record(bob, [ml], server="jira", tool="get", status="error", latency=300)),
        ]
    )
    return World(
        admin,
        alice,
        bob,
        carol,
        dave,
        erin,
        billing_bot,
        billing_token,
        research_bot,
        pay,
        ml,
        auditors,
    )
