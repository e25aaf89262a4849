"""End to end in a real browser: a team manager creates a virtual account, sees its token once,
then regenerates it from "Manage tokens"."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from accounts.models import TokenSecret, VirtualAccount
from accounts.selectors import principal_for_user
from gateway_project import manifests
from gateway_project.manifest_io import parse_yaml
from proxy.auth import grant_for_token
from tests import factories

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("transactional_db")]

PROVIDER = """\
type: provider-account/openai
name: openai-main
auth_data: {type: api-key, api_key: sk-test}
base_url: http://127.0.0.1:9/v1
collaborators: [{subject: team:payments, role_id: provider-account-access}]
integrations:
  - {type: integration/model/openai, name: gpt-4o, model_id: gpt-4o}
"""


def log_in(page: Page, email: str) -> None:
    page.goto("/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(factories.PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/teams/$"))


def test_manager_creates_a_virtual_account_and_regenerates_its_token(page: Page, artifacts):
    payments = factories.TeamFactory(name="payments")
    factories.TeamFactory(name="research")
    admin = factories.tenant_admin()
    manifests.apply(parse_yaml(PROVIDER), actor=principal_for_user(admin))
    manager = factories.team_manager_of(payments)
    manager.display_name = "Mona Manager"
    manager.save(update_fields=["display_name"])

    log_in(page, manager.email)
    page.locator(".sidebar").get_by_role("link", name="Virtual Account Tokens").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Virtual Account Tokens")
    page.get_by_role("link", name="New virtual account").click()

    # Only the manager's team, and only what the manager may use, are offered.
    owner = page.get_by_label("Owner team")
    expect(owner.locator("option")).to_have_text(["Choose a team", "payments"])
    page.get_by_label("Name").fill("billing-bot")
    owner.select_option("payments")
    page.get_by_label("openai-main (every model)").check()
    page.get_by_label("Expiration").select_option("30")
    expect(page.get_by_label("Rotate every (days)")).to_be_hidden()
    page.get_by_label("Rotation").select_option("on")
    page.get_by_label("Rotate every (days)").fill("90")
    page.get_by_label("Grace period (days)").fill("7")
    page.get_by_label("Notify").select_option("email")
    page.get_by_label("Email addresses").fill("ops@example.com")
    page.screenshot(path=str(artifacts / "va-create-form.png"), full_page=True)
    page.get_by_role("button", name="Create virtual account").click()

    # The token, once.
    expect(page.get_by_text("It will not be shown again")).to_be_visible()
    first = page.get_by_test_id("raw-token").input_value()
    assert first.startswith("gw_va_billing-bot_")
    page.screenshot(path=str(artifacts / "va-token-once.png"), full_page=True)
    account = VirtualAccount.objects.get(name="billing-bot")
    assert account.owner_team == payments
    assert (account.auto_rotate_interval_days, account.grace_period_days) == (90, 7)
    assert grant_for_token(first) is not None

    # Manage tokens: regenerate and retire the first token at once.
    page.get_by_role("link", name="Done").click()
    expect(page).to_have_url(re.compile(r"/access/virtual-accounts/billing-bot/#manage-tokens$"))
    assert first not in page.content()
    versions = page.get_by_test_id("token-versions")
    expect(versions.locator("tbody tr")).to_have_count(1)
    expect(versions).to_contain_text("current")
    grace = page.get_by_test_id("regenerate-form").get_by_label("Grace period (days)")
    expect(grace).to_have_value("7")  # the account's grace period by default
    grace.fill("0")
    page.get_by_role("button", name="Regenerate token").click()

    expect(page.get_by_role("heading", level=1)).to_have_text(
        re.compile(r"^New token for .billing-bot.$")
    )
    expect(page.get_by_test_id("previous-token")).to_have_text("stopped working now")
    second = page.get_by_test_id("raw-token").input_value()
    assert second.startswith("gw_va_billing-bot_")
    assert second != first
    page.screenshot(path=str(artifacts / "va-token-regenerated.png"), full_page=True)

    page.get_by_role("link", name="Done").click()
    expect(versions.locator("tbody tr")).to_have_count(2)
    expect(versions.locator("tbody tr").nth(0)).to_contain_text("current")
    expect(versions.locator("tbody tr").nth(1)).to_contain_text("retired")
    page.evaluate("window.scrollTo(0, 0)")  # full-page shots of a scrolled page skew the header
    page.screenshot(path=str(artifacts / "va-manage-tokens.png"), full_page=True)
    assert second not in page.content()
    assert grant_for_token(first) is None
    assert grant_for_token(second) is not None
    assert sorted(TokenSecret.objects.values_list("state", flat=True)) == ["current", "retired"]

    page.locator(".sidebar").get_by_role("link", name="Virtual Account Tokens").click()
    row = page.get_by_test_id("va-billing-bot")
    expect(row).to_contain_text("team payments")
    expect(row).to_contain_text("openai-main (every model)")
    page.screenshot(path=str(artifacts / "va-list.png"), full_page=True)
