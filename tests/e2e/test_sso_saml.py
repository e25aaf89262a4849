"""SAML 2.0 sign-in end to end: a real SAML IdP on loopback, headless Chromium, and tampering.

The browser test signs in from "Login with SSO" to the console. The tampering tests take real
responses from the same IdP (through its own sign-in form, with httpx), change them, and post
them to the ACS: each is refused and nothing is created. Where a check other than the signature
is under test (audience, validity window), the changed response is signed again with the IdP's
own key, so only that check can refuse it.
"""

from __future__ import annotations

import base64
import html
import logging
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from django.test import Client
from lxml import etree
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from playwright.sync_api import Page, expect

from accounts import sso
from accounts.models import (
    TENANT_ADMIN,
    ExternalIdentity,
    SamlAssertionSeen,
    SsoConfig,
    User,
)
from accounts.policy import Principal
from teams.models import Team, TeamMembership
from tests.e2e.idps import KeyPair, SamlIdp, key_pair, saml_idp

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SP_ENTITY_ID = "urn:gateway-test:sp"
EMAIL = "saml.jackson@example.com"
USER = {
    "userName": EMAIL,
    "nameIdFormat": "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
    "email": EMAIL,
    "displayName": "Saml Jackson",
    "groups": "ml-platform,gw-admins",
}
NS = {
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
}


@pytest.fixture(scope="module")
def idp_keys() -> KeyPair:
    return key_pair()


def configure(idp: SamlIdp) -> SsoConfig:
    """An enabled SAML configuration reading the IdP's metadata URL (enabling fetches it)."""
    config, _ = sso.sso_config_put(
        actor=Principal.system(),
        spec=sso.SsoConfigSpec(
            name="corp",
            enabled=True,
            protocol="saml",
            provider="custom",
            idp_metadata_url=idp.metadata_url,
            sp_entity_id=SP_ENTITY_ID,
            groups_claim="groups",
            role_mapping={"tenant_admin": ["gw-admins"]},
        ),
    )
    return config


# --- the browser ------------------------------------------------------------------------------


@pytest.fixture
def browser_idp(live_server, tmp_path: Path, idp_keys: KeyPair) -> Iterator[SamlIdp]:
    with saml_idp(
        tmp_path,
        acs_url=f"{live_server.url}/sso/saml/corp/acs/",
        audience=SP_ENTITY_ID,
        user=dict(USER),
        keys=idp_keys,
    ) as idp:
        yield idp
    sso.cache_clear()


@pytest.mark.usefixtures("transactional_db")
def test_a_user_signs_in_with_saml_from_the_login_page(
    page: Page, browser_idp: SamlIdp, live_server, artifacts
):
    config = configure(browser_idp)
    assert config.enabled

    page.goto("/")
    page.get_by_role("button", name="Login with SSO").click()
    expect(page).to_have_url(re.compile(rf"^{re.escape(browser_idp.url)}/saml/sso\?"))
    page.locator("#btn-sign-in").click()

    expect(page).to_have_url(re.compile(rf"^{re.escape(live_server.url)}/teams/$"))
    expect(page.get_by_test_id("signed-in-user")).to_have_text("Saml Jackson")
    page.screenshot(path=str(artifacts / "sso-saml-signed-in.png"), full_page=True)

    user = User.objects.get(email=EMAIL)
    assert user.tenant_role_id == TENANT_ADMIN
    link = ExternalIdentity.objects.get(user=user)
    assert (link.issuer, link.subject) == (browser_idp.entity_id, EMAIL)
    assert set(
        TeamMembership.objects.filter(user=user).values_list("team__name", "team__source")
    ) == {("ml-platform", "sso-group"), ("gw-admins", "sso-group")}
    assert SamlAssertionSeen.objects.count() == 1

    # The console shows what to register at the IdP.
    page.goto("/settings/sso/corp/")
    expect(page.get_by_test_id("acs-url")).to_have_text(f"{live_server.url}/sso/saml/corp/acs/")
    expect(page.get_by_test_id("sp-metadata")).to_contain_text(SP_ENTITY_ID, use_inner_text=False)


# --- tampered responses -----------------------------------------------------------------------


