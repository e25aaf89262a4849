"""API behaviour beyond authorization: shapes, error format, schema, health, encryption."""

from __future__ import annotations

import pytest
from django.db import connection

from accounts.models import AuditEvent, PersonalAccessToken, User
from teams.models import Team
from tests import factories
from tests.conftest import bearer

pytestmark = pytest.mark.django_db


def test_team_create_answers_the_manifest_shape(api_client, admin_user):
    alice = factories.UserFactory(email="alice@example.com")
    bob = factories.UserFactory(email="bob@example.com")
    bearer(api_client, admin_user)

    response = api_client.post(
        "/api/v1/teams",
        {"name": "backend", "managers": [alice.email], "members": [bob.email, "Alice@Example.com"]},
        format="json",
    )

    assert response.status_code == 201
    body = response.json()
    assert (body["name"], body["managers"], body["members"], body["source"]) == (
        "backend",
        ["alice@example.com"],
        ["alice@example.com", "bob@example.com"],
        "manual",
    )
    event = AuditEvent.objects.get(action="team.created")
    assert (event.source, event.actor) == ("api", admin_user.subject)


def test_validation_errors_name_the_field(api_client, admin_user):
    bearer(api_client, admin_user)
    response = api_client.post(
        "/api/v1/teams", {"name": "backend", "members": ["ghost@example.com"]}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "message": "members[0]: no user with email 'ghost@example.com'",
            "fields": {"members[0]": ["no user with email 'ghost@example.com'"]},
        }
    }
    assert not Team.objects.filter(name="backend").exists()


def test_serializer_errors_use_the_same_format(api_client, admin_user):
    bearer(api_client, admin_user)
    response = api_client.post("/api/v1/roles", {"permissions": ["nope"]}, format="json")
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert fields["name"] == ["This field is required."]
    assert fields["permissions[0]"] == ['"nope" is not a valid choice.']


def test_malformed_json_is_a_400_with_a_message(api_client, admin_user):
    bearer(api_client, admin_user)
    response = api_client.generic(
        "POST", "/api/v1/teams", "{not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("JSON parse error")


def test_duplicate_is_a_409(api_client, admin_user):
    factories.TeamFactory(name="backend")
    bearer(api_client, admin_user)
    response = api_client.post("/api/v1/teams", {"name": "backend"}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["message"] == "a team named 'backend' already exists"


def test_pat_created_through_the_api_is_shown_once_and_works(api_client):
    user = factories.member()
    bearer(api_client, user)
    created = api_client.post(
        "/api/v1/personal-access-tokens", {"name": "laptop", "expires_in_days": 30}, format="json"
    )
    assert created.status_code == 201
    assert created["Cache-Control"] == "no-store"
    raw = created.json()["token"]
    listing = api_client.get("/api/v1/personal-access-tokens")
    assert raw not in listing.content.decode()
    names = [t["name"] for t in listing.json()["results"]]
    assert names == ["laptop", "test"]

    fresh = type(api_client)()
    fresh.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    me = fresh.get("/api/v1/me")
    assert me.status_code == 200
    assert me.json()["email"] == user.email
    token = PersonalAccessToken.objects.get(name="laptop")
    assert token.last_used_at is not None
    assert raw not in str(list(AuditEvent.objects.values_list("before", "after")))


def test_lists_paginate_and_search(api_client, admin_user):
    for index in range(7):
        factories.UserFactory(email=f"zz{index}@example.com")
    bearer(api_client, admin_user)
    page = api_client.get("/api/v1/users?q=zz&page_size=3&ordering=-email")
    body = page.json()
    assert body["count"] == 7
    assert [u["email"] for u in body["results"]] == [
        "zz6@example.com",
        "zz5@example.com",
        "zz4@example.com",
    ]
    assert body["next"].endswith("page=2&page_size=3&q=zz") or "page=2" in body["next"]


def test_user_list_query_count_does_not_grow_with_rows(
    api_client, admin_user, django_assert_max_num_queries
):
    for _ in range(40):
        factories.UserFactory()
    bearer(api_client, admin_user)
    with django_assert_max_num_queries(10):
        response = api_client.get("/api/v1/users?page_size=100")
    assert response.json()["count"] == 41


def test_team_list_query_count_does_not_grow_with_rows(
    api_client, admin_user, django_assert_max_num_queries
):
    for _ in range(30):
        team = factories.TeamFactory()
        factories.team_member_of(team)
    bearer(api_client, admin_user)
    with django_assert_max_num_queries(10):
        response = api_client.get("/api/v1/teams?page_size=100")
    assert response.json()["count"] == 31  # with everyone
    assert {t["member_count"] for t in response.json()["results"] if t["name"] != "everyone"} == {1}


def test_openapi_schema_lists_the_api(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    for path in (
        "/api/v1/teams",
        "/api/v1/users",
        "/api/v1/personal-access-tokens",
        "/api/v1/roles",
        "/api/v1/role-bindings",
        "/api/v1/audit-events",
    ):
        assert path in schema["paths"]


def test_api_docs_page_serves_local_assets(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger-ui" in response.content
    assert b"cdn." not in response.content


def test_healthz_and_readyz(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "checks": {"database": True, "broker": True}}


def test_encrypted_field_stores_ciphertext_only():
    from django.db import models

    from gateway_project.crypto import decrypt, encrypt
    from gateway_project.fields import EncryptedTextField

    field = EncryptedTextField()
    stored = field.get_prep_value("sk-canary-123")
    assert "sk-canary" not in stored
    assert decrypt(stored) == "sk-canary-123"
    assert field.from_db_value(stored, None, connection) == "sk-canary-123"
    assert encrypt("a") != encrypt("a")  # randomised
    assert isinstance(field, models.TextField)


def test_me_shows_no_password_hash(api_client):
    user = factories.member()
    bearer(api_client, user)
    body = api_client.get("/api/v1/me").json()
    assert "password" not in body
    assert body["password_set"] is True
    assert User.objects.get(pk=user.pk).password not in str(body)
