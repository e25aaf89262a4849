"""Secrets in no sink (issue #10).

With canary secrets (provider keys, a PAT, a virtual-account token, a SCIM token, an IdP client
secret, a secret-store credential and a webhook signing secret) created through the Apply API
and the REST API, exercised through the real proxy (ok and failing calls), test connection
(refused credentials, unreachable store), export, the API and every console page of the
objects, no canary appears in:

- the web process's log records (every logger at DEBUG, the in-thread gateway's included);
- request-log rows (every column), audit events (every column), API and error bodies, headers;
- console pages (GET of each object's pages and the pages listing them);
- any text or JSON column of any table (tokens are stored only as keyed digests plus their
  documented visible prefix; other secrets encrypted).

Wrong tokens get one answer whatever they are: for the proxy (both dialects), the REST API and
SCIM, garbage, an unknown PAT, a revoked PAT, an expired PAT, an unknown virtual-account token,
the token of a deleted virtual account and a malformed JWT get the same status, body and
headers (less Date).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.apps import apps
from django.db import models
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import AuditEvent, PersonalAccessToken, User, VirtualAccount
from accounts.selectors import principal_for_user
from accounts.tokens import PAT_PREFIX, VA_PREFIX, VISIBLE_SECRET_CHARS, random_secret
from accounts.virtual_accounts import va_delete
from proxy.models import RequestLog
from teams.scim_services import scim_token_issue
from tests import factories
from tests.fakes import fixtures as fake_fixtures
from tests.fakes.fixtures import FakeProvider
from tests.processes import (
    TEST_RUN_SETTINGS,
    env_without,
    free_port,
    http_get,
    manage,
    stop,
    wait_until,
)
from tests.proxy import conftest as proxy_fixtures
from tests.proxy.conftest import Gateway

# The proxy tests' fixtures, used here by name.
fake_provider_server = fake_fixtures.fake_provider_server
fake_provider = fake_fixtures.fake_provider
gateway_factory = proxy_fixtures.gateway_factory
gateway = proxy_fixtures.gateway
_close_proxy_db_threads = proxy_fixtures._close_proxy_db_threads

pytestmark = pytest.mark.timeout(120)
SCIM_PREFIX = "gw_scim_"
IGNORED_HEADERS = {"date", "x-request-id", "request-id"}


def _canary(kind: str) -> str:
    return f"{kind}-canary-{secrets.token_hex(8)}"


class Sinks:
    """Everything a client, an operator or an attacker with the database could read."""

    def __init__(self) -> None:
        self.responses: list[str] = []

    def keep(self, what: str, status: int, body: bytes | str, headers: Iterable[Any]) -> None:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        self.responses.append(f"{what} -> {status}\n{list(headers)}\n{text}")

    def keep_httpx(self, what: str, response: httpx.Response) -> None:
        self.keep(what, response.status_code, response.content, response.headers.multi_items())

    def keep_django(self, what: str, response: Any) -> None:
        body = b"".join(response.streaming_content) if response.streaming else response.content
        self.keep(what, response.status_code, body, response.headers.items())


def rows_text(model: type[models.Model]) -> str:
    """Every column of every row, as JSON text."""
    return json.dumps(list(model._default_manager.values()), default=str)


def text_columns(model: type[models.Model]) -> list[str]:
    return [
        f.attname
        for f in model._meta.concrete_fields
        if isinstance(f, models.CharField | models.TextField | models.JSONField)
    ]


def database_text() -> dict[str, str]:
    """Every text and JSON column of every table, as stored (encrypted fields as ciphertext)."""
    dumped: dict[str, str] = {}
    for model in apps.get_models():
        columns = [c for c in text_columns(model) if c]
        if not columns:
            continue
        table, quoted = model._meta.db_table, ", ".join(f'"{c}"' for c in columns)
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(f'SELECT {quoted} FROM "{table}"')  # noqa: S608 - names from models
            dumped[table] = json.dumps(cursor.fetchall(), default=str)
    return dumped


def secret_fragments(raw: str, head: str) -> list[str]:
    """The token, its prefix one character past the visible one, and 10-character windows of
    the part never shown: none may be stored anywhere."""
    hidden = raw[len(head) + VISIBLE_SECRET_CHARS :]
    windows = [hidden[i : i + 10] for i in range(0, len(hidden) - 9)]
    return [raw, raw[: len(head) + VISIBLE_SECRET_CHARS + 1], *windows]


def found(canaries: dict[str, str], text: str) -> list[str]:
    return sorted(name for name, value in canaries.items() if value in text)


def apply(client: APIClient, manifest: dict[str, Any], sinks: Sinks) -> None:
    response = client.put("/api/v1/apply", {"manifest": manifest}, format="json")
    sinks.keep_django(f"apply {manifest['type']}", response)
    assert response.status_code == 200, response.content


def provision(gw: Gateway, admin: User, api: APIClient, sinks: Sinks) -> dict[str, str]:
    """Create every kind of secret through the API; returns name -> raw canary value."""
    wrong_key, updated_key = _canary("sk-wrong"), _canary("sk-updated")
    canaries = {
        "openai key": FakeProvider.OPENAI_KEY,
        "anthropic key": FakeProvider.ANTHROPIC_KEY,
        "aws secret key": FakeProvider.AWS_SECRET_ACCESS_KEY,
        "wrong provider key (first)": wrong_key,
        "wrong provider key (updated)": updated_key,
        "sso client secret": _canary("sso"),
        "vault token": _canary("hvs"),
        "webhook secret": _canary("whsec"),
    }
    account = {
        "type": "provider-account/openai",
        "name": "openai-wrong",
        "auth_data": {"type": "api-key", "api_key": wrong_key},
        "base_url": f"{gw.fake.url}/v1",
        "collaborators": [{"subject": "team:ml", "role_id": "provider-account-access"}],
        "integrations": [{"type": "integration/model/openai", "name": "m", "model_id": "gpt-4o"}],
    }
    apply(api, account, sinks)
    account["auth_data"] = {"type": "api-key", "api_key": updated_key}  # an update
    apply(api, account, sinks)
    sso = {
        "type": "settings/sso",
        "name": "canary-oidc",
        "provider": "okta",
        "auth_data": {
            "type": "oidc",
            "client_id": "gw",
            "client_secret": canaries["sso client secret"],
            "issuer": "https://okta.example.com",
        },
    }
    apply(api, sso, sinks)
    scim_sso = {
        "type": "settings/sso",
        "name": "canary-saml",
        "auth_data": {
            "type": "saml",
            "enable_scim": True,
            "idp_entity_id": "https://idp.example.com",
            "idp_endpoint": "https://idp.example.com/sso",
        },
    }
    apply(api, scim_sso, sinks)
    vault = {
        "type": "integration/secret-store/hashicorp/vault",
        "name": "canary-vault",
        "url": f"http://127.0.0.1:{free_port()}",  # nothing listens: test connection fails
        "auth_data": {"type": "token", "token": canaries["vault token"]},
    }
    apply(api, vault, sinks)
    bot = {
        "type": "virtual-account",
        "name": "canary-bot",
        "ownedBy": {"team": "ml"},
        "permissions": [
            {
                "role_id": "provider-account-access",
                "resource_type": "provider-account",
                "resource_fqn": "openai-main",
            }
        ],
        "notification_target": {
            "type": "webhook",
            "url": "https://hooks.example.com/in",
            "secret": canaries["webhook secret"],
        },
    }
    apply(api, bot, sinks)
    # The two answers that show a token once are not sinks: they are the point.
    revealed = api.post("/api/v1/virtual-accounts/canary-bot/get-token")
    assert revealed.status_code == 200, revealed.content
    canaries["virtual account token"] = revealed.json()["token"]
    created = api.post("/api/v1/personal-access-tokens", {"name": "canary"}, format="json")
    assert created.status_code == 201, created.content
    canaries["personal access token"] = created.json()["token"]
    _token, canaries["scim token"] = scim_token_issue(
        actor=principal_for_user(admin), sso_name="canary-saml", grace_period_days=0
    )
    return canaries


def exercise_proxy(gw: Gateway, canaries: dict[str, str], sinks: Sinks) -> int:
    """Calls that work and calls that fail at the provider; returns how many were made."""
    calls = [
        ("openai-main/gpt-4o", canaries["virtual account token"], 200),
        ("openai-main/gpt-4o", canaries["personal access token"], 200),
        ("anthropic-main/claude", canaries["personal access token"], 200),
        ("bedrock-main/nova", canaries["personal access token"], 200),
        ("openai-wrong/m", canaries["personal access token"], 502),
    ]
    with httpx.Client(base_url=gw.url, trust_env=False, timeout=30) as http:
        for model, token, status in calls:
            for stream in (False, True):
                response = http.post(
                    "/api/llm/v1/chat/completions",
                    json={
                        "model": model,
                        "stream": stream,
                        "messages": [{"role": "user", "content": "hello"}],
                    },
                    headers={"authorization": f"Bearer {token}"},
                )
                sinks.keep_httpx(f"proxy {model} stream={stream}", response)
                assert response.status_code == status, response.text
        scim = http.get(
            "/scim/v2/Users", headers={"authorization": f"Bearer {canaries['scim token']}"}
        )
        sinks.keep_httpx("scim list", scim)
        assert scim.status_code == 200
    return len(calls) * 2


CONSOLE_PAGES = (
    "/teams/",
    "/tokens/",
    "/audit/",
    "/apply/",
    "/monitor/requests/",
    "/models/",
    "/models/openai-wrong/",
    "/models/openai-wrong/settings/",
    "/models/openai-wrong/access/",
    "/models/openai-wrong/yaml/",
    "/settings/sso/",
    "/settings/sso/canary-oidc/",
    "/settings/secret-stores/",
    "/settings/secret-stores/canary-vault/",
    "/settings/secret-stores/canary-vault/edit/",
    "/settings/secret-stores/canary-vault/yaml/",
    "/access/virtual-accounts/",
    "/access/virtual-accounts/canary-bot/",
    "/access/virtual-accounts/canary-bot/yaml/",
)
API_READS = (
    "/api/v1/export",
    "/api/v1/audit-events",
    "/api/v1/provider-accounts",
    "/api/v1/provider-accounts/openai-wrong",
    "/api/v1/virtual-accounts",
    "/api/v1/virtual-accounts/canary-bot",
    "/api/v1/personal-access-tokens",
)


def exercise_control_plane(admin: User, api: APIClient, sinks: Sinks) -> None:
    """Failing test connections, export, API reads and every console page of the objects."""
    refused = api.post("/api/v1/provider-accounts/openai-wrong/test-connection")
    sinks.keep_django("test connection (refused key)", refused)
    assert refused.json()["ok"] is False
    for path in API_READS:
        response = api.get(path)
        sinks.keep_django(path, response)
        assert response.status_code == 200, (path, response.content[:300])
    console = Client()
    console.force_login(admin)
    store_test = console.post("/settings/secret-stores/canary-vault/test-connection/")
    sinks.keep_django("secret store test connection (unreachable)", store_test)
    console_test = console.post("/models/openai-wrong/test-connection/")
    sinks.keep_django("console test connection (refused key)", console_test)
    audit_pages = [f"/audit/{pk}/" for pk in AuditEvent.objects.values_list("pk", flat=True)]
    for path in (*CONSOLE_PAGES, *audit_pages):
        page = console.get(path)
        sinks.keep_django(path, page)
        assert page.status_code == 200, (path, page.status_code)


def wait_for_request_logs(expected: int) -> None:
    deadline = time.monotonic() + 10
    while RequestLog.objects.count() < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert RequestLog.objects.count() >= expected


def test_canary_secrets_reach_no_log_row_page_or_answer(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("django", "django.db.backends", "celery", "httpx", "httpcore", "proxy"):
        caplog.set_level(logging.DEBUG, logger=name)
    admin = factories.tenant_admin()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {factories.pat_for(admin, 'bootstrap')}")
    sinks = Sinks()

    canaries = provision(gateway, admin, api, sinks)
    calls = exercise_proxy(gateway, canaries, sinks)
    exercise_control_plane(admin, api, sinks)
    wait_for_request_logs(calls)

    # Positive controls: the secrets were in play and each sink holds what it should.
    assert len(caplog.records) > 20
    assert found(canaries, json.dumps(gateway.fake.requests())) != []
    assert "hello" in rows_text(RequestLog)
    assert "canary-bot" in rows_text(AuditEvent)
    assert found(canaries, caplog.text) == []
    assert found(canaries, "\n".join(sinks.responses)) == []
    assert found(canaries, rows_text(RequestLog)) == []
    assert found(canaries, rows_text(AuditEvent)) == []
    assert AuditEvent.objects.count() >= 6
    stored = database_text()
    plaintext = {k: v for k, v in canaries.items() if k != "webhook secret"}
    leaked = {table: found(plaintext, text) for table, text in stored.items()}
    assert {table: names for table, names in leaked.items() if names} == {}
    visible = canaries["personal access token"][: len(PAT_PREFIX) + VISIBLE_SECRET_CHARS]
    assert visible in stored[PersonalAccessToken._meta.db_table]
    for name, head in (
        ("personal access token", PAT_PREFIX),
        ("virtual account token", f"{VA_PREFIX}canary-bot_"),
        ("scim token", SCIM_PREFIX),
    ):
        fragments = dict(enumerate(secret_fragments(canaries[name], head)))
        leaks = {
            table: found({str(k): v for k, v in fragments.items()}, text)
            for table, text in stored.items()
        }
        assert {t: f for t, f in leaks.items() if f} == {}, name


def test_webhook_signing_secret_is_not_stored_in_clear(gateway_factory: Any) -> None:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {factories.pat_for(factories.tenant_admin())}")
    secret = _canary("whsec")
    target = {"type": "webhook", "url": "https://hooks.example.com/in", "secret": secret}
    manifest = {
        "type": "virtual-account",
        "name": "hooked",
        "ownedBy": {"team": "ml"},
        "permissions": [
            {
                "role_id": "provider-account-access",
                "resource_type": "provider-account",
                "resource_fqn": "openai-main",
            }
        ],
        "notification_target": target,
    }
    assert api.put("/api/v1/apply", {"manifest": manifest}, format="json").status_code == 200
    assert found({"webhook secret": secret}, json.dumps(database_text())) == []
    stored = VirtualAccount.objects.get(name="hooked").notification_target
    assert stored is not None
    assert stored["secret"] == secret  # encrypted at rest, still there to sign with


# --- wrong tokens: one answer, whatever the token --------------------------------------------


def wrong_tokens(gw: Gateway) -> dict[str, str]:
    """Each kind of token that must not work, made through the services where one exists."""
    member: User = gw.member
    revoked_raw = factories.pat_for(member, "revoked")
    PersonalAccessToken.objects.filter(name="revoked").update(revoked_at=timezone.now())
    expired_raw = factories.pat_for(member, "expired")
    PersonalAccessToken.objects.filter(name="expired").update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    admin = factories.tenant_admin()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {factories.pat_for(admin)}")
    manifest = {
        "type": "virtual-account",
        "name": "doomed-bot",
        "ownedBy": {"team": "ml"},
        "permissions": [
            {
                "role_id": "provider-account-access",
                "resource_type": "provider-account",
                "resource_fqn": "openai-main",
            }
        ],
    }
    assert api.put("/api/v1/apply", {"manifest": manifest}, format="json").status_code == 200
    deleted_raw = api.post("/api/v1/virtual-accounts/doomed-bot/get-token").json()["token"]
    va_delete(
        actor=principal_for_user(admin), account=VirtualAccount.objects.get(name="doomed-bot")
    )
    return {
        "garbage": "definitely not a token",
        "unknown PAT": PAT_PREFIX + random_secret(),
        "revoked PAT": revoked_raw,
        "expired PAT": expired_raw,
        "unknown VA token": f"{VA_PREFIX}doomed-bot_{random_secret()}",
        "VA token of a deleted account": deleted_raw,
        "malformed JWT": "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.",
        "unknown SCIM token": SCIM_PREFIX + random_secret(),
    }


ENDPOINTS = {
    "proxy (OpenAI)": (
        "POST",
        "/api/llm/v1/chat/completions",
        "authorization",
        {"model": "openai-main/gpt-4o", "messages": [{"role": "user", "content": "x"}]},
    ),
    "proxy (Anthropic)": (
        "POST",
        "/api/llm/v1/messages",
        "x-api-key",
        {"model": "anthropic-main/claude", "max_tokens": 8, "messages": []},
    ),
    "REST API": ("GET", "/api/v1/me", "authorization", None),
    "SCIM": ("GET", "/scim/v2/Users", "authorization", None),
}


def answer_of(response: httpx.Response) -> tuple[int, bytes, list[tuple[str, str]]]:
    headers = [(k, v) for k, v in response.headers.multi_items() if k not in IGNORED_HEADERS]
    return response.status_code, response.content, headers


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_wrong_tokens_get_one_answer_whatever_the_token(
    endpoint: str, gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    method, path, header, body = ENDPOINTS[endpoint]
    tokens = wrong_tokens(gateway)
    answers: dict[str, tuple[int, bytes, list[tuple[str, str]]]] = {}
    with httpx.Client(base_url=gateway.url, trust_env=False, timeout=30) as http:
        for name, token in tokens.items():
            value = f"Bearer {token}" if header == "authorization" else token
            response = http.request(method, path, json=body, headers={header: value})
            answers[name] = answer_of(response)

    reference = answers["garbage"]
    assert reference[0] == 401
    assert {name: a for name, a in answers.items() if a != reference} == {}
    assert found(tokens, caplog.text) == []
    assert found(tokens, reference[1].decode()) == []


# --- a real `gateway serve`: web server and worker logs --------------------------------------

SERVE_ADMIN = "owner@example.com"


def _serve_manifests(
    fake_url: str, canaries: dict[str, str], dead_port: int
) -> list[dict[str, Any]]:
    collaborators = [{"subject": "user:" + SERVE_ADMIN, "role_id": "provider-account-access"}]
    return [
        {
            "type": "provider-account/openai",
            "name": "served-openai",
            "auth_data": {"type": "api-key", "api_key": FakeProvider.OPENAI_KEY},
            "base_url": f"{fake_url}/v1",
            "collaborators": collaborators,
            "integrations": [{"type": "integration/model/openai", "name": "m", "model_id": "m"}],
        },
        {
            "type": "provider-account/openai",
            "name": "served-wrong",
            "auth_data": {"type": "api-key", "api_key": canaries["wrong provider key"]},
            "base_url": f"{fake_url}/v1",
            "collaborators": collaborators,
            "integrations": [{"type": "integration/model/openai", "name": "m", "model_id": "m"}],
        },
        {
            "type": "settings/sso",
            "name": "served-oidc",
            "auth_data": {
                "type": "oidc",
                "client_id": "gw",
                "client_secret": canaries["sso client secret"],
                "issuer": "https://okta.example.com",
            },
        },
        {
            "type": "integration/secret-store/hashicorp/vault",
            "name": "served-vault",
            "url": f"http://127.0.0.1:{dead_port}",
            "auth_data": {"type": "token", "token": canaries["vault token"]},
        },
        {"type": "team", "name": "bots", "managers": [SERVE_ADMIN], "members": []},
        {
            "type": "virtual-account",
            "name": "served-bot",
            "ownedBy": {"team": "bots"},
            "permissions": [
                {
                    "role_id": "provider-account-access",
                    "resource_type": "provider-account",
                    "resource_fqn": "served-openai",
                }
            ],
            "secret_store_config": {"integration_fqn": "served-vault", "secret_path": "gw/bot"},
            "notification_target": {
                "type": "webhook",
                "url": f"http://127.0.0.1:{dead_port}/hook",
                "secret": canaries["webhook secret"],
            },
        },
    ]


def _served_calls(base: str, pat: str, sinks: Sinks) -> dict[str, str]:
    """Proxy calls (ok, failing), test connection, token reveal and rotation, sync, export."""
    revealed: dict[str, str] = {}
    auth = {"authorization": f"Bearer {pat}"}
    with httpx.Client(base_url=base, trust_env=False, timeout=30, headers=auth) as http:
        for model, status in (("served-openai/m", 200), ("served-wrong/m", 502)):
            body = {"model": model, "messages": [{"role": "user", "content": "hello"}]}
            response = http.post("/api/llm/v1/chat/completions", json=body)
            sinks.keep_httpx(model, response)
            assert response.status_code == status, response.text
        got = http.post("/api/v1/virtual-accounts/served-bot/get-token")
        assert got.status_code == 200, got.text
        revealed["virtual account token"] = got.json()["token"]
        rotated = http.post("/api/v1/virtual-accounts/served-bot/regenerate-token")
        assert rotated.status_code == 200, rotated.text
        revealed["rotated virtual account token"] = rotated.json()["token"]
        for method, path, expected in (
            ("POST", "/api/v1/virtual-accounts/served-bot/sync", 202),
            ("POST", "/api/v1/provider-accounts/served-wrong/test-connection", 200),
            ("GET", "/api/v1/export", 200),
            ("GET", "/api/v1/audit-events", 200),
        ):
            response = http.request(method, path)
            sinks.keep_httpx(path, response)
            assert response.status_code == expected, (path, response.text)
        bad = http.post(
            "/api/llm/v1/chat/completions",
            json={"model": "served-openai/m", "messages": []},
            headers={"authorization": f"Bearer {revealed['virtual account token']}x"},
        )
        sinks.keep_httpx("wrong token", bad)
        assert bad.status_code == 401
    return revealed


@pytest.mark.timeout(240)
def test_canary_secrets_reach_no_server_or_worker_log(
    tmp_path: Path, fake_provider: FakeProvider
) -> None:
    """`gateway serve` (web + worker, DEBUG logging): its whole output holds no canary."""
    canaries = {
        "openai key": FakeProvider.OPENAI_KEY,
        "wrong provider key": _canary("sk-wrong"),
        "sso client secret": _canary("sso"),
        "vault token": _canary("hvs"),
        "webhook secret": _canary("whsec"),
    }
    env = env_without(
        *TEST_RUN_SETTINGS,
        GATEWAY_VAR_DIR=str(tmp_path / "var"),
        GATEWAY_ADMIN_EMAIL=SERVE_ADMIN,
        GATEWAY_ADMIN_PASSWORD="x" * 16,
        GATEWAY_LOG_LEVEL="DEBUG",
        GATEWAY_WEBHOOK_ALLOWLIST="127.0.0.1",
        PYTHONUNBUFFERED="1",
    )
    port, log = free_port(), tmp_path / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "gateway"), "serve", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    sinks = Sinks()
    try:
        wait_until(lambda: _up(process, port, log), 90, "gateway serve to answer /healthz")
        manifests = _serve_manifests(fake_provider.url, canaries, free_port())
        manage(env, "apply", "-f", "-", stdin="\n---\n".join(json.dumps(m) for m in manifests))
        pat = manage(env, "create_pat", "--user", SERVE_ADMIN, "--name", "served")
        canaries["personal access token"] = pat
        canaries |= _served_calls(f"http://127.0.0.1:{port}", pat, sinks)
        # The worker tries the rotation's notification and the store write (both fail).
        wait_until(
            lambda: _worker_retried(log.read_text(errors="replace")),
            60,
            "the worker to retry the store write and the notification",
        )
    finally:
        stop(process)
    output = log.read_text(errors="replace")
    assert " DEBUG " in output  # the web process logged at DEBUG
    assert found(canaries, output) == []
    assert found(canaries, "\n".join(sinks.responses)) == []


def _up(process: subprocess.Popen[bytes], port: int, log: Path) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"gateway serve exited:\n{log.read_text(errors='replace')}")
    try:
        return http_get(port, "/healthz", timeout=2)[0] == 200
    except OSError:
        return False


def _worker_retried(output: str) -> bool:
    """Both tasks that handle a secret ran in the worker and failed over to a retry."""
    return all(
        re.search(rf"{task}\[[0-9a-f-]+\] retry:", output)
        for task in ("secret_store_sync_task", "va_notify_task")
    )