@pytest.fixture
def idp(db, tmp_path: Path, idp_keys: KeyPair) -> Iterator[SamlIdp]:
    """The IdP, answering the Django test client's requests (host `testserver`)."""
    with saml_idp(
        tmp_path,
        acs_url="http://testserver/sso/saml/corp/acs/",
        audience=SP_ENTITY_ID,
        user=dict(USER),
        keys=idp_keys,
    ) as running:
        configure(running)
        yield running
    sso.cache_clear()


@pytest.fixture
def client() -> Client:
    """The test client with a Host header, as python3-saml builds URLs from it."""
    return Client(HTTP_HOST="testserver")


def _hidden(page: str, name: str) -> str:
    match = re.search(rf"""name=["']{name}["'][^>]*?value=["']([^"']*)["']""", page, re.S)
    assert match is not None, f"no {name} in the IdP's page"
    return html.unescape(match.group(1))


def real_response(client: Client, idp: SamlIdp) -> tuple[str, str]:
    """Start sign-in as a browser would, and sign in at the real IdP: (SAMLResponse, RelayState)."""
    start = client.post("/sso/saml/corp/login/", {"process": "login"})
    assert start.status_code == 302
    assert start["Location"].startswith(f"{idp.url}/saml/sso?")
    with httpx.Client(timeout=10, trust_env=False) as browser:
        form = browser.get(start["Location"])
        assert form.status_code == 200
        fields = {**USER, "_authnRequest": _hidden(form.text, "_authnRequest")}
        posted = browser.post(f"{idp.url}/signin", data=fields)
        assert posted.status_code == 200
    return _hidden(posted.text, "SAMLResponse"), _hidden(posted.text, "RelayState")


def post_acs(client: Client, saml_response: str, relay_state: str):
    return client.post(
        "/sso/saml/corp/acs/",
        {"SAMLResponse": saml_response, "RelayState": relay_state},
        follow=True,
    )


def decode(saml_response: str) -> etree._Element:
    return etree.fromstring(base64.b64decode(saml_response))


def encode(root: etree._Element | bytes) -> str:
    raw = root if isinstance(root, bytes) else etree.tostring(root)
    return base64.b64encode(raw).decode()


def strip_signatures(root: etree._Element) -> etree._Element:
    for signature in root.xpath("//ds:Signature", namespaces=NS):
        signature.getparent().remove(signature)
    return root


def resign(root: etree._Element, keys: KeyPair) -> str:
    """Sign the assertion, then the response, with `keys` (as the IdP itself does)."""
    strip_signatures(root)
    assertion = root.find("saml:Assertion", NS)
    signed_assertion = etree.fromstring(
        OneLogin_Saml2_Utils.add_sign(etree.tostring(assertion), keys.key_pem, keys.cert_pem)
    )
    root.replace(assertion, signed_assertion)
    return encode(OneLogin_Saml2_Utils.add_sign(etree.tostring(root), keys.key_pem, keys.cert_pem))


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def altered_assertion(root: etree._Element, keys: KeyPair) -> str:
    root.find(".//saml:Subject/saml:NameID", NS).text = "mallory@example.com"
    for value in root.xpath(".//saml:Attribute[@Name='email']/saml:AttributeValue", namespaces=NS):
        value.text = "mallory@example.com"
    return encode(root)


def signature_wrapping(root: etree._Element, keys: KeyPair) -> str:
    """XSW: a forged, unsigned assertion first; the signed original kept after it."""
    original = root.find("saml:Assertion", NS)
    forged = etree.fromstring(etree.tostring(original))
    for signature in forged.findall("ds:Signature", NS):
        forged.remove(signature)
    forged.set("ID", "_forged" + original.get("ID"))
    forged.find(".//saml:Subject/saml:NameID", NS).text = "mallory@example.com"
    original.addprevious(forged)
    return encode(root)


def wrapped_in_extensions(root: etree._Element, keys: KeyPair) -> str:
    """XSW: the signed assertion moved under an Extensions element, a forged one in its place."""
    original = root.find("saml:Assertion", NS)
    forged = etree.fromstring(etree.tostring(original))
    forged.find(".//saml:Subject/saml:NameID", NS).text = "mallory@example.com"
    extensions = etree.SubElement(root, f"{{{NS['samlp']}}}Extensions")
    root.replace(original, forged)
    extensions.append(original)
    root.remove(extensions)
    root.insert(1, extensions)
    return encode(root)


