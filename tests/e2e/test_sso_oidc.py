"""OpenID Connect sign-in end to end: a real OpenID Provider on loopback and headless Chromium."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from accounts import sso
from accounts.models import TENANT_ADMIN, ExternalIdentity, SsoConfig, User
from accounts.policy import Principal
from teams.models import Team, TeamMembership
from tests import factories
from tests.e2e.idps import oidc_idp

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.usefixtures("transactional_db")]

CLIENT_ID = "gateway-console"
CLIENT_SECRET = "idp-client-secret-0123456789"
ACCOUNTS = {
    "alice": {
        "email": "alice@example.com",
        "email_verified": True,
        "name": "Alice Example",
        "groups": ["ml-platform", "gw-admins"],
    },
    "bob": {
        "email": "bob@example.com",
        "email_verified": True,
        "name": "Bob Builder",
        "groups": ["data"],
    },
}


@pytest.fixture
def issuer(live_server) -> Iterator[str]:
    redirect_uri = f"{live_server.url}/sso/oidc/corp/login/callback/"
    with oidc_idp(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uri=redirect_uri,
        accounts=ACCOUNTS,
    ) as url:
        yield url
    sso.cache_clear()


def idp_sign_in(page: Page, login: str) -> None:
    """The OpenID Provider's own pages: sign in (any password), then consent."""
    page.locator("input[name=login]").fill(login)
    page.locator("input[name=password]").fill("any-password")
    page.get_by_role("button", name="Sign-in").click()
    page.get_by_role("button", name="Continue").click()


def test_admin_sets_up_oidc_in_the_console_and_a_user_signs_in_with_sso(
    page: Page, issuer: str, live_server, artifacts
):
    factories.UserFactory(
        email="admin@example.com", display_name="Ada Admin", tenant_role_id=TENANT_ADMIN
    )
    page.goto("/login/")
    expect(page.get_by_test_id("sso-login")).to_have_count(0)
    page.get_by_label("Email").fill("admin@example.com")
    page.get_by_label("Password").fill(factories.PASSWORD)
    page.get_by_role("button", name="Log in").click()

    page.get_by_role("link", name="Settings (SSO)").click()
    expect(page).to_have_url(re.compile(r"/settings/sso/$"))
    page.get_by_role("link", name="New SSO configuration").click()
    page.get_by_label("Name").fill("corp")
    page.get_by_label("Enabled").check()
    page.get_by_label("Provider").select_option("custom")
    page.get_by_label("Protocol").select_option("oidc")
    page.get_by_label("Client ID").fill(CLIENT_ID)
    page.get_by_label("Client secret").fill(CLIENT_SECRET)
    page.get_by_label("Issuer URL").fill(issuer)
    page.get_by_label("Groups claim").fill("groups")
    page.get_by_label("Tenant admin groups").fill("gw-admins")
    page.get_by_role("button", name="Save").click()

    expect(page.locator(".flash-success")).to_contain_text("Saved SSO configuration corp.")
    callback = f"{live_server.url}/sso/oidc/corp/login/callback/"
    expect(page.get_by_test_id("callback-url")).to_have_text(callback)
    expect(page.get_by_test_id("secret-set")).to_be_visible()
    assert CLIENT_SECRET not in page.content()
    page.get_by_test_id("sso-test").click()
    result = page.get_by_test_id("sso-test-result")
    expect(result).to_contain_text("The identity provider answered as expected.")
    expect(result).to_contain_text(f"issuer {issuer} matches")
    expect(result).to_contain_text(re.compile(r"JWKS: \d+ signing key\(s\)"))
    page.screenshot(path=str(artifacts / "sso-oidc-settings.png"), full_page=True)

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login/"))
    page.get_by_role("button", name="Login with SSO").click()
    expect(page).to_have_url(re.compile(rf"^{re.escape(issuer)}/"))
    idp_sign_in(page, "alice")

    expect(page).to_have_url(re.compile(rf"^{re.escape(live_server.url)}/teams/$"))
    expect(page.get_by_test_id("signed-in-user")).to_have_text("Alice Example")
    page.screenshot(path=str(artifacts / "sso-oidc-signed-in.png"), full_page=True)

    alice = User.objects.get(email="alice@example.com")
    assert (alice.display_name, alice.tenant_role_id, alice.has_usable_password()) == (
        "Alice Example",
        TENANT_ADMIN,
        False,
    )
    link = ExternalIdentity.objects.get(user=alice)
    assert (link.issuer, link.subject) == (issuer, "alice")
    teams = TeamMembership.objects.filter(user=alice, role="member").values_list(
        "team__name", "team__source"
    )
    assert set(teams) == {("ml-platform", "sso-group"), ("gw-admins", "sso-group")}


def test_sso_keeps_the_next_url_and_invite_only_refuses_strangers(
    page: Page, issuer: str, live_server
):
    config, _ = sso.sso_config_put(
        actor=Principal.system(),
        spec=sso.SsoConfigSpec(
            name="corp",
            enabled=True,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            issuer=issuer,
            groups_claim="groups",
            button_text="Login with Acme ID",
            provisioning="invite_only",
        ),
    )
    assert config.enabled

    page.goto("/tokens/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/tokens/$"))
    page.get_by_role("button", name="Login with Acme ID").click()
    idp_sign_in(page, "bob")
    expect(page.get_by_test_id("sso-error")).to_contain_text("invitation only")
    assert not User.objects.filter(email="bob@example.com").exists()
    assert not Team.objects.filter(name="data").exists()

    factories.UserFactory(email="bob@example.com", display_name="")
    page.goto("/tokens/")
    page.get_by_role("button", name="Login with Acme ID").click()
    # The IdP remembers bob's session and consent: straight back to the gateway.
    expect(page).to_have_url(re.compile(rf"^{re.escape(live_server.url)}/tokens/$"))
    expect(page.get_by_test_id("signed-in-user")).to_have_text("Bob Builder")
    bob = User.objects.get(email="bob@example.com")
    assert bob.tenant_role_id == "member"
    assert set(TeamMembership.objects.filter(user=bob).values_list("team__name", flat=True)) == {
        "data"
    }
    assert SsoConfig.objects.get().last_test_ok is None
