"""End to end in a real browser: edit a team through "Apply using YAML", and the Models page."""

from __future__ import annotations

import importlib
import re

import pytest
from django.apps import apps as django_apps
from playwright.sync_api import Page, expect

from accounts.selectors import principal_for_user
from gateway_project import manifests
from gateway_project.manifest_io import parse_yaml
from teams.models import Team, TeamMembership
from tests import factories

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("transactional_db")]

PROVIDERS = """\
type: provider-account/openai
name: openai-main
auth_data: {type: api-key, api_key: sk-e2e-not-a-real-key}
collaborators:
  - {subject: team:ml-platform, role_id: provider-account-access}
  - {subject: user:admin@example.com, role_id: provider-account-manager}
integrations:
  - type: integration/model/openai
    name: gpt-4o
    model_id: gpt-4o-2024-08-06
    model_types: [chat]
    cost: {metric: per_1000_tokens, value: {input: 0.0025, output: 0.01}}
  - type: integration/model/openai
    name: text-embedding-3-small
    model_id: text-embedding-3-small
    model_types: [embedding]
    authorized_subjects: [team:ml-platform]
---
type: provider-account/anthropic
name: anthropic-main
auth_data: {type: api-key, api_key: sk-ant-e2e-not-a-real-key}
collaborators:
  - {subject: team:everyone, role_id: provider-account-access}
integrations:
  - {type: integration/model/anthropic, name: claude-sonnet, model_id: claude-sonnet-4-5}
---
type: provider-account/aws-bedrock
name: bedrock-eu
region: eu-west-1
auth_data: {type: access-key-based, access_key_id: AKIAIOSFODNN7EXAMPLE, secret_access_key: e2e}
integrations:
  - type: integration/model/bedrock
    name: llama-3
    model_id: meta.llama3-70b-instruct-v1:0
---
type: mcp-server/remote
name: github-tools
description: GitHub issues and pull requests.
url: http://127.0.0.1:1/mcp
tool_settings: [{name: delete_repo, disabled: true}]
collaborators:
  - {subject: team:ml-platform, role_id: mcp-server-user}
"""


@pytest.fixture
def seeded(transactional_db: None) -> None:
    """Transactional tests flush the tables: seed the built-in roles and team again."""
    importlib.import_module("accounts.migrations.0003_builtin_roles").create_roles(
        django_apps, None
    )
    importlib.import_module("teams.migrations.0002_everyone").create_everyone(django_apps, None)


def log_in(page: Page, email: str) -> None:
    page.goto("/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(factories.PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/teams/$"))


def test_admin_adds_a_member_through_yaml_and_browses_models(page: Page, artifacts, seeded):
    admin = factories.UserFactory(
        email="admin@example.com", display_name="Ada Admin", tenant_role_id="tenant-admin"
    )
    alice = factories.UserFactory(email="alice@example.com", display_name="Alice Liddell")
    factories.UserFactory(email="bob@example.com", display_name="Bob Builder")
    team = factories.TeamFactory(name="ml-platform", description="Models and serving.")
    TeamMembership.objects.create(team=team, user=alice, role="member")
    manifests.apply(parse_yaml(PROVIDERS), actor=principal_for_user(admin))

    log_in(page, "admin@example.com")
    page.goto(f"/teams/{team.pk}/")
    page.get_by_role("link", name="Apply using YAML").click()
    expect(page).to_have_url(re.compile(rf"/teams/{team.pk}/yaml/$"))
    editor = page.get_by_test_id("yaml-editor")
    text = editor.input_value()
    assert text.endswith("members:\n- alice@example.com\n")

    # A typo first: the broken line is pointed out and highlighted.
    editor.fill(text + " oops: [\n")
    page.get_by_role("button", name="Preview changes").click()
    expect(page.get_by_test_id("yaml-problems")).to_contain_text("invalid YAML (line 7")
    expect(page.locator(".code-gutter li.is-error")).to_have_text("7")
    page.screenshot(path=str(artifacts / "console-yaml-error.png"), full_page=True)

    # Add Bob, preview: the diff shows him and nothing changes yet.
    page.get_by_test_id("yaml-editor").fill(text + "- bob@example.com\n")
    page.get_by_role("button", name="Preview changes").click()
    expect(page.get_by_test_id("action-ml-platform")).to_have_text("would be updated")
    diff = page.get_by_test_id("diff-ml-platform")
    expect(diff.locator(".diff-add")).to_have_text("+- bob@example.com")
    page.screenshot(path=str(artifacts / "console-yaml-preview.png"), full_page=True)
    assert list(Team.objects.get(name="ml-platform").memberships.values_list("user__email")) == [
        ("alice@example.com",)
    ]

    # Apply: back on the team page with Bob as a member.
    page.get_by_role("button", name="Apply", exact=True).click()
    expect(page).to_have_url(re.compile(rf"/teams/{team.pk}/$"))
    expect(page.locator(".flash-success")).to_contain_text("Applied team ml-platform: updated.")
    expect(page.get_by_test_id("member-list")).to_contain_text("Bob Builder")
    expect(page.get_by_test_id("member-list")).to_contain_text("Alice Liddell")

    # The Models page lists every account with its models.
    page.get_by_role("link", name="Models").click()
    expect(page).to_have_url(re.compile(r"/models/$"))
    expect(page.get_by_test_id("account-list").locator("section")).to_have_count(3)
    expect(page.get_by_test_id("account-openai-main")).to_contain_text("gpt-4o-2024-08-06")
    page.screenshot(path=str(artifacts / "console-models.png"), full_page=True)
    page.get_by_role("link", name="New from YAML").click()
    expect(page.get_by_test_id("yaml-editor")).to_have_value(
        re.compile(r"type: provider-account/openai\n")
    )
    page.screenshot(path=str(artifacts / "console-apply-yaml.png"), full_page=True)
    page.goto("/models/")
    page.get_by_role("link", name="openai-main").click()
    page.get_by_role("link", name=re.compile(r"^Access")).click()
    expect(page.get_by_test_id("collaborator-list")).to_contain_text("team:ml-platform")
    page.screenshot(path=str(artifacts / "console-model-access.png"), full_page=True)
    page.get_by_role("link", name="Settings", exact=True).click()
    expect(page.get_by_test_id("secret-state")).to_have_text("•••••• (set)")
    page.screenshot(path=str(artifacts / "console-model-settings.png"), full_page=True)
    assert "sk-e2e-not-a-real-key" not in page.content()

    # An MCP server whose upstream is down still shows its page, with the reason.
    page.get_by_role("link", name="MCP Servers").click()
    page.get_by_role("link", name="github-tools").click()
    expect(page.get_by_test_id("mcp-endpoint")).to_have_value(
        re.compile(r"/mcp/v1/github-tools/mcp$")
    )
    expect(page.get_by_test_id("tools-error")).to_be_visible()
    page.screenshot(path=str(artifacts / "console-mcp-server.png"), full_page=True)
