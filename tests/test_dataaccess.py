"""Data Access rules: the matrix of viewers, rows and totals, through rules and memberships."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from accounts import virtual_accounts as va
from accounts.policy import Principal
from accounts.selectors import principal_for_user
from dataaccess import selectors, services
from dataaccess.selectors import LogFilters
from gateway_project import manifests
from gateway_project.manifest_io import parse_yaml
from proxy.logwriter import _insert
from proxy.models import RequestLog
from teams.models import Team, TeamMembership
from tests import factories

pytestmark = pytest.mark.django_db

PROVIDER = """\
type: provider-account/openai
name: openai-main
auth_data: {type: api-key, api_key: sk-test}
base_url: http://127.0.0.1:9/v1
collaborators: [{subject: team:everyone, role_id: provider-account-access}]
integrations: [{type: integration/model/openai, name: gpt-4o, model_id: gpt-4o}]
"""


def log_for(
    caller: Any, teams: list[Team], *, app: str = "", tokens: int = 10, kind: str = "user"
) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "started_at": timezone.now() - timedelta(minutes=1),
        "endpoint": "chat/completions",
        "requested_model": "openai-main/gpt-4o",
        "provider_account": "openai-main",
        "status": 200,
        "caller_type": kind,
        "caller_id": caller.pk,
        "caller_name": getattr(caller, "email", None) or caller.name,
        "team_ids": "|" + "".join(f"{t.pk}|" for t in teams),
        "teams": [t.name for t in teams],
        "metadata": {"app": app} if app else {},
        "input_tokens": tokens,
        "output_tokens": tokens,
        "latency_ms": 12.0,
        "cost_usd": 0.5,
    }


@pytest.fixture
def world(db: None) -> dict[str, Any]:
    pay = factories.TeamFactory(name="payments")
    ml = factories.TeamFactory(name="ml")
    auditors = factories.TeamFactory(name="finance-auditors")
    admin = factories.tenant_admin()
    manifests.apply(parse_yaml(PROVIDER), actor=principal_for_user(admin))
    alice = factories.team_member_of(pay)
    bob = factories.team_member_of(ml)
    carol = factories.member()  # no team
    dave = factories.team_member_of(auditors)
    bot, _ = va.va_create(
        actor=principal_for_user(admin),
        spec=va.VirtualAccountSpec(
            name="billing-bot",
            owner_team="payments",
            permissions=[
                va.PermissionSpec("provider-account-access", "provider-account", "openai-main")
            ],
        ),
    )
    _insert(
        [
            ("request", log_for(alice, [pay], app="checkout", tokens=1)),
            ("request", log_for(bob, [ml], app="research", tokens=10)),
            ("request", log_for(carol, [], tokens=100)),
            ("request", log_for(bot, [pay], app="billing-bot", tokens=1000, kind="virtualaccount")),
        ]
    )
    return {
        "admin": admin,
        "alice": alice,
        "bob": bob,
        "carol": carol,
        "dave": dave,
        "bot": bot,
        "pay": pay,
        "ml": ml,
    }


def seen(viewer: Principal) -> tuple[list[int], int]:
    rows = selectors.request_log_page(viewer, LogFilters()).rows
    tokens = sorted(r.input_tokens for r in rows)
    total = selectors.totals(viewer, LogFilters(), granularity="minute")["input_tokens"]
    return tokens, total


@pytest.mark.parametrize(
    ("who", "rows"),
    [
        ("admin", [1, 10, 100, 1000]),
        ("alice", [1, 1000]),  # own + team payments incl. its virtual account
        ("bob", [10]),
        ("carol", [100]),  # own only: `everyone` does not count as a team
        ("dave", []),
    ],
)
def test_default_rules_matrix(world, who, rows):
    viewer = principal_for_user(world[who])
    tokens, total = seen(viewer)
    assert tokens == rows
    assert total == sum(rows)  # charts reveal exactly the visible rows


def test_custom_rule_with_filters_and_union(world):
    admin = principal_for_user(world["admin"])
    rules = [
        *services.default_rules(),
        {
            "id": "finance-app-logs",
            "subjects": ["team:finance-auditors"],
            "scope": "all_data",
            "filters": [
                {
                    "field": "metadata",
                    "key": "app",
                    "operator": "IN",
                    "value": ["billing-bot", "research"],
                },
                {
                    "field": "created_by",
                    "operator": "IN",
                    "value": ["virtualaccount:billing-bot", "team:ml"],
                },
            ],
        },
    ]
    services.data_access_config_put(actor=admin, rules=rules)
    assert seen(principal_for_user(world["dave"])) == ([10, 1000], 1010)
    assert seen(principal_for_user(world["carol"])) == ([100], 100)


def test_changes_to_rules_and_memberships_take_effect(world):
    admin = principal_for_user(world["admin"])
    TeamMembership.objects.create(team=world["ml"], user=world["carol"], role="member")
    assert seen(principal_for_user(world["carol"]))[0] == [10, 100]
    no_team = [r for r in services.default_rules() if r["id"] != "default-everyone-team-data"]
    services.data_access_config_put(actor=admin, rules=no_team)
    assert seen(principal_for_user(world["carol"]))[0] == [100]
    disabled = [{**r, "enabled": False} for r in services.default_rules()]
    services.data_access_config_put(actor=admin, rules=disabled)
    assert seen(principal_for_user(world["admin"])) == ([], 0)  # no matching rule, no data


def test_virtual_accounts_see_by_their_own_subject_or_owner_team(world):
    from accounts.virtual_accounts import principal_for_virtual_account

    bot = principal_for_virtual_account(world["bot"])
    assert seen(bot) == ([], 0)  # team:everyone does not hold virtual accounts
    admin = principal_for_user(world["admin"])
    services.data_access_config_put(
        actor=admin,
        rules=[
            *services.default_rules(),
            {
                "id": "bots-own",
                "subjects": ["team:payments"],
                "scope": "team_data",
            },
        ],
    )
    assert seen(bot) == ([1, 1000], 1001)


def test_detail_of_a_hidden_row_is_404(world):
    from gateway_project.errors import ObjectNotFound

    hidden = RequestLog.objects.get(input_tokens=10)
    with pytest.raises(ObjectNotFound):
        selectors.request_log_get_for(principal_for_user(world["alice"]), str(hidden.pk))
    with pytest.raises(ObjectNotFound):
        selectors.request_log_get_for(principal_for_user(world["alice"]), "not-a-uuid")
    assert selectors.request_log_get_for(principal_for_user(world["bob"]), str(hidden.pk)) == hidden


def test_rule_validation_names_the_field(world):
    from gateway_project.errors import ValidationFailed

    admin = principal_for_user(world["admin"])
    with pytest.raises(ValidationFailed) as info:
        services.data_access_config_put(
            actor=admin,
            rules=[
                {
                    "id": "x1",
                    "subjects": ["team:x"],
                    "scope": "own_data",
                    "filters": [{"field": "metadata", "key": "a", "value": ["b"]}],
                }
            ],
        )
    assert info.value.fields == {"rules[0]": ["filters are only valid with scope all_data"]}


def test_manifest_round_trip(world):
    admin = principal_for_user(world["admin"])
    kind = manifests.kinds()["gateway-data-access-config"]
    exported = kind.current("data-access")
    assert exported is not None
    assert [r["id"] for r in exported["rules"]] == [
        "default-everyone-own-data",
        "default-everyone-team-data",
        "default-tenant-admin-all-data",
    ]
    from gateway_project.manifest_io import Document

    results = manifests.apply([Document(exported)], actor=admin)
    assert [r.action for r in results] == ["unchanged"]


def test_rollups_are_not_double_counted_on_replay(world):
    record = log_for(world["carol"], [], tokens=7)
    _insert([("request", record)])
    _insert([("request", record)])  # a spool replayed after a crash
    viewer = principal_for_user(world["carol"])
    assert selectors.totals(viewer, LogFilters(), granularity="hour")["input_tokens"] == 107