def wrong_audience(root: etree._Element, keys: KeyPair) -> str:
    root.find(".//saml:Audience", NS).text = "urn:someone-else:sp"
    return resign(root, keys)


def expired(root: etree._Element, keys: KeyPair) -> str:
    past = datetime.now(tz=UTC) - timedelta(hours=2)
    for element in root.xpath(".//*[@NotOnOrAfter]"):
        element.set("NotOnOrAfter", _iso(past))
    for element in root.xpath(".//*[@NotBefore]"):
        element.set("NotBefore", _iso(past - timedelta(hours=1)))
    return resign(root, keys)


def unsigned(root: etree._Element, keys: KeyPair) -> str:
    return encode(strip_signatures(root))


def signed_by_another_key(root: etree._Element, keys: KeyPair) -> str:
    return resign(root, key_pair("Mallory"))


Tamper = Callable[[etree._Element, KeyPair], str]


def snapshot() -> tuple[int, int, int, int, int]:
    return (
        User.objects.count(),
        ExternalIdentity.objects.count(),
        Team.objects.count(),
        TeamMembership.objects.count(),
        SamlAssertionSeen.objects.count(),
    )


def assert_refused(response, client: Client, before: tuple[int, ...]) -> None:
    assert response.status_code == 403
    assert 'data-testid="sso-error"' in response.content.decode()
    assert "_auth_user_id" not in client.session
    assert snapshot() == before


def test_a_real_response_signs_in_through_the_test_client(client: Client, idp: SamlIdp):
    saml_response, relay_state = real_response(client, idp)

    final = post_acs(client, saml_response, relay_state)

    assert final.status_code == 200
    assert final.redirect_chain[-1][0] == "/teams/"
    user = User.objects.get(email=EMAIL)
    assert client.session["_auth_user_id"] == str(user.pk)


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (altered_assertion, "Signature validation failed"),
        (signature_wrapping, "must contain 1 assertion"),
        (wrapped_in_extensions, "must contain 1 assertion"),
        (wrong_audience, "is not a valid audience for this Response"),
        (expired, "Could not validate timestamp: expired"),
        (unsigned, "No Signature found"),
        (signed_by_another_key, "Signature validation failed"),
    ],
    ids=lambda v: v.__name__ if callable(v) else "",
)
def test_tampered_responses_are_refused_and_create_nothing(
    tamper: Tamper, reason: str, client: Client, idp: SamlIdp, caplog
):
    saml_response, relay_state = real_response(client, idp)
    forged = tamper(decode(saml_response), idp.keys)
    before = snapshot()

    with caplog.at_level(logging.WARNING, logger="accounts.sso_adapters"):
        response = post_acs(client, forged, relay_state)

    assert_refused(response, client, before)
    assert reason in caplog.text

    # The untouched response still works: only the change was refused.
    assert post_acs(client, saml_response, relay_state).status_code == 200
    assert User.objects.filter(email=EMAIL).exists()


def test_a_replayed_response_is_refused(client: Client, idp: SamlIdp, caplog):
    saml_response, relay_state = real_response(client, idp)
    states = None

    def remember_states() -> None:
        nonlocal states
        states = dict(client.session.get("socialaccount_states") or {})

    remember_states()
    assert post_acs(client, saml_response, relay_state).status_code == 200
    client.post("/logout/")
    before = snapshot()

    # Replayed as is: the request it answered was already used.
    assert_refused(post_acs(client, saml_response, relay_state), client, before)

    # Even with the original request state put back, the assertion itself was consumed.
    session = client.session
    session["socialaccount_states"] = states
    session.save()
    with caplog.at_level(logging.WARNING, logger="accounts.sso_adapters"):
        response = post_acs(client, saml_response, relay_state)
    assert_refused(response, client, before)
    assert "replayed SAML assertion" in caplog.text
    assert "already used" in response.content.decode()
