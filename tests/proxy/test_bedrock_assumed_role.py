"""Bedrock accounts with `assumed-role-based` auth: STS AssumeRole, cached, signs the calls."""

from __future__ import annotations

import openai
import pytest

from accounts.selectors import principal_for_user
from gateway_project import manifests
from gateway_project.manifest_io import parse_yaml
from providers.connection import provider_connection_test
from providers.models import ProviderAccount
from tests import factories
from tests.fakes.fixtures import FakeProvider
from tests.servers import serve_in_thread

ROLE = "arn:aws:iam::123456789012:role/gateway-bedrock"
ACCOUNT = """\
type: provider-account/aws-bedrock
name: bedrock-role
region: us-east-1
auth_data: {{type: assumed-role-based, assumed_role_arn: "{role}", external_id: ext-42}}
base_url: {url}
collaborators: [{{subject: team:everyone, role_id: provider-account-access}}]
integrations:
  - {{type: integration/model/bedrock, name: nova, model_id: amazon.nova-lite-v1:0}}
"""


@pytest.fixture
def role_account(transactional_db, fake_provider: FakeProvider, settings, monkeypatch):
    settings.GATEWAY_AWS_STS_ENDPOINT = f"{fake_provider.url}/_sts/"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", fake_provider.AWS_ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", fake_provider.AWS_SECRET_ACCESS_KEY)
    admin = factories.tenant_admin()
    manifests.apply(
        parse_yaml(ACCOUNT.format(role=ROLE, url=fake_provider.url)),
        actor=principal_for_user(admin),
    )
    fake_provider.app.assumed_roles.clear()
    return factories.pat_for(factories.member())


def test_calls_are_signed_with_the_assumed_roles_temporary_keys(role_account, fake_provider):
    from gateway_project.asgi import application

    with serve_in_thread(application) as url:
        client = openai.OpenAI(base_url=f"{url}/api/llm/v1", api_key=role_account, max_retries=0)
        for _ in range(3):
            reply = client.chat.completions.create(
                model="bedrock-role/nova", messages=[{"role": "user", "content": "hi"}]
            )
            assert reply.choices[0].message.content == "echo: hi"
    roles = fake_provider.app.assumed_roles
    assert [(r["RoleArn"], r["ExternalId"]) for r in roles] == [(ROLE, "ext-42")]  # cached
    sent = fake_provider.last_request("/converse")
    assert sent["headers"]["authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential={roles[0]['AccessKeyId']}/"
    )
    assert sent["headers"]["x-amz-security-token"] == "fakeSessionToken1"


def test_test_connection_assumes_the_role(role_account, fake_provider):
    result = provider_connection_test(ProviderAccount.objects.get(name="bedrock-role"))
    assert (result.ok, result.message) == (True, "connected: the credentials work")


def test_without_the_gateways_own_identity_the_error_is_clear(role_account, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    result = provider_connection_test(ProviderAccount.objects.get(name="bedrock-role"))
    assert result.ok is False
    assert "AWS_ACCESS_KEY_ID" in result.message
