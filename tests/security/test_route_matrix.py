"""Route x principal matrix, deny by default (issue #10).

Proves three things against `tests/security/route_matrix.py`:

- the table covers exactly the routes that exist: every Django URL pattern (walked from the
  root resolver), every HTTP method a project view handles, and every proxy prefix; a new route
  or method without a row fails with the row to add, and a row for a removed route fails too;
- every (route, method, principal) cell answers with the class the table states, by a real
  request against real objects (Django's test client for Django routes, real HTTP to the ASGI
  app under uvicorn for the proxy), and every denied write leaves the database unchanged;
- every check or preview endpoint (test connection, SSO test, data-access preview, dry runs)
  admits exactly the principals that may save the object it checks.

The world is built once per module and committed (the in-thread proxy must see it); each cell
runs inside a transaction that is rolled back, and the module flushes what it made at the end.
"""

from __future__ import annotations

import gc
import importlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from django.apps import apps
from django.conf import settings
from django.core.management import call_command
from django.db import connection, models
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from accounts import secret_store_forms as store_forms
from accounts import va_forms
from accounts.models import AuditEvent, PersonalAccessToken, User
from accounts.policy import Principal
from accounts.selectors import principal_for_user
from accounts.sso_models import SsoConfig
from dataaccess import services as access_services
from gateway_project import manifests
from gateway_project.manifest_io import dump_yaml, parse_yaml
from proxy import db as proxy_db
from proxy.app import ROUTES as PROXY_PREFIXES
from proxy.models import McpToolCall, RequestLog
from teams.models import Team
from teams.scim_services import scim_token_issue
from tests import factories
from tests.conftest import SEED_MIGRATIONS
from tests.fakes.fixtures import FakeProvider, FakeProviderServer
from tests.providers.test_mcp import ACCEPT, INIT, serving, upstream_app
from tests.security.route_matrix import (
    CHECKS_AND_SAVES,
    PRINCIPALS,
    ROUTES,
    Outcome,
    Route,
)
from tests.servers import serve_in_thread

# The module builds one world and flushes it at the end: keep its cells on one worker when the
# suite runs with `--dist loadgroup` (with plain `load` each worker that gets cells builds it).
pytestmark = pytest.mark.xdist_group("route-matrix")

PROJECT_APPS = ("accounts.", "teams.", "providers.", "dataaccess.", "gateway_project.", "proxy.")
VIEW_METHODS = ("get", "post", "put", "patch", "delete")
LOGIN_PATH = "/login/"
SPARE_EMAIL = "spare@example.com"
SCIM_SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"

# --- the routes that exist -----------------------------------------------------------------


def _walk(resolver: URLResolver, prefix: str, namespace: str) -> Iterator[tuple[str, Any]]:
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            inner = namespace
            if entry.namespace:
                inner = f"{namespace}:{entry.namespace}" if namespace else entry.namespace
            yield from _walk(entry, prefix + str(entry.pattern), inner)
        elif isinstance(entry, URLPattern):
            if entry.name:
                key = f"{namespace}:{entry.name}" if namespace else entry.name
            else:
                key = prefix + str(entry.pattern)
            yield key, entry.callback


def django_routes() -> dict[str, Any]:
    """Every URL pattern of the URLconf: key (namespaced name or pattern) -> view callback."""
    return dict(_walk(get_resolver(), "", ""))


def proxy_prefixes() -> set[str]:
    """Every path prefix the proxy's ASGI app serves before Django."""
    from proxy import handlers  # noqa: F401 - registers the routes

    return set(PROXY_PREFIXES)


def handled_methods(callback: Any) -> set[str] | None:
    """HTTP methods a project class-based view implements; None for other callbacks."""
    view_class = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
    if view_class is None or not view_class.__module__.startswith(PROJECT_APPS):
        return None
    return {m.upper() for m in VIEW_METHODS if callable(getattr(view_class, m, None))}


TABLE: dict[str, Route] = {route.key: route for route in ROUTES}


def test_table_names_each_route_once() -> None:
    keys = [route.key for route in ROUTES]
    assert sorted(k for k in set(keys) if keys.count(k) > 1) == []


