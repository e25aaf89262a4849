"""Shared fixtures."""

from __future__ import annotations

import pytest
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
