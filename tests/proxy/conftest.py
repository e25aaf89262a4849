"""Fixtures for the proxy: fake providers, accounts pointing at them, a running gateway."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import pytest

from accounts.models import User
from accounts.selectors import principal_for_user
from gateway_project import manifests
from gateway_project.manifest_io import parse_yaml
from tests import factories
from tests.fakes.fixtures import (  # noqa: F401 - fixtures used by the proxy tests
    FakeProvider,
    fake_provider,
    fake_provider_server,
)
from tests.servers import serve_in_thread

MANIFESTS = """\
type: provider-account/openai
name: openai-main
auth_data: {{type: api-key, api_key: {openai_key}}}
base_url: {url}/v1
collaborators: [{{subject: team:ml, role_id: provider-account-access}}]
integrations:
  - {{type: integration/model/openai, name: gpt-4o, model_id: gpt-4o-2024-08-06,
      cost: {{metric: per_1000_tokens, value: {{input: 2.5, output: 10}}}}}}
  - {{type: integration/model/openai, name: embed, model_id: text-embedding-3-small,
      model_types: [embedding]}}
---
type: provider-account/anthropic
name: anthropic-main
auth_data: {{type: api-key, api_key: {anthropic_key}}}
base_url: {url}
collaborators: [{{subject: team:ml, role_id: provider-account-access}}]
integrations:
  - {{type: integration/model/anthropic, name: claude, model_id: claude-sonnet-4-5}}
---
type: provider-account/aws-bedrock
name: bedrock-main
region: us-east-1
auth_data: {{type: access-key-based, access_key_id: {aws_id}, secret_access_key: {aws_secret}}}
base_url: {url}
collaborators: [{{subject: team:ml, role_id: provider-account-access}}]
integrations:
  - {{type: integration/model/bedrock, name: nova, model_id: amazon.nova-lite-v1:0}}
"""


@dataclass
class Gateway:
    url: str
    member: User
    member_token: str
    outsider: User
    outsider_token: str
    fake: FakeProvider

    @property
    def openai_base(self) -> str:
        return f"{self.url}/api/llm/v1"

    @property
    def anthropic_base(self) -> str:
        return f"{self.url}/api/llm"


def seed_accounts(fake: FakeProvider) -> None:
    admin = factories.tenant_admin()
    text = MANIFESTS.format(
        url=fake.url,
        openai_key=fake.OPENAI_KEY,
        anthropic_key=fake.ANTHROPIC_KEY,
        aws_id=fake.AWS_ACCESS_KEY_ID,
        aws_secret=fake.AWS_SECRET_ACCESS_KEY,
    )
    manifests.apply(parse_yaml(text), actor=principal_for_user(admin))


@pytest.fixture
def gateway_factory(
    transactional_db: None,
    fake_provider: FakeProvider,  # noqa: F811
) -> Callable[[], AbstractContextManager[Gateway]]:
    """Seeds people and accounts; each `with gateway_factory() as gw:` runs a gateway."""
    ml = factories.TeamFactory(name="ml")
    member = factories.team_member_of(ml)
    outsider = factories.member()
    seed_accounts(fake_provider)
    tokens = factories.pat_for(member), factories.pat_for(outsider)

    @contextmanager
    def run() -> Iterator[Gateway]:
        from gateway_project.asgi import application

        with serve_in_thread(application) as url:
            yield Gateway(url, member, tokens[0], outsider, tokens[1], fake_provider)

    return run


@pytest.fixture
def gateway(gateway_factory: Callable[[], AbstractContextManager[Gateway]]) -> Iterator[Gateway]:
    with gateway_factory() as running:
        yield running


@pytest.fixture(autouse=True)
def _close_proxy_db_threads() -> Iterator[None]:
    """Tests that drive proxy code directly leave its database threads open: close them."""
    yield
    from proxy import db

    db.shutdown()