def test_every_route_is_in_the_table() -> None:
    existing = set(django_routes()) | proxy_prefixes()
    missing = sorted(existing - set(TABLE))
    assert not missing, (
        "Route(s) without a row in tests/security/route_matrix.py (deny by default): add a "
        "Route for each, stating who may use it: " + ", ".join(missing)
    )


def test_the_table_names_only_existing_routes() -> None:
    existing = set(django_routes()) | proxy_prefixes()
    stale = sorted(set(TABLE) - existing)
    assert not stale, "Rows for routes that no longer exist: remove " + ", ".join(stale)


def test_every_method_a_view_handles_is_in_the_table() -> None:
    problems = []
    for key, callback in django_routes().items():
        handled = handled_methods(callback)
        if handled is None or key not in TABLE:
            continue
        tabled = {m.split(":")[0] for m in TABLE[key].cells}
        if handled != tabled:
            problems.append(f"{key}: the view handles {sorted(handled)}, table {sorted(tabled)}")
    assert not problems, "Add or remove cells in route_matrix.py:\n" + "\n".join(problems)


def test_every_row_has_a_cell_for_every_principal() -> None:
    for route in ROUTES:
        for method, cells in route.cells.items():
            assert len(cells) == len(PRINCIPALS), (route.key, method)


# --- the world -----------------------------------------------------------------------------


@dataclass
class World:
    """Ids, credentials and addresses the cells use (committed once per module)."""

    ids: dict[str, str]
    bearer: dict[str, str]  # principal -> raw token for API, SCIM and proxy calls
    sessions: dict[str, str]  # principal -> console session key (people only)
    proxy_url: str
    bodies: dict[tuple[str, str], Any]
    baseline: tuple[Any, ...]
    digests: list[tuple[str, str]]

    def path(self, route: Route, method: str) -> str:
        return route.path_for(method).format(**self.ids)


PROVIDER_YAML = """\
type: provider-account/openai
name: prov-a
auth_data: {{type: api-key, api_key: {key}}}
base_url: {url}/v1
collaborators: [{{subject: team:alpha, role_id: provider-account-access}}]
integrations:
  - {{type: integration/model/openai, name: gpt, model_id: gpt-4o-2024-08-06}}
---
type: mcp-server/remote
name: mcp-a
description: Alpha tools
url: {mcp_url}
collaborators: [{{subject: team:alpha, role_id: mcp-server-user}}]
---
type: integration/secret-store/hashicorp/vault
name: store-a
url: http://127.0.0.1:1
auth_data: {{type: token, token: hvs.route-matrix-canary}}
---
type: role
name: auditor
displayName: Auditor
resourceType: tenant
permissions: [user:ListUsers]
---
type: role-binding
name: rb-a
subjects: [{{type: user, name: spare@example.com}}]
permissions: [{{resourceType: tenant, resourceFqn: tenant, role: auditor}}]
---
type: virtual-account
name: alpha-bot
ownedBy: {{team: alpha}}
permissions:
  - {{role_id: provider-integration-access, resource_type: provider-integration,
      resource_fqn: prov-a/gpt}}
"""

TEAM_MANIFEST = {"type": "team", "name": "alpha", "description": "changed by the matrix"}


def _seed() -> None:
    for module, function in SEED_MIGRATIONS:
        getattr(importlib.import_module(module), function)(apps, None)


def _login(user: User) -> str:
    client = APIClient()
    client.force_login(user)
    return str(client.cookies[settings.SESSION_COOKIE_NAME].value)


def _logs(member: User, alpha: Team) -> tuple[str, str]:
    caller = {
        "caller_type": "user",
        "caller_id": member.pk,
        "caller_name": member.email,
        "team_ids": f"|{alpha.pk}|",
        "teams": ["alpha"],
    }
    log = RequestLog.objects.create(
        endpoint="chat/completions",
        requested_model="prov-a/gpt",
        provider_account="prov-a",
        provider_model="gpt",
        status=200,
        request_body="matrix prompt",
        **caller,
    )
    call = McpToolCall.objects.create(server="mcp-a", tool="add", status="ok", **caller)
    return str(log.pk), str(call.pk)


