"""Shared fixtures."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from rest_framework.test import APIClient

from accounts.models import User
from teams.models import Team
from tests import factories


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def team(db: None) -> Team:
    return factories.TeamFactory()


@pytest.fixture
def admin_user(db: None) -> User:
    return factories.tenant_admin()


def bearer(client: APIClient, user: User) -> APIClient:
    """Authenticate `client` with a fresh PAT of `user`."""
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {factories.pat_for(user)}")
    return client


SEED_MIGRATIONS = [
    ("accounts.migrations.0003_builtin_roles", "create_roles"),
    ("teams.migrations.0002_everyone", "create_everyone"),
    ("accounts.migrations.0004_config_version", "create_row"),
    ("dataaccess.migrations.0002_default_rules", "create_defaults"),
]


@pytest.fixture(autouse=True)
def _seed_rows(request: pytest.FixtureRequest) -> None:
    """Re-create the rows data migrations seed: transactional tests flush them afterwards."""
    names = set(request.fixturenames)
    if "transactional_db" in names:
        request.getfixturevalue("transactional_db")  # autouse runs first: open the DB now
    elif "db" in names:
        request.getfixturevalue("db")
    elif request.node.get_closest_marker("django_db") is None:
        return

    for module, function in SEED_MIGRATIONS:
        getattr(importlib.import_module(module), function)(apps, None)
