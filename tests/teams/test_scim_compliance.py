"""scim2-tester's compliance checks against the live SCIM endpoint.

The tester is handed the server's own description: the User and Group models built from the
schemas the endpoint publishes at /Schemas and /ResourceTypes, so every attribute the gateway
offers goes through the create/read/update/delete and PATCH add/replace/remove checks. The
only addition is where the tester's random values come from for `userName`: the gateway's
userName is the sign-in email, so it gets fresh email addresses instead of random strings.

scim2-tester does not test authentication, filters, paging, sorting or ETags; test_scim.py
does.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import httpx2
import pytest
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_models import ListResponse, ResourceType, Schema, ScimProvider, ServiceProviderConfig
from scim2_tester import CheckResult, Status, check_server

from tests.teams.scim_helpers import enable_scim, issue_token

# pytest-socket only lets tests reach loopback: the live server binds 127.0.0.1.
os.environ.setdefault("DJANGO_LIVE_TEST_SERVER_ADDRESS", "127.0.0.1")

FAILED = (Status.ERROR, Status.CRITICAL)


class FreshEmails(Sequence[str]):
    """An `examples` list whose single entry is a new email address each time it is read."""

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: Any) -> Any:
        return f"{uuid.uuid4().hex}@example.com"


@pytest.fixture
def scim_http(
    live_server: Any, transactional_db: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[httpx2.Client]:
    enable_scim("okta", monkeypatch)
    token = issue_token("okta")
    with httpx2.Client(
        base_url=f"{live_server.url}/scim/v2",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ) as client:
        yield client


def described_server(http: httpx2.Client) -> ScimProvider:
    """The models and resource types the endpoint publishes, as scim2-models builds them."""
    schemas = ListResponse[Schema].model_validate(http.get("/Schemas").json()).resources
    types = ListResponse[ResourceType].model_validate(http.get("/ResourceTypes").json()).resources
    config = ServiceProviderConfig.model_validate(http.get("/ServiceProviderConfig").json())
    provider = ScimProvider.from_discovery(schemas or [], types or [], config)
    user = provider.model_for("User")
    assert user is not None
    user.model_fields["user_name"].examples = FreshEmails()  # type: ignore[assignment]
    return provider


def summary(results: list[CheckResult]) -> str:
    return "\n".join(
        f"{r.status.name:9} {r.resource_type or '-':6} {r.title}: {r.reason}" for r in results
    )


@pytest.mark.slow
def test_scim2_tester_passes_every_check_that_applies(scim_http: httpx2.Client) -> None:
    client = SyncSCIMClient(scim_http, provider=described_server(scim_http))

    results = check_server(client)

    failures = [r for r in results if r.status in FAILED]
    assert failures == [], summary(failures)
    ran = {(r.resource_type, r.title) for r in results if r.status == Status.SUCCESS}
    for resource in ("User", "Group"):
        for check in (
            "object_creation",
            "object_query",
            "object_query_without_id",
            "object_query_with_attributes",
            "object_list_with_attributes",
            "object_replacement",
            "object_deletion",
            "check_add_attribute",
            "check_remove_attribute",
            "check_replace_attribute",
        ):
            assert (resource, check) in ran, f"{resource} {check} did not succeed"