def _current_yaml(kind: str, name: str) -> str:
    current = manifests.kinds()[kind].current(name)
    assert current is not None, (kind, name)
    return dump_yaml(current)


def build_world(fake_url: str, mcp_url: str, proxy_url: str) -> World:
    """People, teams, tokens and one object of every kind, all shared with team alpha only."""
    _seed()
    alpha = factories.TeamFactory(name="alpha")
    factories.TeamFactory(name="beta")
    admin = factories.tenant_admin()
    member = factories.team_member_of(alpha)
    peer = factories.team_member_of(alpha)  # the target of user and membership actions
    manager = factories.team_manager_of(Team.objects.get(name="beta"))
    factories.UserFactory(email=SPARE_EMAIL)
    text = PROVIDER_YAML.format(key=FakeProvider.OPENAI_KEY, url=fake_url, mcp_url=mcp_url)
    manifests.apply(parse_yaml(text), actor=principal_for_user(admin))
    from accounts import virtual_accounts as va

    account = va.va_get_for(Principal.system(), "alpha-bot")
    _token, va_raw = va.va_token_regenerate(
        actor=Principal.system(), account=account, grace_period_days=0
    )
    SsoConfig.objects.update_or_create(
        name="sso-a", defaults={"enable_scim": True, "protocol": "saml"}
    )
    _scim, scim_raw = scim_token_issue(
        actor=Principal.system(), sso_name="sso-a", grace_period_days=1
    )
    from accounts import services as account_services

    invite = account_services.user_invite(
        actor=principal_for_user(admin), email="invitee@example.com"
    )
    member_pat = factories.pat_for(member, "member-token")
    log_id, call_id = _logs(member, alpha)
    ids = {
        "member_pk": str(member.pk),
        "peer_pk": str(peer.pk),
        "peer_email": peer.email,
        "member_pat_pk": str(PersonalAccessToken.objects.get(user=member).pk),
        "invitee_pk": str(invite.user.pk),
        "invite_token": urlsplit(invite.link).path.rstrip("/").rsplit("/", 1)[-1],
        "alpha_pk": str(alpha.pk),
        "audit_pk": str(AuditEvent.objects.order_by("pk").values_list("pk", flat=True)[0]),
        "log_id": log_id,
        "call_id": call_id,
    }
    bearer = {
        "member_pat": member_pat,
        "manager_other_team": factories.pat_for(manager),
        "va_token": va_raw,
        "scim_token": scim_raw,
        "tenant_admin": factories.pat_for(admin),
    }
    sessions = {
        "member_pat": _login(member),
        "manager_other_team": _login(manager),
        "tenant_admin": _login(admin),
    }
    team = {**TEAM_MANIFEST, "members": sorted([member.email, peer.email])}
    return World(
        ids, bearer, sessions, proxy_url, request_bodies(team, peer), state(), fingerprint()
    )


