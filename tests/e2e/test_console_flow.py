"""End to end in a real browser: sign in, build a team, mint a token, read the audit log."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from accounts.models import PersonalAccessToken
from gateway_project.crypto import keyed_digest
from teams.models import Team
from tests import factories

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("transactional_db")]


def log_in(page: Page, email: str) -> None:
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/teams/$"))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(factories.PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/teams/$"))


def test_admin_builds_a_team_mints_a_token_and_audits_it(page: Page, artifacts):
    factories.UserFactory(
        email="admin@example.com", display_name="Ada Admin", tenant_role_id="tenant-admin"
    )
    factories.UserFactory(email="alice@example.com", display_name="Alice Liddell")
    factories.UserFactory(email="bob@example.com", display_name="Bob Builder")
    for name in ("data-science", "infra", "support"):
        factories.TeamFactory(name=name, description=f"The {name} team.")
    page.on("dialog", lambda dialog: dialog.accept())

    log_in(page, "admin@example.com")
    expect(page.get_by_test_id("signed-in-user")).to_have_text("Ada Admin")
    expect(page.get_by_role("link", name="Metrics")).to_have_attribute("href", "/monitor/metrics/")
    expect(page.get_by_role("link", name="Models")).to_have_attribute("href", "/models/")

    # A team with a member and a manager.
    page.get_by_role("link", name="New team").click()
    page.get_by_label("Name").fill("ml-platform")
    page.get_by_label("Description").fill("Models and the serving stack.")
    page.get_by_role("button", name="Create team").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("ml-platform")
    page.locator("#id_member_email").fill("alice@example.com")
    page.get_by_role("button", name="Add member").click()
    expect(page.locator(".flash-success")).to_have_text(
        re.compile("Added alice@example.com as member.")
    )
    page.locator("#id_manager_email").fill("bob@example.com")
    page.get_by_role("button", name="Add manager").click()
    expect(page.get_by_test_id("member-list")).to_contain_text("Alice Liddell")
    expect(page.get_by_test_id("manager-list")).to_contain_text("Bob Builder")
    page.screenshot(path=str(artifacts / "console-team-detail.png"), full_page=True)
    team = Team.objects.get(name="ml-platform")
    assert set(team.memberships.values_list("user__email", "role")) == {
        ("alice@example.com", "member"),
        ("bob@example.com", "manager"),
    }

    page.get_by_role("link", name="Teams", exact=True).click()
    row = page.get_by_test_id("team-table").locator("tr", has_text="ml-platform")
    expect(row.locator("td").nth(2)).to_have_text("1")
    expect(row.locator("td").nth(3)).to_have_text("1")
    page.screenshot(path=str(artifacts / "console-teams.png"), full_page=True)

    # A personal access token, shown once.
    page.get_by_role("link", name="Personal Access Tokens").click()
    page.get_by_role("link", name="New token").click()
    page.get_by_label("Name").fill("e2e-laptop")
    page.get_by_label("Expiry").select_option("7")
    page.get_by_role("button", name="Create token").click()
    expect(page.get_by_text("It will not be shown again")).to_be_visible()
    raw = page.get_by_test_id("raw-token").input_value()
    assert raw.startswith("gw_pat_")
    assert PersonalAccessToken.objects.get(name="e2e-laptop").digest == keyed_digest(raw)
    page.get_by_role("button", name="Copy").click()
    page.get_by_role("link", name="Done").click()
    expect(page.locator("table")).to_contain_text("e2e-laptop")
    assert raw not in page.content()
    page.reload()
    assert raw not in page.content()

    # The audit log tells the story.
    page.get_by_role("link", name="Audit log").click()
    page.get_by_placeholder("Action, e.g. team.created").fill("team.")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text("team.manager_added")
    expect(rows.nth(1)).to_contain_text("team.member_added")
    expect(rows.nth(2)).to_contain_text("team.created")
    rows.nth(2).get_by_role("link").click()
    expect(page.get_by_test_id("audit-after")).to_contain_text('"name": "ml-platform"')
    page.screenshot(path=str(artifacts / "console-audit-detail.png"), full_page=True)

    # And out again.
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login/$"))
    expect(page.get_by_role("heading", name="Log in to your account")).to_be_visible()
