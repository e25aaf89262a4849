"""SSO rules: who an IdP sign-in is for, groups and roles, break-glass login, IdP JWTs."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.test import RequestFactory
from django.urls import reverse

from accounts import services, sso
from accounts.models import (
    MEMBER,
    TENANT_ADMIN,
    AuditEvent,
    ExternalIdentity,
    ExternalIdentityMapping,
    ExternalIdentityProvider,
    Role,
    SamlAssertionSeen,
    SsoConfig,
    User,
    VirtualAccount,
)
from accounts.policy import Permission, PolicyDenied, Principal
from accounts.sso_adapters import safe_next
from gateway_project import manifests
from gateway_project.errors import ValidationFailed
from gateway_project.manifest_io import Document
from teams.models import Team, TeamMembership
from tests import factories

pytestmark = pytest.mark.django_db

ISSUER = "https://idp.example.com"


def make_config(**overrides: Any) -> SsoConfig:
    """An enabled OIDC configuration written straight to the table (no IdP reachable here)."""
    values: dict[str, Any] = {
        "name": "corp",
        "enabled": True,
        "protocol": "oidc",
        "client_id": "gateway",
        "client_secret": "s3cret-value",
        "issuer": ISSUER,
        "groups_claim": "groups",
    }
    values.update(overrides)
    return SsoConfig.objects.create(**values)


def identity(subject: str = "u-1", **overrides: Any) -> sso.IdpIdentity:
    values: dict[str, Any] = {
        "issuer": ISSUER,
        "subject": subject,
        "email": "ada@example.com",
        "email_verified": True,
        "display_name": "Ada Lovelace",
        "groups": (),
    }
    values.update(overrides)
    return sso.IdpIdentity(**values)


def counts() -> tuple[int, int, int, int]:
    return (
        User.objects.count(),
        ExternalIdentity.objects.count(),
        Team.objects.count(),
        TeamMembership.objects.count(),
    )


# --- who the sign-in is for -------------------------------------------------------------------


def test_first_sign_in_creates_the_user_just_in_time():
    config = make_config()

    user = sso.user_provision_from_idp(config=config, identity=identity())

    assert (user.email, user.display_name, user.tenant_role_id) == (
        "ada@example.com",
        "Ada Lovelace",
        MEMBER,
    )
    assert not user.has_usable_password()
    link = ExternalIdentity.objects.get()
    assert (link.user_id, link.issuer, link.subject, link.config_id) == (
        user.pk,
        ISSUER,
        "u-1",
        config.pk,
    )
    actions = list(AuditEvent.objects.order_by("id").values_list("action", "actor"))
    assert actions == [
        ("user.provisioned_from_idp", "system"),
        ("user.identity_linked", "system"),
    ]


@pytest.mark.parametrize("mode", ["invite_only", "scim_only"])
def test_invite_only_and_scim_only_refuse_unknown_users_and_create_nothing(mode):
    config = make_config(provisioning=mode)
    before = counts()

    with pytest.raises(sso.SsoLoginRefused, match="administrator"):
        sso.user_provision_from_idp(config=config, identity=identity())

    assert counts() == before
    assert not AuditEvent.objects.exists()


def test_invite_only_lets_an_invited_user_in_by_verified_email():
    config = make_config(provisioning="invite_only")
    invited = factories.UserFactory(email="ada@example.com")

    user = sso.user_provision_from_idp(config=config, identity=identity())

    assert user.pk == invited.pk
    assert ExternalIdentity.objects.get().user_id == invited.pk


def test_users_are_found_by_issuer_and_subject_not_by_email():
    config = make_config()
    first = sso.user_provision_from_idp(config=config, identity=identity())

    # The IdP changed the person's email: same issuer and subject, same user.
    again = sso.user_provision_from_idp(config=config, identity=identity(email="ada.l@example.com"))
    assert again.pk == first.pk
    assert User.objects.count() == 1
    assert ExternalIdentity.objects.get().email == "ada.l@example.com"

    # Another subject at the same issuer claiming the same email is not that user.
    before = counts()
    with pytest.raises(sso.SsoLoginRefused, match="another identity"):
        sso.user_provision_from_idp(config=config, identity=identity(subject="u-2"))
    assert counts() == before


def test_an_unverified_email_never_links_to_an_existing_user():
    config = make_config()
    factories.UserFactory(email="ada@example.com")
    before = counts()

    with pytest.raises(sso.SsoLoginRefused, match="verified"):
        sso.user_provision_from_idp(config=config, identity=identity(email_verified=False))

    assert counts() == before


def test_the_same_subject_at_another_issuer_is_another_identity():
    config = make_config()
    user = sso.user_provision_from_idp(config=config, identity=identity())
    other = make_config(name="partner", issuer="https://partner.example.com")

    found = sso.user_provision_from_idp(
        config=other,
        identity=identity(issuer="https://partner.example.com", email="ada@example.com"),
    )

    assert found.pk == user.pk  # linked by verified email: no identity from that issuer yet
    assert set(ExternalIdentity.objects.values_list("issuer", flat=True)) == {
        ISSUER,
        "https://partner.example.com",
    }


def test_deactivated_users_cannot_sign_in():
    config = make_config()
    user = sso.user_provision_from_idp(config=config, identity=identity())
    admin = factories.tenant_admin()
    services.user_set_active(actor=factories.principal(admin), user=user, active=False)
    before = counts()

    with pytest.raises(sso.SsoLoginRefused, match="deactivated"):
        sso.user_provision_from_idp(config=config, identity=identity())

    assert counts() == before


def test_a_disabled_configuration_signs_nobody_in():
    config = make_config(enabled=False)

    with pytest.raises(sso.SsoLoginRefused, match="disabled"):
        sso.user_provision_from_idp(config=config, identity=identity())

    assert not User.objects.exists()


def test_deactivation_ends_an_sso_session(client):
    config = make_config()
    user = sso.user_provision_from_idp(config=config, identity=identity())
    client.force_login(user, backend="accounts.backends.EmailBackend")
    assert client.get(reverse("teams:team_list")).status_code == 200

    admin = factories.tenant_admin()
    services.user_set_active(actor=factories.principal(admin), user=user, active=False)

    response = client.get(reverse("teams:team_list"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:login"))


# --- groups and roles ------------------------------------------------------------------------


def memberships(user: User) -> set[str]:
    return set(
        TeamMembership.objects.filter(user=user, role="member").values_list("team__name", flat=True)
    )


def test_groups_keep_sso_backed_team_memberships_current():
    config = make_config()
    manual = factories.TeamFactory(name="finance")  # made by hand: never touched by SSO
    groups = ("ml-platform", "data", "finance", "x", "has space", "everyone")

    user = sso.user_provision_from_idp(config=config, identity=identity(groups=groups))

    assert memberships(user) == {"ml-platform", "data"}
    assert set(Team.objects.filter(source="sso-group").values_list("name", flat=True)) == {
        "ml-platform",
        "data",
    }
    assert not manual.memberships.exists()

    user = sso.user_provision_from_idp(config=config, identity=identity(groups=("data", "support")))

    assert memberships(user) == {"data", "support"}
    removed = AuditEvent.objects.filter(action="team.member_removed").values_list(
        "target", flat=True
    )
    assert list(removed) == ["ml-platform"]


def test_a_missing_groups_claim_leaves_memberships_alone_when_not_configured():
    config = make_config(groups_claim="")
    user = sso.user_provision_from_idp(config=config, identity=identity(groups=None))

    assert memberships(user) == set()
    assert not Team.objects.filter(source="sso-group").exists()


def test_role_mapping_makes_and_unmakes_tenant_admins_but_never_the_last_one():
    config = make_config(role_mapping={"tenant_admin": ["gw-admins"]})
    other_admin = factories.tenant_admin()

    user = sso.user_provision_from_idp(config=config, identity=identity(groups=("gw-admins",)))
    assert user.tenant_role_id == TENANT_ADMIN

    user = sso.user_provision_from_idp(config=config, identity=identity(groups=("data",)))
    assert user.tenant_role_id == MEMBER
    roles = AuditEvent.objects.filter(action="user.updated", target=user.email)
    assert [(e.after or {})["tenant_role"] for e in roles.order_by("id")] == [TENANT_ADMIN, MEMBER]

    # Now the SSO user is the only admin left: losing the group does not demote them.
    sso.user_provision_from_idp(config=config, identity=identity(groups=("gw-admins",)))
    other_admin.delete()
    user = sso.user_provision_from_idp(config=config, identity=identity(groups=()))
    assert User.objects.get(pk=user.pk).tenant_role_id == TENANT_ADMIN


# --- break-glass password sign-in -----------------------------------------------------------


def post_login(client, email: str):
    return client.post(
        reverse("accounts:login"), {"username": email, "password": factories.PASSWORD}
    )


def test_break_glass_limits_password_sign_in_to_tenant_admins(client):
    make_config(local_login="break_glass_admins")
    member = factories.UserFactory(email="mia@example.com")
    admin = factories.UserFactory(email="root@example.com", tenant_role_id=TENANT_ADMIN)

    refused = post_login(client, member.email)
    assert refused.status_code == 200
    assert "Password sign-in is limited to administrators" in refused.content.decode()
    assert "_auth_user_id" not in client.session

    allowed = post_login(client, admin.email)
    assert allowed.status_code == 302
    assert client.session["_auth_user_id"] == str(admin.pk)


def test_password_sign_in_is_open_when_sso_is_disabled(client):
    make_config(enabled=False, local_login="break_glass_admins")
    member = factories.UserFactory(email="mia@example.com")

    assert post_login(client, member.email).status_code == 302


def test_login_page_shows_the_sso_button_with_its_text(client):
    assert 'data-testid="sso-login"' not in client.get(reverse("accounts:login")).content.decode()
    make_config(button_text="Login with Okta")
    make_config(name="legacy", enabled=False, button_text="Old IdP")

    html = client.get(reverse("accounts:login") + "?next=/teams/").content.decode()

    assert html.count('data-testid="sso-login"') == 1
    assert "Login with Okta" in html
    assert "Old IdP" not in html
    assert 'action="/sso/oidc/corp/login/"' in html
    assert '<input type="hidden" name="next" value="/teams/">' in html


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("/teams/", "/teams/"),
        ("https://evil.example.com/", "/"),
        ("//evil.example.com/x", "/"),
        ("http://testserver/models/", "http://testserver/models/"),
        (None, "/"),
    ],
)
def test_no_open_redirect_after_sign_in(url, expected):
    request = RequestFactory().get("/")

    assert safe_next(request, url) == expected


def test_saml_assertion_ids_are_consumed_once():
    future = int(time.time()) + 300

    assert sso.saml_assertion_consume(issuer="idp", assertion_id="_a1", not_on_or_after=future)
    assert not sso.saml_assertion_consume(issuer="idp", assertion_id="_a1", not_on_or_after=future)
    assert sso.saml_assertion_consume(issuer="other", assertion_id="_a1", not_on_or_after=future)


def test_assertion_ids_are_kept_only_until_their_assertions_expire():
    now = int(time.time())
    assert sso.saml_assertion_consume(issuer="i", assertion_id="_old", not_on_or_after=now - 3600)
    assert sso.saml_assertion_consume(issuer="i", assertion_id="_new", not_on_or_after=now + 60)

    assert set(SamlAssertionSeen.objects.values_list("assertion_id", flat=True)) == {"_new"}


# --- settings -------------------------------------------------------------------------------


def admin_principal() -> Principal:
    return factories.principal(factories.tenant_admin())


def test_enabling_with_an_unreachable_issuer_is_refused_on_its_field_and_saves_nothing():
    spec = sso.SsoConfigSpec(
        name="corp",
        enabled=True,
        client_id="gateway",
        client_secret="s3cret-value",
        issuer="http://127.0.0.1:9/",
    )

    with pytest.raises(ValidationFailed) as caught:
        sso.sso_config_put(actor=admin_principal(), spec=spec)

    assert list(caught.value.fields) == ["issuer"]
    assert (
        "cannot reach http://127.0.0.1:9/.well-known/openid-configuration"
        in (caught.value.fields["issuer"][0])
    )
    assert not SsoConfig.objects.exists()

    spec.enabled = False
    config, created = sso.sso_config_put(actor=admin_principal(), spec=spec)
    assert created
    assert (config.enabled, config.client_secret) == (False, "s3cret-value")
    event = AuditEvent.objects.get(action="sso_config.created")
    assert "s3cret-value" not in json.dumps(event.after)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("idp_certificate", "-----BEGIN CERTIFICATE-----\nnot-base64\n-----END", "not a valid PEM"),
        ("idp_metadata_xml", "<not-metadata/>", "no IdP EntityDescriptor"),
        ("idp_metadata_xml", "<<<", "not valid SAML metadata"),
    ],
)
def test_bad_saml_certificate_or_metadata_is_shown_on_its_field(field, value, message):
    spec = sso.SsoConfigSpec(name="corp", protocol="saml", **{field: value})

    with pytest.raises(ValidationFailed) as caught:
        sso.sso_config_put(actor=admin_principal(), spec=spec)

    assert list(caught.value.fields) == [field]
    assert message in caught.value.fields[field][0]
    assert not SsoConfig.objects.exists()


def test_only_settings_managers_change_sso_settings():
    lister = factories.UserFactory()
    Role.objects.create(
        slug="settings-reader",
        display_name="Settings reader",
        resource_type="tenant",
        permissions=[Permission.SETTINGS_LIST.value],
    )
    lister.tenant_role_id = "settings-reader"
    lister.save()
    make_config(enabled=False)
    principal = factories.principal(lister)

    assert [c.name for c in sso.sso_config_list(principal)] == ["corp"]
    with pytest.raises(PolicyDenied):
        sso.sso_config_put(actor=principal, spec=sso.SsoConfigSpec(name="corp", button_text="x"))
    assert SsoConfig.objects.get().button_text == ""


def test_console_settings_page_permissions_and_errors_in_place(client):
    member = factories.UserFactory()
    client.force_login(member)
    assert client.get(reverse("sso:settings")).status_code == 403

    admin = factories.tenant_admin()
    client.force_login(admin)
    assert client.get(reverse("sso:settings")).status_code == 200
    data = {
        "name": "corp",
        "enabled": "on",
        "provider": "okta",
        "protocol": "oidc",
        "client_id": "gateway",
        "client_secret": "s3cret-value",
        "issuer": "http://127.0.0.1:9",
        "discover_endpoints": "on",
        "scopes": "openid email profile",
        "email_claim": "email",
        "unique_id_claim": "sub",
        "provisioning": "jit",
        "local_login": "everyone",
    }

    refused = client.post(reverse("sso:config_create"), data)

    assert refused.status_code == 400
    html = refused.content.decode()
    assert "Discovery failed: cannot reach" in html
    assert "Save it disabled to keep it." in html
    assert "s3cret-value" not in html
    assert not SsoConfig.objects.exists()

    del data["enabled"]
    saved = client.post(reverse("sso:config_create"), data)
    assert saved.status_code == 302
    page = client.get(reverse("sso:config_edit", args=["corp"])).content.decode()
    assert "http://testserver/sso/oidc/corp/login/callback/" in page
    assert "s3cret-value" not in page
    assert 'data-testid="secret-set"' in page


# --- manifests --------------------------------------------------------------------------------


def test_settings_sso_manifest_round_trips_with_a_secret_reference():
    actor = admin_principal()
    doc = {
        "type": "settings/sso",
        "name": "okta-sso",
        "provider": "okta",
        "auth_data": {
            "type": "oidc",
            "client_id": "gw",
            "client_secret": "very-secret",
            "issuer": "https://okta.example.com",
        },
        "button_text": "Login with Okta",
        "groups_claim": "groups",
        "role_mapping": {"tenant_admin": ["okta-ai-admins"]},
    }

    manifests.apply([Document(doc)], actor=actor)
    exported = manifests.kinds()["settings/sso"].current("okta-sso")

    assert exported is not None
    ref = exported["auth_data"]["client_secret"]
    assert ref.startswith("gw-secret://settings/sso/okta-sso/client_secret?v=")
    assert exported["role_mapping"] == {"tenant_admin": ["okta-ai-admins"]}
    results = manifests.apply([Document(exported)], actor=actor)
    assert [r.action for r in results] == ["unchanged"]
    assert SsoConfig.objects.get().client_secret == "very-secret"


def test_external_identity_provider_manifest_maps_users_and_virtual_accounts():
    actor = admin_principal()
    user = factories.UserFactory(email="bot-owner@example.com")
    team = factories.TeamFactory(name="billing")
    VirtualAccount.objects.create(name="billing-bot", owner_team=team, created_by="test")
    doc = {
        "type": "external-identity-provider",
        "name": "partner",
        "config": {"type": "jwt", "issuer": ISSUER, "audience": "gw", "jwks_uri": f"{ISSUER}/j"},
        "mappings": [
            {"key": "client_id", "values": ["svc-1"], "virtual_account": "billing-bot"},
            {"key": "email", "values": [user.email], "user": user.email},
        ],
    }

    manifests.apply([Document(doc)], actor=actor)

    mappings = ExternalIdentityMapping.objects.order_by("id")
    assert [(m.claim_key, m.virtual_account_id is not None, m.user_id) for m in mappings] == [
        ("client_id", True, None),
        ("email", False, user.pk),
    ]
    assert manifests.kinds()["external-identity-provider"].current("partner") == doc | {
        "enabled": True,
        "email_claim": "email",
        "unique_id_claim": "sub",
    }


# --- IdP-issued JWTs --------------------------------------------------------------------------


class _Jwks(BaseHTTPRequestHandler):
    body = b"{}"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(type(self).body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def jwks_url(rsa_key) -> Iterator[str]:
    """A JWKS with the key `k1` served on loopback."""
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key()))
    handler = type(
        "Jwks", (_Jwks,), {"body": json.dumps({"keys": [public | {"kid": "k1"}]}).encode()}
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    sso.cache_clear()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks"
    server.shutdown()
    server.server_close()
    sso.cache_clear()


@pytest.fixture
def idp(jwks_url) -> ExternalIdentityProvider:
    return ExternalIdentityProvider.objects.create(
        name="partner", issuer=ISSUER, audience="gateway-api", jwks_uri=jwks_url
    )


def token(key: Any, *, kid: str = "k1", alg: str = "RS256", **claims: Any) -> str:
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": "gateway-api", "sub": "svc-1", "iat": now, "exp": now + 300}
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


def test_idp_jwt_maps_to_a_user_and_carries_its_expiry(idp, rsa_key):
    user = factories.UserFactory(email="svc-owner@example.com")
    ExternalIdentityMapping.objects.create(
        provider=idp, claim_key="sub", values=["svc-1"], user=user
    )
    raw = token(rsa_key)

    grant = sso.idp_jwt_authenticate(raw)

    assert grant is not None
    assert (grant.principal.kind, grant.principal.id, grant.provider) == (
        "user",
        user.pk,
        "partner",
    )
    assert (
        grant.expires_at.timestamp() == jwt.decode(raw, options={"verify_signature": False})["exp"]
    )


def test_idp_jwt_maps_to_a_virtual_account_by_a_list_claim(idp, rsa_key):
    team = factories.TeamFactory(name="billing")
    account = VirtualAccount.objects.create(name="billing-bot", owner_team=team, created_by="t")
    ExternalIdentityMapping.objects.create(
        provider=idp, claim_key="roles", values=["billing"], virtual_account=account
    )

    principal = sso.principal_for_idp_jwt(token(rsa_key, roles=["reader", "billing"]))

    assert principal is not None
    assert (principal.kind, principal.subject) == ("virtual_account", "virtualaccount:billing-bot")


def test_idp_jwt_falls_back_to_the_sso_identity_never_to_email(idp, rsa_key):
    user = factories.UserFactory(email="ada@example.com")
    factories.UserFactory(email="eve@example.com")

    assert sso.principal_for_idp_jwt(token(rsa_key, email="eve@example.com")) is None

    ExternalIdentity.objects.create(user=user, issuer=ISSUER, subject="svc-1")
    principal = sso.principal_for_idp_jwt(token(rsa_key, email="eve@example.com"))
    assert principal is not None
    assert principal.id == user.pk


@pytest.mark.parametrize(
    ("case", "make"),
    [
        ("wrong issuer", lambda key: token(key, iss="https://evil.example.com")),
        ("wrong audience", lambda key: token(key, aud="another-api")),
        ("expired", lambda key: token(key, exp=int(time.time()) - 3600)),
        ("not yet valid", lambda key: token(key, nbf=int(time.time()) + 3600)),
        ("no expiry", lambda key: token(key, exp=None)),
        (
            "bad signature",
            lambda key: token(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        ),
        ("unknown kid", lambda key: token(key, kid="k2")),
        ("shared-secret algorithm", lambda key: token("x" * 32, alg="HS256")),
        ("alg none", lambda key: token(None, alg="none")),
        ("tampered payload", lambda key: _tamper(token(key))),
        ("not a jwt", lambda key: "gw_pat_abc"),
    ],
)
def test_idp_jwt_validation_refuses(case, make, idp, rsa_key):
    user = factories.UserFactory()
    ExternalIdentityMapping.objects.create(
        provider=idp, claim_key="sub", values=["svc-1"], user=user
    )
    assert sso.principal_for_idp_jwt(token(rsa_key)) is not None  # the valid baseline

    assert sso.idp_jwt_authenticate(make(rsa_key)) is None


def _tamper(raw: str) -> str:
    header, payload, signature = raw.split(".")
    claims = json.loads(jwt.utils.base64url_decode(payload))
    claims["sub"] = "someone-else"
    forged = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
    return f"{header}.{forged}.{signature}"


def test_idp_jwt_for_a_deactivated_user_or_a_disabled_provider_gets_nothing(idp, rsa_key):
    user = factories.UserFactory()
    ExternalIdentityMapping.objects.create(
        provider=idp, claim_key="sub", values=["svc-1"], user=user
    )
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert sso.principal_for_idp_jwt(token(rsa_key)) is None

    User.objects.filter(pk=user.pk).update(is_active=True)
    ExternalIdentityProvider.objects.filter(pk=idp.pk).update(enabled=False)
    assert sso.principal_for_idp_jwt(token(rsa_key)) is None


# --- OpenID Connect protocol details ------------------------------------------------------------


def explicit_config(jwks_uri: str = "https://idp.example.com/jwks", **overrides: Any) -> SsoConfig:
    """Endpoints given explicitly: no discovery, so no IdP needs to run."""
    return make_config(
        discover_endpoints=False,
        authorization_endpoint=f"{ISSUER}/authorize",
        token_endpoint=f"{ISSUER}/token",
        jwks_uri=jwks_uri,
        **overrides,
    )


def test_oidc_sign_in_sends_state_nonce_and_pkce_and_follows_settings_at_once(client):
    from urllib.parse import parse_qs, urlsplit

    login_url = reverse("openid_connect_login", kwargs={"provider_id": "corp"})
    assert client.post(login_url).status_code == 404  # nothing configured

    config = explicit_config()
    response = client.post(login_url, {"process": "login", "next": "/tokens/"})

    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{ISSUER}/authorize"
    params = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert params["client_id"] == "gateway"
    assert params["redirect_uri"] == "http://testserver/sso/oidc/corp/login/callback/"
    assert params["nonce"] == sso.oidc_nonce(params["state"])
    assert params["code_challenge_method"] == "S256"
    assert len(params["code_challenge"]) == 43
    assert set(params["scope"].split()) == {"openid", "email", "profile"}

    SsoConfig.objects.filter(pk=config.pk).update(enabled=False)
    assert client.post(login_url).status_code == 404


@pytest.mark.parametrize(
    ("case", "nonce", "signer", "accepted"),
    [
        ("matching nonce", "right", "idp", True),
        ("another state's nonce", "other", "idp", False),
        ("no nonce", None, "idp", False),
        ("signed by someone else", "right", "mallory", False),
    ],
)
def test_oidc_id_tokens_are_verified_with_their_nonce(
    case, nonce, signer, accepted, jwks_url, rsa_key
):
    from allauth.socialaccount.models import SocialToken
    from allauth.socialaccount.providers.oauth2.client import OAuth2Error

    from accounts.sso_adapters import GatewayOIDCAdapter

    explicit_config(jwks_uri=jwks_url)
    request = RequestFactory().get("/sso/oidc/corp/login/callback/", {"state": "state-1"})
    adapter = GatewayOIDCAdapter(request, "corp")
    app = adapter.get_provider().app
    key = rsa_key if signer == "idp" else rsa.generate_private_key(65537, 2048)
    values = {"right": sso.oidc_nonce("state-1"), "other": sso.oidc_nonce("state-2"), None: None}
    id_token = token(key, aud="gateway", sub="u-7", email="u7@example.com", nonce=values[nonce])

    def complete() -> Any:
        return adapter.complete_login(
            request, app, SocialToken(token="at"), response={"id_token": id_token}
        )

    if accepted:
        login = complete()
        assert login.account.uid == "u-7"
        assert login.account.extra_data["id_token"]["iss"] == ISSUER
    else:
        with pytest.raises(OAuth2Error):
            complete()


def test_idp_jwt_authenticates_the_api_and_the_proxy_token_check(idp, rsa_key, api_client):
    from proxy.auth import grant_for_token

    user = factories.UserFactory(email="svc-owner@example.com")
    ExternalIdentityMapping.objects.create(
        provider=idp, claim_key="sub", values=["svc-1"], user=user
    )
    raw = token(rsa_key)
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api_client.get("/api/v1/me").json()["email"] == "svc-owner@example.com"
    grant = grant_for_token(raw)
    assert grant is not None
    assert (grant.token_kind, grant.principal.subject) == ("jwt", "user:svc-owner@example.com")

    forged = token(rsa_key, aud="someone-else")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {forged}")
    assert api_client.get("/api/v1/me").status_code == 401
    assert grant_for_token(forged) is None