def request_bodies(team: dict[str, Any], peer: User) -> dict[tuple[str, str], Any]:
    """The body each write sends: valid, so that allowed principals succeed."""
    team_yaml = dump_yaml(team)
    provider = manifests.kinds()["provider-account/openai"].current("prov-a")
    assert provider is not None
    provider = {**provider, "collaborators": []}
    va_manifest = {
        "type": "virtual-account",
        "name": "new-bot",
        "ownedBy": {"team": "alpha"},
        "permissions": [
            {
                "role_id": "provider-integration-access",
                "resource_type": "provider-integration",
                "resource_fqn": "prov-a/gpt",
            }
        ],
    }
    binding = {
        "subjects": [{"type": "team", "name": "alpha"}],
        "permissions": [{"resourceType": "tenant", "resourceFqn": "tenant", "role": "auditor"}],
    }
    yaml_pages = {
        "accounts:role_yaml": ("role", "auditor"),
        "accounts:role_binding_yaml": ("role-binding", "rb-a"),
        "accounts:virtual_account_yaml": ("virtual-account", "alpha-bot"),
        "accounts:secret_store_yaml": ("integration/secret-store/hashicorp/vault", "store-a"),
        "teams:team_yaml": ("team", "alpha"),
        "providers:provider_account_yaml": ("provider-account/openai", "prov-a"),
        "providers:mcp_server_yaml": ("mcp-server/remote", "mcp-a"),
    }
    bodies: dict[tuple[str, str], Any] = {}
    for key, (kind, name) in yaml_pages.items():
        text = _current_yaml(kind, name)
        bodies[(key, "POST:preview")] = {"manifest": text, "action": "preview"}
        bodies[(key, "POST:apply")] = {"manifest": text, "action": "apply"}
    access_yaml = dump_yaml(
        {
            "type": "gateway-data-access-config",
            "name": access_services.CONFIG_NAME,
            "rules": access_services.default_rules(),
        }
    )
    return bodies | {
        ("apply", "PUT"): {"manifest": team},
        ("apply", "PUT:dry-run"): {"manifest": team, "dry_run": True},
        ("apply", "PUT:provider-account"): {"manifest": provider},
        ("accounts-api:user_list", "POST"): {"email": "new@example.com"},
        ("accounts-api:user_detail", "PATCH"): {"display_name": "Renamed"},
        ("accounts-api:role_list", "POST"): {"name": "ops", "permissions": ["team:ReadTeam"]},
        ("accounts-api:role_detail", "PATCH"): {"permissions": ["team:ReadTeam"]},
        ("accounts-api:role_binding_list", "POST"): {"name": "rb-new", **binding},
        ("accounts-api:role_binding_detail", "PUT"): {"name": "rb-a", **binding},
        ("accounts-api:pat_list", "POST"): {"name": "ci"},
        ("accounts-api:va_list", "POST"): va_manifest,
        ("accounts-api:va_detail", "PUT"): {**va_manifest, "name": "alpha-bot"},
        ("accounts-api:va_regenerate", "POST"): {"grace_period_days": 0},
        ("teams-api:team_list", "POST"): {"name": "new-team"},
        ("teams-api:team_detail", "PATCH"): {"description": "changed"},
        ("teams-api:team_members", "POST"): {"email": SPARE_EMAIL},
        ("scim:users", "POST"): {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "scim-new@example.com",
        },
        ("scim:groups", "POST"): {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "scim-group",
        },
        ("scim:bulk", "POST"): {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
            "Operations": [],
        },
        ("accounts:login", "POST"): {"username": "nobody@example.com", "password": "wrong"},
        ("accounts:login", "PUT"): {"username": "nobody@example.com", "password": "wrong"},
        ("accounts:invitation_accept", "POST"): {"password1": "a", "password2": "b"},
        ("accounts:user_invite", "POST"): {"email": "new@example.com", "tenant_role": "member"},
        ("accounts:user_update", "POST"): {"display_name": "Renamed", "tenant_role": "member"},
        ("accounts:user_set_active", "POST"): {"active": "false"},
        ("accounts:role_create", "POST"): {
            "slug": "ops",
            "display_name": "Ops",
            "resource_type": "tenant",
            "permissions": ["team:ReadTeam"],
        },
        ("accounts:role_edit", "POST"): {"display_name": "Auditor 2", "permissions": []},
        ("accounts:manifest_apply", "POST:preview"): {"manifest": team_yaml, "action": "preview"},
        ("accounts:manifest_apply", "POST:apply"): {"manifest": team_yaml, "action": "apply"},
        ("accounts:pat_create", "POST"): {"name": "console-token", "expiry": "30"},
        ("teams:team_member_remove", "POST"): {"user": peer.pk, "role": "member"},
        ("scim:search", "POST"): {"schemas": [SCIM_SEARCH]},
        ("scim:users-search", "POST"): {"schemas": [SCIM_SEARCH]},
        ("scim:groups-search", "POST"): {"schemas": [SCIM_SEARCH]},
        ("teams:team_create", "POST"): {"name": "new-team"},
        ("accounts:virtual_account_create", "POST"): {
            "name": "new-bot",
            "owner_team": "alpha",
            "permissions": [f"provider-integration-access{va_forms.SEP}prov-a/gpt"],
            "expiration": "never",
        },
        ("accounts:virtual_account_token_regenerate", "POST"): {"grace_period_days": 0},
        ("accounts:secret_store_edit", "POST"): {
            store_forms.field_name("hashicorp/vault", "url"): "http://127.0.0.1:2",
            store_forms.field_name("hashicorp/vault", "token"): "hvs.route-matrix-canary-2",
        },
        ("teams:team_update", "POST"): {"name": "alpha", "description": "changed"},
        ("teams:team_member_add", "POST"): {"email": SPARE_EMAIL, "role": "member"},
        ("dataaccess:data_access_edit", "POST:preview"): {
            "mode": "yaml",
            "manifest": access_yaml,
            "action": "preview",
            "subject": "user:spare@example.com",
        },
        ("dataaccess:data_access_edit", "POST:save"): {
            "mode": "yaml",
            "manifest": access_yaml,
            "action": "save",
        },
        ("/api/llm/", "POST"): {
            "model": "prov-a/gpt",
            "messages": [{"role": "user", "content": "hi"}],
        },
        ("/mcp/v1/", "POST"): INIT,
    }


