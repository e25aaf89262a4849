"""SCIM 2.0: tokens, Users and Groups over HTTP, IdP quirks, deactivation, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.audit import audit_source
from accounts.models import (
    AuditEvent,
    ConfigVersion,
    PersonalAccessToken,
    TokenSecret,
    User,
    VirtualAccount,
    VirtualAccountToken,
)
from accounts.policy import Permission, PolicyDenied, Principal, decide
from accounts.tokens import va_token_generate
from gateway_project.crypto import keyed_digest
from gateway_project.errors import Conflict
from proxy.auth import grant_for_token
from teams import scim_services
from teams.models import Team, TeamMembership
from teams.scim_models import ScimGroup, ScimToken, ScimUser
from teams.scim_protocol import decode_id, encode_id
from teams.scim_services import scim_enabled_for, scim_team_name_for, scim_token_issue
from teams.services import team_membership_add
from tests import factories
from tests.teams.scim_helpers import (
    ENTERPRISE,
    ERROR,
    GROUP,
    SEARCH,
    USER,
    ScimClient,
    enable_scim,
    group_body,
    issue_token,
    user_body,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def scim(monkeypatch: pytest.MonkeyPatch) -> ScimClient:
    enable_scim("okta", monkeypatch)
    return ScimClient(issue_token("okta"))


def create_user(scim: ScimClient, email: str, **extra: Any) -> dict[str, Any]:
    reply = scim.post("Users", user_body(email, **extra))
    assert reply.status == 201, reply.body
    body: dict[str, Any] = reply.body
    return body


def create_group(scim: ScimClient, name: str, members: list[str] | None = None) -> dict[str, Any]:
    reply = scim.post("Groups", group_body(name, members or []))
    assert reply.status == 201, reply.body
    body: dict[str, Any] = reply.body
    return body


def team_of(group: dict[str, Any]) -> Team:
    pk = decode_id("Group", group["id"])
    assert pk is not None
    return Team.objects.get(pk=pk)


def assert_error(reply: Any, status: int, scim_type: str | None = None) -> None:
    assert reply.status == status, reply.body
    assert reply.body["schemas"] == [ERROR]
    assert reply.body["status"] == str(status)
    if scim_type is not None:
        assert reply.body["scimType"] == scim_type
    assert reply.headers["Content-Type"].startswith("application/scim+json")


# --- tokens ------------------------------------------------------------------------------


def test_requests_without_a_scim_token_get_a_scim_401(scim, admin_user):
    pat = factories.pat_for(admin_user)
    logged_in = Client()
    logged_in.force_login(admin_user)

    replies = [
        ScimClient(None).get("Users"),
        ScimClient("gw_scim_not-a-real-token").get("Users"),
        ScimClient(pat).get("Users"),  # a tenant admin's PAT is not a SCIM token
        ScimClient(None, client=logged_in).post("Users", user_body("x@example.com")),
        ScimClient(None).get("no-such-endpoint"),
    ]

    for reply in replies:
        assert_error(reply, 401)
        assert reply.headers["WWW-Authenticate"] == 'Bearer realm="scim"'
    assert not User.objects.filter(email="x@example.com").exists()


def test_the_scim_token_works_nowhere_but_scim(scim):
    principal = scim_services.scim_principal_for(ScimToken.objects.get())

    api = Client().get("/api/v1/users", headers={"Authorization": f"Bearer {scim.token}"})

    assert api.status_code == 401
    assert grant_for_token(str(scim.token)) is None  # the proxy does not know it
    assert decide(principal, Permission.SCIM_PROVISION).allowed is True
    assert decide(principal, Permission.USER_MANAGE).allowed is False
    assert decide(principal, Permission.TEAM_MANAGE, team_id=1).allowed is False


def test_the_token_is_stored_as_a_keyed_digest_only(monkeypatch):
    enable_scim("okta", monkeypatch)

    token, raw = scim_token_issue(actor=Principal.system(), sso_name="okta", grace_period_days=1)

    stored = ScimToken.objects.get(pk=token.pk)
    assert raw.startswith("gw_scim_")
    assert stored.digest == keyed_digest(raw)
    assert stored.prefix == raw[:14]
    assert raw not in json.dumps(list(ScimToken.objects.values()), default=str)
    assert raw not in json.dumps(list(AuditEvent.objects.values()), default=str)
    event = AuditEvent.objects.get(action="scim_token.issued")
    assert (event.actor, event.source) == ("system", "system")


def test_regenerating_keeps_the_old_token_for_the_grace_period(monkeypatch):
    enable_scim("okta", monkeypatch)
    old = issue_token("okta")

    new = issue_token("okta", grace_period_days=2)

    assert ScimClient(old).get("Users").status == 200
    assert ScimClient(new).get("Users").status == 200
    old_row = ScimToken.objects.get(digest=keyed_digest(old))
    assert old_row.status == "grace"
    assert old_row.expires_at is not None
    assert timezone.now() + timedelta(days=2) - old_row.expires_at < timedelta(minutes=1)
    ScimToken.objects.filter(pk=old_row.pk).update(expires_at=timezone.now())
    assert_error(ScimClient(old).get("Users"), 401)
    assert ScimClient(new).get("Users").status == 200


def test_regenerating_with_no_grace_stops_the_old_token_at_once(monkeypatch):
    enable_scim("okta", monkeypatch)
    old = issue_token("okta")

    issue_token("okta", grace_period_days=0)

    assert_error(ScimClient(old).get("Users"), 401)


def test_a_revoked_token_stops_at_once(scim):
    token = ScimToken.objects.get()

    scim_services.scim_token_revoke(actor=Principal.system(), token=token)

    assert_error(scim.get("Users"), 401)
    assert AuditEvent.objects.filter(action="scim_token.revoked").count() == 1


def test_a_token_is_refused_when_scim_is_turned_off(scim, monkeypatch):
    monkeypatch.setattr(scim_services, "scim_enabled_for", lambda _name: False)

    assert_error(scim.get("Users"), 401)


def test_only_settings_managers_issue_tokens(monkeypatch):
    enable_scim("okta", monkeypatch)
    member = factories.principal(factories.member())

    with pytest.raises(PolicyDenied):
        scim_token_issue(actor=member, sso_name="okta", grace_period_days=1)
    scim_principal = Principal("scim_client", 1, "scim:okta")
    with pytest.raises(PolicyDenied):
        scim_token_issue(actor=scim_principal, sso_name="okta", grace_period_days=1)

    assert ScimToken.objects.count() == 0


def test_issuing_needs_scim_turned_on(monkeypatch):
    monkeypatch.setattr(scim_services, "scim_enabled_for", lambda _name: False)

    with pytest.raises(Conflict, match="enable_scim"):
        scim_token_issue(actor=Principal.system(), sso_name="okta", grace_period_days=1)


def test_scim_enabled_for_reads_the_sso_configuration(monkeypatch):
    def missing(app: str, model: str) -> Any:
        raise LookupError(model)

    with monkeypatch.context() as patched:
        patched.setattr("teams.scim_services.apps.get_model", missing)
        assert scim_enabled_for("okta") is True  # no SSO settings model: tokens govern SCIM

    from accounts.sso_models import SsoConfig as model

    model._default_manager.create(name="okta", protocol="saml", enable_scim=False)
    model._default_manager.create(name="entra", protocol="saml", enable_scim=True)
    assert scim_enabled_for("okta") is False
    assert scim_enabled_for("entra") is True
    assert scim_enabled_for("nope") is False


def test_scim_token_command_prints_only_the_token(monkeypatch, capsys):
    enable_scim("okta", monkeypatch)
    older = issue_token("okta")

    call_command("scim_token", "--sso", "okta", "--grace-days", "0")

    raw = capsys.readouterr().out.strip()
    assert raw.startswith("gw_scim_")
    assert "\n" not in raw
    assert ScimClient(raw).get("Users").status == 200
    assert_error(ScimClient(older).get("Users"), 401)


def test_console_page_regenerates_and_shows_the_token_once(scim, client, admin_user):
    client.force_login(admin_user)
    url = reverse("scim_console:scim_token", args=["okta"])

    page = client.get(url)
    done = client.post(url, {"grace_period_days": "3"})
    again = client.get(url)

    assert page.status_code == 200
    assert "http://127.0.0.1:8000/scim/v2" in page.content.decode()
    assert done.status_code == 200
    assert "no-store" in done["Cache-Control"]
    new = ScimToken.objects.order_by("-id").first()
    assert new is not None
    raw = done.context["raw_token"]
    assert keyed_digest(raw) == new.digest
    assert raw not in again.content.decode()
    old = ScimToken.objects.exclude(pk=new.pk).get()
    assert old.status == "grace"


def test_console_page_is_for_settings_managers(scim, client):
    client.force_login(factories.member())

    assert client.get(reverse("scim_console:scim_token", args=["okta"])).status_code == 403


# --- users -------------------------------------------------------------------------------


def test_create_user_stores_and_returns_the_stored_attributes(scim):
    reply = scim.post(
        "Users",
        user_body(
            "Alice.Smith@Example.com",
            externalId="00u1",
            name={"givenName": "Alice", "familyName": "Smith", "formatted": "ignored"},
            emails=[{"value": "alice@example.com", "type": "work", "primary": True}],
            active=True,
            title="Engineer",  # RFC attribute the gateway does not store: accepted, ignored
            **{ENTERPRISE: {"department": "R&D", "employeeNumber": "42"}},
        ),
    )

    assert reply.status == 201, reply.body
    user = User.objects.get()
    body = reply.body
    assert body["id"] == encode_id("User", user.pk)
    assert body["schemas"] == [USER, ENTERPRISE]
    assert body["userName"] == "alice.smith@example.com"
    assert body["externalId"] == "00u1"
    assert body["name"] == {"givenName": "Alice", "familyName": "Smith"}
    assert "displayName" not in body
    assert body["emails"] == [{"value": "alice@example.com", "type": "work", "primary": True}]
    assert body["active"] is True
    assert body[ENTERPRISE] == {"employeeNumber": "42", "department": "R&D"}
    assert "title" not in body
    assert body["meta"]["resourceType"] == "User"
    assert body["meta"]["location"] == f"http://testserver/scim/v2/Users/{body['id']}"
    assert reply.headers["Location"] == body["meta"]["location"]
    assert reply.headers["ETag"] == body["meta"]["version"]
    assert (user.email, user.display_name, user.created_via) == (
        "alice.smith@example.com",
        "Alice Smith",
        "scim",
    )
    assert not user.has_usable_password()
    event = AuditEvent.objects.get(action="user.scim_created")
    assert (event.source, event.actor, event.actor_kind) == ("scim", "scim:okta", "scim_client")


def test_empty_emails_and_external_id_are_left_out(scim):
    body = create_user(scim, "bob@example.com", emails=[], externalId=None)

    assert set(body) == {"schemas", "id", "userName", "active", "meta"}


def test_duplicate_user_name_is_a_409_uniqueness(scim):
    create_user(scim, "carol@example.com")

    reply = scim.post("Users", user_body("CAROL@example.com"))

    assert_error(reply, 409, "uniqueness")
    assert User.objects.filter(email__iexact="carol@example.com").count() == 1


def test_existing_console_users_are_found_and_not_created_twice(scim):
    factories.UserFactory(email="dora@example.com")

    found = scim.get("Users", filter='userName eq "Dora@Example.com"')
    created = scim.post("Users", user_body("dora@example.com"))

    assert found.body["totalResults"] == 1
    assert_error(created, 409, "uniqueness")


@pytest.mark.django_db(transaction=True)
def test_concurrent_identical_creates_give_one_user(monkeypatch):
    if connection.vendor == "sqlite":
        pytest.skip("in-memory SQLite test databases lock across threads (files serialise)")
    enable_scim("okta", monkeypatch)
    token = issue_token("okta")
    statuses: list[int] = []
    barrier = threading.Barrier(4)

    def push() -> None:
        barrier.wait()
        with audit_source("scim"):
            statuses.append(ScimClient(token).post("Users", user_body("eve@example.com")).status)
        connection.close()

    threads = [threading.Thread(target=push) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [201, 409, 409, 409]
    assert User.objects.filter(email="eve@example.com").count() == 1


def test_user_name_must_be_an_email(scim):
    reply = scim.post("Users", user_body("not-an-email"))

    assert_error(reply, 400, "invalidValue")
    assert User.objects.count() == 0


def test_put_replaces_and_keeps_active_when_left_out(scim):
    user = create_user(
        scim,
        "fay@example.com",
        displayName="Fay",
        externalId="x1",
        active=False,
        emails=[{"value": "fay@example.com"}],
    )

    reply = scim.put(f"Users/{user['id']}", user_body("fay@example.com", displayName="Fay F."))

    assert reply.status == 200, reply.body
    assert reply.body["displayName"] == "Fay F."
    assert "externalId" not in reply.body
    assert "emails" not in reply.body
    assert reply.body["active"] is False
    assert User.objects.get().display_name == "Fay F."


def test_if_match_guards_writes_and_if_none_match_saves_a_read(scim):
    user = create_user(scim, "gus@example.com", displayName="Gus")
    path = f"Users/{user['id']}"
    version = user["meta"]["version"]
    scim.patch(path, [{"op": "replace", "path": "displayName", "value": "Gus 2"}])

    stale = scim.put(path, user_body("gus@example.com"), headers={"If-Match": version})
    current = scim.get(path).body["meta"]["version"]
    fresh = scim.request("GET", path, headers={"If-None-Match": current})
    ok = scim.put(path, user_body("gus@example.com"), headers={"If-Match": current})

    assert_error(stale, 412)
    assert fresh.status == 304
    assert ok.status == 200
    assert "displayName" not in ok.body


def test_get_unknown_or_foreign_ids_is_404(scim):
    group = create_group(scim, "team-a")

    for path in ("Users/nope", f"Users/{group['id']}", f"Users/{encode_id('User', 999)}"):
        assert_error(scim.get(path), 404)


# --- filters and paging --------------------------------------------------------------------


@pytest.fixture
def people(scim: ScimClient) -> dict[str, str]:
    made = {}
    rows: list[tuple[str, dict[str, Any]]] = [
        ("ann@example.com", {"externalId": "A-1", "displayName": "Ann"}),
        ("ben@example.com", {"externalId": "a-1", "displayName": "Ben", "active": False}),
        ("cid@example.com", {"displayName": "Cid", ENTERPRISE: {"department": "Ops"}}),
        ("dan@example.org", {"displayName": "Dan", "name": {"givenName": "Daniel"}}),
    ]
    for email, extra in rows:
        made[email] = create_user(scim, email, **extra)["id"]
    return made


@pytest.mark.parametrize(
    ("scim_filter", "expected"),
    [
        ('userName eq "ANN@example.com"', ["ann@example.com"]),
        ('externalId eq "A-1"', ["ann@example.com"]),  # externalId is case-exact
        ('displayName eq "cid"', ["cid@example.com"]),
        ('userName ew "@example.org"', ["dan@example.org"]),
        ('userName sw "a" or userName sw "b"', ["ann@example.com", "ben@example.com"]),
        ('active eq false and displayName co "e"', ["ben@example.com"]),
        ("not (active eq true)", ["ben@example.com"]),
        ('name.givenName eq "Daniel"', ["dan@example.org"]),
        (f'{ENTERPRISE}:department eq "ops"', ["cid@example.com"]),
        ('emails.value eq "cid@example.com"', ["cid@example.com"]),
        ("externalId pr", ["ann@example.com", "ben@example.com"]),
        ('userName eq "nobody@example.com"', []),
        ('meta.lastModified gt "2000-01-01T00:00:00Z" and userName sw "an"', ["ann@example.com"]),
    ],
)
def test_user_filters(scim, people, scim_filter, expected):
    reply = scim.get("Users", filter=scim_filter)

    assert reply.status == 200, reply.body
    assert reply.body["totalResults"] == len(expected)
    assert [r["userName"] for r in reply.body["Resources"]] == expected


def test_filter_by_id(scim, people):
    wanted = people["cid@example.com"]

    reply = scim.get("Users", filter=f'id eq "{wanted}"')

    assert [r["id"] for r in reply.body["Resources"]] == [wanted]


@pytest.mark.parametrize(
    ("scim_filter", "scim_type"),
    [
        ("userName eq", "invalidFilter"),
        ('userName xx "a"', "invalidFilter"),
        ('title eq "x"', "invalidFilter"),  # not stored, so not filterable
        ('nosuch eq "x"', "invalidFilter"),
        ('userName eq "a" and nosuch eq "b"', "invalidFilter"),
        ('active eq "maybe"', "invalidFilter"),
    ],
)
def test_bad_filters_are_400_invalid_filter(scim, people, scim_filter, scim_type):
    assert_error(scim.get("Users", filter=scim_filter), 400, scim_type)


def test_paging(scim, people):
    everyone = scim.get("Users").body
    page = scim.get("Users", startIndex="2", count="2").body
    empty = scim.get("Users", count="0").body
    clamped = scim.get("Users", startIndex="0", count="1").body

    assert everyone["totalResults"] == 4
    ids = [r["id"] for r in everyone["Resources"]]
    assert (page["totalResults"], page["itemsPerPage"], page["startIndex"]) == (4, 2, 2)
    assert [r["id"] for r in page["Resources"]] == ids[1:3]
    assert (empty["totalResults"], empty["itemsPerPage"], empty["Resources"]) == (4, 0, [])
    assert [r["id"] for r in clamped["Resources"]] == ids[:1]
    assert_error(scim.get("Users", count="many"), 400, "invalidValue")


def test_attributes_and_excluded_attributes(scim, people):
    user_id = people["dan@example.org"]

    only = scim.get(f"Users/{user_id}", attributes="userName,name.givenName").body
    without = scim.get(f"Users/{user_id}", excludedAttributes="name,meta").body
    listed = scim.get("Users", filter='userName sw "dan"', attributes="displayName").body

    assert only == {
        "schemas": [USER],
        "id": user_id,
        "userName": "dan@example.org",
        "name": {"givenName": "Daniel"},
    }
    assert "name" not in without
    assert "meta" not in without
    assert without["userName"] == "dan@example.org"
    assert listed["Resources"] == [{"schemas": [USER], "id": user_id, "displayName": "Dan"}]


def test_search_endpoint(scim, people):
    reply = scim.post(
        "Users/.search",
        {"schemas": [SEARCH], "filter": 'userName sw "a"', "attributes": ["userName"], "count": 5},
    )

    assert reply.status == 200, reply.body
    assert reply.body["Resources"] == [
        {"schemas": [USER], "id": people["ann@example.com"], "userName": "ann@example.com"}
    ]
    assert_error(scim.post("Users/.search", {"filter": "x"}), 400, "invalidSyntax")


@pytest.mark.slow
def test_filters_also_pass_on_sqlite(tmp_path: Path):
    """The same filter tests, in a child pytest whose database is SQLite."""
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'scim.sqlite3'}",
        "GATEWAY_VAR_DIR": str(tmp_path / "var"),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            "--ds",
            os.environ["DJANGO_SETTINGS_MODULE"],
            f"{Path(__file__).relative_to(root)}",
            "-k",
            "user_filters or filter_by_id or bad_filters or group_filters or paging",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout


# --- PATCH -------------------------------------------------------------------------------


def test_patch_okta_style_replace_without_path(scim):
    user = create_user(scim, "ivy@example.com", displayName="Ivy")

    reply = scim.patch(
        f"Users/{user['id']}",
        [{"op": "replace", "value": {"id": user["id"], "active": False, "displayName": "Ivy L"}}],
    )

    assert reply.status == 200, reply.body
    assert (reply.body["active"], reply.body["displayName"]) == (False, "Ivy L")
    assert User.objects.get().is_active is False


def test_patch_entra_style_quirks(scim):
    user = create_user(scim, "jo@example.com", emails=[{"value": "jo@example.com", "type": "work"}])

    reply = scim.patch(
        f"Users/{user['id']}",
        [
            {"op": "Replace", "path": "active", "value": "False"},
            {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "jo@corp.example"},
            {"op": "Add", "path": 'emails[type eq "home"].value', "value": "jo@home.example"},
            {"op": "Add", "value": {"name.givenName": "Jo", f"{ENTERPRISE}:department": "HR"}},
            {"op": "Replace", "path": f"{ENTERPRISE}:manager", "value": {"value": "x"}},
            {"op": "Replace", "path": "title", "value": "ignored"},
        ],
    )

    assert reply.status == 200, reply.body
    assert reply.body["active"] is False
    assert reply.body["emails"] == [
        {"value": "jo@corp.example", "type": "work"},
        {"type": "home", "value": "jo@home.example"},
    ]
    assert reply.body["name"] == {"givenName": "Jo"}
    assert reply.body[ENTERPRISE] == {"department": "HR"}


def test_patch_operations_apply_all_or_nothing(scim):
    user = create_user(scim, "kim@example.com", displayName="Kim")
    before = scim.get(f"Users/{user['id']}").body

    reply = scim.patch(
        f"Users/{user['id']}",
        [
            {"op": "replace", "path": "displayName", "value": "Changed"},
            {"op": "replace", "path": "active", "value": "perhaps"},
        ],
    )

    assert_error(reply, 400, "invalidValue")
    assert scim.get(f"Users/{user['id']}").body == before
    assert User.objects.get().display_name == "Kim"


@pytest.mark.parametrize(
    ("operations", "scim_type"),
    [
        ([{"op": "remove"}], "noTarget"),
        ([{"op": "replace", "path": "nosuch", "value": "x"}], "invalidPath"),
        ([{"op": "replace", "path": "groups", "value": []}], "mutability"),
        ([{"op": "replace", "path": "id", "value": "x"}], "mutability"),
        ([{"op": "move", "path": "displayName", "value": "x"}], "invalidSyntax"),
        ([{"op": "add", "path": "displayName"}], "invalidValue"),
        ([{"op": "add", "path": 'emails[type eq "work"', "value": "x"}], "invalidPath"),
        ([{"op": "remove", "path": "userName"}], "invalidValue"),
        ([], "invalidSyntax"),
    ],
)
def test_bad_patches_change_nothing(scim, operations, scim_type):
    user = create_user(scim, "lee@example.com", displayName="Lee")
    events = AuditEvent.objects.count()

    reply = scim.patch(f"Users/{user['id']}", operations)

    assert_error(reply, 400, scim_type)
    assert AuditEvent.objects.count() == events
    assert User.objects.get().display_name == "Lee"


def test_patch_body_must_be_a_patch_op(scim):
    user = create_user(scim, "mo@example.com")

    reply = scim.request("PATCH", f"Users/{user['id']}", {"Operations": [{"op": "add"}]})

    assert_error(reply, 400, "invalidSyntax")


def test_patch_remove_active_leaves_it_unassigned_and_the_user_as_is(scim):
    user = create_user(scim, "ned@example.com")

    reply = scim.patch(f"Users/{user['id']}", [{"op": "remove", "path": "active"}])

    assert reply.status == 200
    assert "active" not in reply.body
    assert User.objects.get().is_active is True


def test_patch_user_name_renames_the_login(scim):
    user = create_user(scim, "old@example.com")
    create_user(scim, "taken@example.com")

    taken = scim.patch(
        f"Users/{user['id']}", [{"op": "replace", "path": "userName", "value": "taken@example.com"}]
    )
    renamed = scim.patch(
        f"Users/{user['id']}", [{"op": "replace", "path": "userName", "value": "New@Example.com"}]
    )

    assert_error(taken, 409, "uniqueness")
    assert renamed.body["userName"] == "new@example.com"
    assert User.objects.filter(email="new@example.com").exists()


# --- deactivation and deletion -------------------------------------------------------------


@pytest.fixture
def provisioned(scim: ScimClient) -> dict[str, Any]:
    """A SCIM user in a SCIM team that owns a working virtual account; user signed in, PAT."""
    user_doc = create_user(scim, "pat@example.com")
    group = create_group(scim, "platform", [user_doc["id"]])
    user = User.objects.get(email="pat@example.com")
    team = Team.objects.get(name="platform")
    account = VirtualAccount.objects.create(name="ci-bot", owner_team=team, created_by="test")
    raw_va, prefix, digest = va_token_generate(account.name)
    TokenSecret.objects.create(
        token=VirtualAccountToken.objects.create(account=account),
        state=TokenSecret.State.CURRENT,
        prefix=prefix,
        digest=digest,
    )
    browser = Client()
    browser.force_login(user)
    return {
        "user": user,
        "user_id": user_doc["id"],
        "group_id": group["id"],
        "team": team,
        "pat": factories.pat_for(user),
        "va": raw_va,
        "browser": browser,
    }


def test_deactivation_ends_sign_in_sessions_and_pats_but_not_team_accounts(scim, provisioned):
    browser, pat = provisioned["browser"], provisioned["pat"]
    home = reverse("teams:team_list")
    assert browser.get(home).status_code == 200
    assert grant_for_token(pat) is not None
    version = ConfigVersion.objects.get().version

    reply = scim.patch(
        f"Users/{provisioned['user_id']}", [{"op": "replace", "path": "active", "value": False}]
    )

    assert reply.status == 200
    user = User.objects.get(pk=provisioned["user"].pk)
    assert (user.is_active, user.deactivated_at is not None) == (False, True)
    assert user.auth_epoch == provisioned["user"].auth_epoch + 1
    assert browser.get(home).status_code == 302  # the session no longer signs in
    api = Client().get("/api/v1/me", headers={"Authorization": f"Bearer {pat}"})
    assert api.status_code == 401
    assert grant_for_token(pat) is None
    assert ConfigVersion.objects.get().version > version  # proxy caches drop (stated bound)
    assert grant_for_token(provisioned["va"]) is not None  # the team's account keeps working
    event = AuditEvent.objects.get(action="user.deactivated")
    assert (event.source, event.actor) == ("scim", "scim:okta")
    assert TeamMembership.objects.filter(user=user).exists()


def test_delete_hides_the_user_and_keeps_what_it_owns(scim, provisioned):
    user_id = provisioned["user_id"]

    deleted = scim.delete(f"Users/{user_id}")

    assert deleted.status == 204
    assert_error(scim.get(f"Users/{user_id}"), 404)
    assert_error(scim.delete(f"Users/{user_id}"), 404)
    assert scim.get("Users", filter='userName eq "pat@example.com"').body["totalResults"] == 0
    user = User.objects.get(pk=provisioned["user"].pk)  # the row, and what points at it, stay
    assert user.is_active is False
    assert ScimUser.objects.get(user=user).deleted_at is not None
    assert PersonalAccessToken.objects.get(user=user).revoked_at is not None
    assert provisioned["browser"].get(reverse("teams:team_list")).status_code == 302
    assert scim.get(f"Groups/{provisioned['group_id']}").body.get("members") is None
    assert grant_for_token(provisioned["va"]) is not None
    assert AuditEvent.objects.get(action="user.scim_deleted").source == "scim"

    back = scim.post("Users", user_body("pat@example.com"))

    assert back.status == 201
    assert back.body["id"] == user_id
    assert User.objects.get(pk=user.pk).is_active is True


def test_the_last_active_tenant_admin_cannot_be_deactivated(scim):
    admin = factories.tenant_admin()

    reply = scim.patch(
        f"Users/{encode_id('User', admin.pk)}",
        [{"op": "replace", "path": "active", "value": False}],
    )

    assert_error(reply, 409)
    assert User.objects.get(pk=admin.pk).is_active is True


# --- groups ------------------------------------------------------------------------------


def test_group_names_are_mapped_to_valid_team_names(scim):
    given = ("Engineering Team!", "platform", "Platform", "Ünïcode \u2013 Ops", "42", "everyone")
    made = [create_group(scim, name) for name in given]

    names = [team_of(g).name for g in made]

    assert names == [
        "Engineering-Team",
        "platform",
        "Platform-2",
        "Unicode-Ops",
        "group-42",
        "everyone-2",
    ]
    assert [g["displayName"] for g in made] == [
        "Engineering Team!",
        "platform",
        "Platform",
        "Ünïcode \u2013 Ops",
        "42",
        "everyone",
    ]
    assert {team_of(g).source for g in made} == {"scim"}


def test_team_name_mapping_is_deterministic():
    taken = {"engineering-team"}

    first = scim_team_name_for("Engineering Team", taken=taken)
    second = scim_team_name_for("Engineering Team", taken=taken)

    assert first == second == "Engineering-Team-2"
    assert scim_team_name_for("x" * 80, taken=set()) == "x" * 36
    assert scim_team_name_for("x" * 80, taken={"x" * 36}) == "x" * 34 + "-2"


def test_group_membership_patch_batches(scim):
    users = [create_user(scim, f"m{i}@example.com")["id"] for i in range(60)]
    group = create_group(scim, "big", users[:5])

    reply = scim.patch(
        f"Groups/{group['id']}",
        [
            {"op": "Add", "path": "members", "value": [{"value": u} for u in users[5:]]},
            {"op": "Remove", "path": "members", "value": [{"value": users[0]}]},  # Entra
            {"op": "remove", "path": f'members[value eq "{users[1]}"]'},  # Okta
            {"op": "replace", "path": "displayName", "value": "Big Team"},
        ],
    )

    assert reply.status == 200, reply.body
    members = {m["value"] for m in reply.body["members"]}
    assert members == set(users[2:])
    team = team_of(group)
    assert team.name == "big"  # a rename keeps the team name; the mapping shows it
    assert ScimGroup.objects.get(team=team).display_name == "Big Team"
    assert TeamMembership.objects.filter(team=team).count() == 58
    event = AuditEvent.objects.get(action="team.scim_updated")
    assert event.source == "scim"
    assert event.before is not None
    assert event.after is not None
    assert event.before["members_removed"] == ["m0@example.com", "m1@example.com"]
    assert len(event.after["members_added"]) == 55


def test_group_filters(scim):
    ann = create_user(scim, "ann@example.com")["id"]
    create_group(scim, "Alpha", [ann])
    beta = create_group(scim, "Beta Team")

    by_name = scim.get("Groups", filter='displayName eq "beta team"').body
    by_member = scim.get(
        "Groups",
        filter=f'displayName sw "A" and members[value eq "{ann}"]',
        excludedAttributes="members",
    ).body
    nothing = scim.get("Groups", filter='displayName eq "Gamma"').body

    assert [g["id"] for g in by_name["Resources"]] == [beta["id"]]
    assert [g["displayName"] for g in by_member["Resources"]] == ["Alpha"]
    assert "members" not in by_member["Resources"][0]
    assert (nothing["totalResults"], nothing["Resources"]) == (0, [])


def test_users_list_their_scim_groups(scim):
    ann = create_user(scim, "ann@example.com")["id"]
    group = create_group(scim, "Alpha", [ann])

    body = scim.get(f"Users/{ann}").body

    assert body["groups"] == [
        {
            "value": group["id"],
            "$ref": f"http://testserver/scim/v2/Groups/{group['id']}",
            "display": "Alpha",
            "type": "direct",
        }
    ]


@pytest.mark.parametrize(
    "members",
    [
        [{"value": encode_id("User", 9999)}],
        [{"value": "not-an-id"}],
        [{"value": encode_id("Group", 1), "type": "Group"}],
    ],
)
def test_bad_members_change_nothing(scim, members):
    group = create_group(scim, "Alpha")

    reply = scim.patch(
        f"Groups/{group['id']}", [{"op": "add", "path": "members", "value": members}]
    )

    assert_error(reply, 400, "invalidValue")
    assert TeamMembership.objects.count() == 0


def test_console_edits_of_scim_teams_are_refused_with_an_explanation(scim, admin_user):
    group = create_group(scim, "Alpha")
    team = team_of(group)

    with pytest.raises(Conflict, match="identity provider"):
        team_membership_add(actor=factories.principal(admin_user), team=team, user=admin_user)


def test_console_page_shows_the_group_mapping(scim, client, admin_user):
    create_group(scim, "Data Science (EU)")
    client.force_login(admin_user)

    page = client.get(reverse("scim_console:scim_token", args=["okta"])).content.decode()

    assert "Data Science (EU)" in page
    assert "Data-Science-EU" in page


def test_delete_group_deletes_the_team_or_detaches_one_that_owns_accounts(scim, provisioned):
    plain = create_group(scim, "Plain")
    owning = provisioned["group_id"]

    assert scim.delete(f"Groups/{plain['id']}").status == 204
    assert scim.delete(f"Groups/{owning}").status == 204

    assert not Team.objects.filter(name="Plain").exists()
    team = Team.objects.get(pk=provisioned["team"].pk)
    assert (team.source, team.external_id) == ("manual", "")
    assert_error(scim.get(f"Groups/{owning}"), 404)
    assert grant_for_token(provisioned["va"]) is not None
    assert AuditEvent.objects.filter(action="team.scim_detached").count() == 1


# --- discovery and bad input ---------------------------------------------------------------


def test_service_provider_config_tells_the_truth(scim):
    body = scim.get("ServiceProviderConfig").body

    assert body["filter"] == {"supported": True, "maxResults": 200}
    assert body["patch"] == {"supported": True}
    assert body["etag"] == {"supported": True}
    assert body["bulk"]["supported"] is False
    assert body["sort"] == {"supported": False}
    assert body["authenticationSchemes"][0]["type"] == "oauthbearertoken"


def test_discovery_lists_are_complete_list_responses(scim):
    types = scim.get("ResourceTypes").body
    schemas = scim.get("Schemas").body

    assert (types["totalResults"], types["startIndex"]) == (2, 1)
    assert [t["id"] for t in types["Resources"]] == ["User", "Group"]
    assert types["Resources"][0]["schemaExtensions"] == [{"schema": ENTERPRISE, "required": False}]
    assert schemas["totalResults"] == 3
    user_schema = scim.get(f"Schemas/{USER}").body
    assert [a["name"] for a in user_schema["attributes"]] == [
        "userName",
        "name",
        "displayName",
        "emails",
        "active",
        "groups",
    ]
    assert [a["name"] for a in scim.get(f"Schemas/{ENTERPRISE}").body["attributes"]] == [
        "employeeNumber",
        "costCenter",
        "organization",
        "division",
        "department",
    ]
    assert [a["name"] for a in scim.get(f"Schemas/{GROUP}").body["attributes"]] == [
        "displayName",
        "members",
    ]
    assert_error(scim.get("Schemas/urn:nope"), 404)
    assert_error(scim.get("ResourceTypes/Nope"), 404)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "nope", 404),
        ("GET", "", 404),
        ("GET", "Me", 501),
        ("POST", "Bulk", 501),
        ("POST", ".search", 501),
        ("DELETE", "Users", 405),
        ("PUT", "Users", 405),
        ("POST", "Schemas", 405),
        ("GET", "Users/.search", 405),
    ],
)
def test_unknown_urls_and_methods_answer_scim_errors(scim, method, path, status):
    reply = scim.request(method, path, {} if method != "GET" else None)

    assert_error(reply, status)


@pytest.mark.parametrize(
    ("raw", "scim_type"),
    [
        ("{not json", "invalidSyntax"),
        ('["a list"]', "invalidSyntax"),
        (json.dumps({"userName": "a@example.com"}), "invalidSyntax"),  # no schemas
        (json.dumps({"schemas": [GROUP], "userName": "a@example.com"}), "invalidSyntax"),
        (
            json.dumps({"schemas": [USER, "urn:x:y"], "userName": "a@b.com", "urn:x:y": {"a": 1}}),
            "invalidSyntax",
        ),
        (json.dumps({"schemas": [USER, GROUP], "userName": "a@example.com"}), "invalidSyntax"),
        (
            json.dumps({"schemas": [USER], "userName": "a@example.com", "shoeSize": 9}),
            "invalidSyntax",
        ),
        (
            json.dumps({"schemas": [USER], "userName": "a@example.com", "active": "yes"}),
            "invalidValue",
        ),
        (
            json.dumps(
                {"schemas": [USER], "userName": "a@example.com", "emails": [{"value": "x"}]}
            ),
            "invalidValue",
        ),
        (
            json.dumps({"schemas": [USER], "userName": "a@example.com", "name": {"nick": "x"}}),
            "invalidSyntax",
        ),
        (json.dumps({"schemas": [USER]}), "invalidValue"),
    ],
)
def test_bad_user_bodies_change_nothing(scim, raw, scim_type):
    reply = scim.request("POST", "Users", raw=raw)

    assert_error(reply, 400, scim_type)
    assert User.objects.count() == 0
    assert not AuditEvent.objects.filter(source="scim").exists()


def test_a_foreign_token_changes_nothing(scim):
    user = create_user(scim, "zed@example.com", displayName="Zed")
    other = ScimClient("gw_scim_" + "x" * 40)

    replies = [
        other.patch(
            f"Users/{user['id']}", [{"op": "replace", "path": "displayName", "value": "H"}]
        ),
        other.delete(f"Users/{user['id']}"),
        other.post("Groups", group_body("evil")),
    ]

    for reply in replies:
        assert_error(reply, 401)
    assert User.objects.get().display_name == "Zed"
    assert not Team.objects.filter(name="evil").exists()


def test_string_status_and_scim_type_in_errors(scim):
    body = scim.post("Users", user_body("dup@example.com")).body
    reply = scim.post("Users", user_body("dup@example.com"))

    assert body["userName"] == "dup@example.com"
    assert reply.body == {
        "schemas": [ERROR],
        "status": "409",
        "scimType": "uniqueness",
        "detail": "a user with userName dup@example.com already exists",
    }


# --- recorded IdP sequences ----------------------------------------------------------------

RECORDINGS = sorted((Path(__file__).parent / "scim_recordings").glob("*.json"))


def _substitute(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        for name, replacement in names.items():
            value = value.replace("{{" + name + "}}", replacement)
        return value
    if isinstance(value, list):
        return [_substitute(v, names) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, names) for k, v in value.items()}
    return value


def _assert_contains(actual: Any, expected: Any, where: str) -> None:
    """`expected` is a sub-document of `actual`: listed keys match, lists match item by item."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: expected an object, got {actual!r}"
        for key, value in expected.items():
            assert key in actual, f"{where}: '{key}' missing from {actual!r}"
            _assert_contains(actual[key], value, f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{where}: expected a list, got {actual!r}"
        assert len(actual) == len(expected), f"{where}: {actual!r} != {expected!r}"
        for index, (got, wanted) in enumerate(zip(actual, expected, strict=True)):
            _assert_contains(got, wanted, f"{where}[{index}]")
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


def _assert_database(state: dict[str, Any], where: str) -> None:
    if "user" in state:
        user = User.objects.get(email=state["user"])
        for field in ("display_name", "is_active"):
            if field in state:
                assert getattr(user, field) == state[field], f"{where}: {field}"
        if "team_memberships" in state:
            count = TeamMembership.objects.filter(user=user).count()
            assert count == state["team_memberships"], where
    if "team" in state:
        team = Team.objects.filter(name=state["team"]).first()
        if state.get("exists", True) is False:
            assert team is None, f"{where}: team {state['team']} still exists"
            return
        assert team is not None, f"{where}: no team {state['team']}"
        if "source" in state:
            assert team.source == state["source"], where
        if "scim_display_name" in state:
            assert ScimGroup.objects.get(team=team).display_name == state["scim_display_name"]
        if "members" in state:
            emails = sorted(team.memberships.values_list("user__email", flat=True))
            assert emails == state["members"], f"{where}: members {emails}"


@pytest.mark.parametrize("recording", RECORDINGS, ids=lambda p: p.stem)
def test_recorded_idp_sequences_replay(scim, recording: Path):
    steps = json.loads(recording.read_text())["steps"]
    names: dict[str, str] = {}

    for number, step in enumerate(steps, start=1):
        where = f"{recording.stem} step {number} ({step['name']})"
        request = _substitute(step["request"], names)
        reply = scim.request(request["method"], "/scim/v2" + request["path"], request.get("body"))

        expect = _substitute(step["expect"], names)
        assert reply.status == expect["status"], f"{where}: {reply.status} {reply.body}"
        if "body" in expect:
            _assert_contains(reply.body, expect["body"], where)
        for name, key in step.get("capture", {}).items():
            names[name] = reply.body[key]
        _assert_database(step.get("db", {}), where)

    sources = set(
        AuditEvent.objects.exclude(action="scim_token.issued").values_list("source", flat=True)
    )
    assert sources == {"scim"}


def test_a_large_membership_batch_takes_a_bounded_number_of_queries(
    scim, django_assert_max_num_queries
):
    users = User.objects.bulk_create(
        [User(email=f"bulk{i}@example.com", tenant_role_id="member") for i in range(1000)]
    )
    group = create_group(scim, "Everyone In Sales")
    value = [{"value": encode_id("User", u.pk)} for u in users]

    with django_assert_max_num_queries(40):
        reply = scim.patch(
            f"Groups/{group['id']}", [{"op": "add", "path": "members", "value": value}]
        )

    assert reply.status == 200
    assert len(reply.body["members"]) == 1000
    assert TeamMembership.objects.filter(team=team_of(group)).count() == 1000
    assert AuditEvent.objects.filter(action="team.scim_updated").count() == 1


def test_first_scim_change_to_a_console_user_is_audited(scim):
    user = factories.UserFactory(email="old@example.com", display_name="Old Name")

    reply = scim.patch(
        f"Users/{encode_id('User', user.pk)}",
        [{"op": "replace", "path": "displayName", "value": "New Name"}],
    )

    assert reply.status == 200
    event = AuditEvent.objects.get(action="user.scim_updated")
    assert event.before is not None
    assert event.after is not None
    assert (event.before["display_name"], event.after["display_name"]) == ("Old Name", "New Name")
    assert event.source == "scim"


def test_the_token_appears_in_no_log_and_no_response(scim, caplog):
    caplog.set_level("DEBUG")

    replies = [
        scim.post("Users", user_body("log@example.com", password="hunter2-secret")),
        scim.get("Users"),
        ScimClient(str(scim.token) + "x").get("Users"),
    ]

    assert str(scim.token) not in caplog.text
    assert "hunter2-secret" not in caplog.text
    for reply in replies:
        assert str(scim.token) not in json.dumps(reply.body)


def test_sso_settings_page_shows_the_scim_url_and_token_link_when_enabled(client):
    from accounts.sso_models import SsoConfig

    admin = factories.tenant_admin()
    client.force_login(admin)
    config = SsoConfig.objects.create(
        name="okta",
        enabled=False,
        provider="okta",
        protocol="saml",
        enable_scim=True,
        idp_sso_url="https://idp.example.com/sso",
        sp_entity_id="gateway",
    )
    page = client.get(f"/settings/sso/{config.name}/").content.decode()
    assert 'data-testid="scim-base-url">http://127.0.0.1:8000/scim/v2<' in page
    assert f"/settings/sso/{config.name}/scim/" in page
    SsoConfig.objects.filter(pk=config.pk).update(enable_scim=False)
    assert (
        'data-testid="scim-panel"'
        not in client.get(f"/settings/sso/{config.name}/").content.decode()
    )