VOLATILE = {"last_used_at", "last_tested_at", "last_test_ok", "last_test_message"}
NOT_STATE = {"auditevent", "session", "requestlog", "mcptoolcall", "rollup", "jobstate"}


def state_columns() -> list[tuple[type[models.Model], list[models.Field[Any, Any]]]]:
    """The configuration tables of the project's apps (no logs, audit or sessions) and the
    columns a write could change (not last-used bookkeeping or auto timestamps)."""
    tables = []
    for model in apps.get_models():
        if not model.__module__.startswith(PROJECT_APPS) or model._meta.model_name in NOT_STATE:
            continue
        fields = [
            f
            for f in model._meta.concrete_fields
            if f.name not in VOLATILE
            and not (isinstance(f, models.DateTimeField) and (f.auto_now or f.auto_now_add))
        ]
        tables.append((model, fields))
    return tables


def state() -> tuple[Any, ...]:
    """Every configuration row, for a readable difference."""
    return tuple(
        (model._meta.label, model._default_manager.values_list(*(f.attname for f in fields)))
        for model, fields in state_columns()
    )


def fingerprint() -> list[tuple[str, str]]:
    """One digest per configuration table, in one query (a snapshot costs ~1 ms)."""
    quote = connection.ops.quote_name
    parts = []
    for model, fields in state_columns():
        columns = ", ".join(quote(str(f.column)) for f in fields)
        table = quote(model._meta.db_table)
        digest = "md5(coalesce(string_agg(r, '|' ORDER BY r), ''))"
        rows = f"SELECT row({columns})::text AS r FROM {table}"  # noqa: S608 - quoted names
        label = model._meta.label
        parts.append(f"SELECT '{label}', {digest} FROM ({rows}) t")  # noqa: S608 - model label
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(parts))
        return [(str(label), str(digest)) for label, digest in cursor.fetchall()]


def state_diff(before: tuple[Any, ...], after: tuple[Any, ...]) -> dict[str, Any]:
    """The tables whose rows differ, with the rows added and removed."""
    old = {label: {repr(row) for row in rows} for label, rows in before}
    new = {label: {repr(row) for row in rows} for label, rows in after}
    return {
        label: {"added": sorted(rows - old[label]), "removed": sorted(old[label] - rows)}
        for label, rows in new.items()
        if rows != old[label]
    }


@pytest.fixture(scope="module")
def world(django_db_setup: None, django_db_blocker: Any) -> Iterator[World]:
    fake = FakeProviderServer()
    fake.start()
    with (
        django_db_blocker.unblock(),
        serving(upstream_app()) as mcp_base,
    ):
        from gateway_project.asgi import application

        try:
            with serve_in_thread(application) as proxy_url:
                yield build_world(fake.url, f"{mcp_base}/mcp", proxy_url)
        finally:
            fake.stop()
            proxy_db.shutdown()  # the proxy's database threads hold their own connections
            gc.collect()  # and so do the finished server threads until collected
            call_command("flush", interactive=False, verbosity=0)
            _seed()


# --- the cells -----------------------------------------------------------------------------


def _cells() -> list[Any]:
    params = []
    for route in ROUTES:
        for method, cells in route.cells.items():
            for principal, expected in zip(PRINCIPALS, cells, strict=True):
                params.append(
                    pytest.param(
                        route, method, principal, expected, id=f"{route.key}-{method}-{principal}"
                    )
                )
    return params


def _client(world: World, route: Route, principal: str) -> APIClient:
    client = APIClient()
    people_in_console = route.surface == "console" and principal in world.sessions
    if people_in_console:
        client.cookies[settings.SESSION_COOKIE_NAME] = world.sessions[principal]
    elif principal in world.bearer:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {world.bearer[principal]}")
    return client


def django_call(world: World, route: Route, method: str, principal: str) -> tuple[int, str]:
    client = _client(world, route, principal)
    verb = method.split(":")[0].lower()
    body = world.bodies.get((route.key, method))
    path = world.path(route, method)
    if route.surface == "console":
        response = getattr(client, verb)(path, body or {})
    elif route.surface == "scim":
        payload = json.dumps(body) if body is not None else None
        response = getattr(client, verb)(path, payload, content_type="application/scim+json")
    else:
        response = getattr(client, verb)(path, body, format="json")
    return response.status_code, response.get("Location", "")


def proxy_call(world: World, route: Route, method: str, principal: str) -> tuple[int, str]:
    headers = {"Accept": ACCEPT}
    if principal in world.bearer:
        headers["Authorization"] = f"Bearer {world.bearer[principal]}"
    response = httpx.request(
        method.split(":")[0],
        world.proxy_url + world.path(route, method),
        json=world.bodies.get((route.key, method)),
        headers=headers,
        timeout=20,
    )
    return response.status_code, response.headers.get("location", "")


def outcome_of(status: int, location: str) -> Outcome:
    """The class of an answer (PUBLIC routes are checked by `_check_public`)."""
    if status in (401, 403, 404):
        return Outcome.DENY
    if 300 <= status < 400 and urlsplit(location).path.startswith(LOGIN_PATH):
        return Outcome.DENY
    if status < 400:
        return Outcome.ALLOW
    if status in (400, 409, 422):
        return Outcome.INVALID
    if status in (405, 501):
        return Outcome.UNSUPPORTED
    return Outcome("error")  # ValueError: an unexpected status fails the cell loudly


@pytest.mark.parametrize(("route", "method", "principal", "expected"), _cells())
def test_route(
    route: Route, method: str, principal: str, expected: Outcome, world: World, db: None
) -> None:
    call = proxy_call if route.surface == "proxy" else django_call
    status, location = call(world, route, method, principal)
    where = f"{method} {world.path(route, method)} as {principal}: {status} {location}"
    if expected is Outcome.PUBLIC:
        assert status < 500, where
        return
    assert outcome_of(status, location) is expected, where
    refused_write = expected is not Outcome.ALLOW and method.split(":")[0] != "GET"
    if refused_write and fingerprint() != world.digests:
        changed = state_diff(world.baseline, state())
        pytest.fail(f"a refused write changed {changed}: {where}")


# --- checks and previews need the rights of saving -----------------------------------------


def _allowed(cells: tuple[Outcome, ...]) -> set[str]:
    passing = {Outcome.ALLOW, Outcome.INVALID}
    return {p for p, c in zip(PRINCIPALS, cells, strict=True) if c in passing}


@pytest.mark.parametrize(
    ("check", "save"), list(CHECKS_AND_SAVES.items()), ids=[f"{k}-{m}" for k, m in CHECKS_AND_SAVES]
)
def test_checks_and_previews_need_the_rights_of_saving(
    check: tuple[str, str], save: tuple[str, str]
) -> None:
    check_cells = TABLE[check[0]].cells[check[1]]
    save_cells = TABLE[save[0]].cells[save[1]]
    assert _allowed(check_cells) == _allowed(save_cells)


def test_every_check_endpoint_is_paired_with_its_save() -> None:
    """Every route or variant that tests, previews or dry-runs is in CHECKS_AND_SAVES."""
    words = ("test", "preview", "dry-run")
    checks = {
        (route.key, method)
        for route in ROUTES
        for method in route.cells
        if any(w in route.key or w in method for w in words)
    }
    assert checks <= set(CHECKS_AND_SAVES), sorted(checks - set(CHECKS_AND_SAVES))
