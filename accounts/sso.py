"""Single sign-on: services and selectors for IdP settings, SSO users and IdP-issued JWTs.

How configuration reaches django-allauth: `SsoConfig` rows are the only source of truth.
accounts.sso_adapters' `list_apps` builds allauth's (unsaved) `SocialApp` objects from the
enabled rows on every request, through `allauth_app()` below, instead of keeping `SocialApp`
rows in sync. A saved change therefore applies at the next request in every process, with no
restart, no signal and no second copy that could drift; and the client secret stays in one
encrypted column. Discovery documents, JWKS and SAML metadata fetched from IdPs are cached per
process for `GATEWAY_SSO_METADATA_CACHE_SECONDS`, keyed by URL, so a changed URL is fetched at
once.

Who an SSO user is: the IdP's (issuer, subject) pair in `ExternalIdentity`, never the email
alone. A first sign-in may link to an existing user with the same email only when (1) that user
has no identity from this issuer yet and (2) the email is trusted: an OpenID Provider must
assert `email_verified: true`; a SAML assertion's email is trusted because the assertion is
signed by the organisation's IdP and SAML carries no verification flag. Otherwise the sign-in
is refused (an admin can resolve it), never silently merged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
from cryptography import x509
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts import services
from accounts.audit import audit_record
from accounts.models import (
    MEMBER,
    TENANT_ADMIN,
    ExternalIdentity,
    ExternalIdentityMapping,
    ExternalIdentityProvider,
    SamlAssertionSeen,
    SsoConfig,
    User,
    VirtualAccount,
)
from accounts.policy import (
    Permission,
    PolicyDenied,
    Principal,
    can_administer_admins,
    holds_any,
    require,
    require_any,
)
from accounts.sso_models import SSO_NAME_PATTERN
from gateway_project.errors import Conflict, GatewayError, ObjectNotFound, ValidationFailed
from teams import services as team_services
from teams.models import EVERYONE, TEAM_NAME_PATTERN, Team, TeamMembership

logger = logging.getLogger(__name__)

DEFAULT_BUTTON_TEXT = "Login with SSO"
# Names allauth already uses as provider ids: an IdP named like them would be ambiguous.
RESERVED_NAMES = frozenset({"saml", "openid-connect", "new"})
ROLE_MAPPING_KEYS = frozenset({"tenant_admin"})
JWT_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
JWT_LEEWAY_SECONDS = 30
JWKS_MIN_REFRESH_SECONDS = 10.0  # an unknown `kid` refetches the JWKS at most this often


def _system() -> Principal:
    return Principal.system()


# --- fetching IdP documents ---------------------------------------------------------------


class IdpUnreachable(GatewayError):
    """An IdP URL could not be fetched or did not hold what it should."""


@dataclass
class _Cached:
    value: Any
    fetched_at: float


_cache: dict[str, _Cached] = {}
_cache_lock = threading.Lock()


def _timeout() -> httpx.Timeout:
    seconds = float(settings.SOCIALACCOUNT_REQUESTS_TIMEOUT)
    return httpx.Timeout(seconds, connect=min(seconds, 5.0))


def _fetch(url: str, *, kind: str, max_age: float | None = None) -> Any:
    """GET `url` (JSON for kind "json", else text), cached per process; IdpUnreachable."""
    max_age = float(settings.GATEWAY_SSO_METADATA_CACHE_SECONDS) if max_age is None else max_age
    key = f"{kind}:{url}"
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None and time.monotonic() - hit.fetched_at < max_age:
        return hit.value
    try:
        with httpx.Client(timeout=_timeout(), follow_redirects=False, trust_env=False) as client:
            response = client.get(url, headers={"Accept": "application/json, application/xml"})
    except httpx.HTTPError as exc:
        raise IdpUnreachable(f"cannot reach {url}: {exc.__class__.__name__}: {exc}") from exc
    if response.status_code != 200:
        raise IdpUnreachable(f"{url} answered HTTP {response.status_code}")
    if kind == "json":
        try:
            value: Any = response.json()
        except ValueError as exc:
            raise IdpUnreachable(f"{url} did not return JSON") from exc
        if not isinstance(value, dict):
            raise IdpUnreachable(f"{url} did not return a JSON object")
    else:
        value = response.text
    with _cache_lock:
        _cache[key] = _Cached(value, time.monotonic())
    return value


def cache_clear() -> None:
    """Forget every fetched IdP document (tests, and the console's "Test" button)."""
    with _cache_lock:
        _cache.clear()


# --- JWT validation ------------------------------------------------------------------------


class JwtInvalid(Exception):
    """A JWT failed validation; the message says why (logs only, never to the caller)."""


def _jwks(jwks_uri: str, *, refresh: bool = False) -> dict[str, Any]:
    if refresh:
        with _cache_lock:
            hit = _cache.get(f"json:{jwks_uri}")
        if hit is None or time.monotonic() - hit.fetched_at >= JWKS_MIN_REFRESH_SECONDS:
            return dict(_fetch(jwks_uri, kind="json", max_age=0))
    return dict(_fetch(jwks_uri, kind="json"))


def _key_for(jwks_uri: str, kid: str | None, alg: str) -> Any:
    """The verification key for (`kid`, `alg`); the JWKS is refetched once for a new kid."""
    for refresh in (False, True):
        try:
            keys = [
                k for k in _jwks(jwks_uri, refresh=refresh).get("keys", []) if isinstance(k, dict)
            ]
        except IdpUnreachable as exc:
            raise JwtInvalid(f"JWKS unavailable: {exc.message}") from exc
        signing = [k for k in keys if k.get("use", "sig") == "sig"]
        if kid is None:
            found = signing if len(signing) == 1 else []
        else:
            found = [k for k in signing if k.get("kid") == kid]
        if found:
            jwk = found[0]
            if jwk.get("alg") not in (None, alg):
                raise JwtInvalid(f"key {kid} is for {jwk.get('alg')}, token says {alg}")
            try:
                return jwt.PyJWK(jwk, algorithm=alg).key
            except jwt.PyJWTError as exc:
                raise JwtInvalid(f"key {kid} does not fit {alg}: {exc}") from exc
    raise JwtInvalid(f"unknown key id {kid!r}")


def jwt_verify(
    raw: str, *, jwks_uri: str, issuer: str, audience: str | Sequence[str]
) -> dict[str, Any]:
    """Claims of a JWT whose signature (JWKS), `iss`, `aud`, `exp` and `nbf` all check out.

    Only asymmetric algorithms are accepted: a shared-secret (HS*) or `none` token is refused
    whatever its header says (RFC 8725 §3.1).
    """
    try:
        header = jwt.get_unverified_header(raw)
    except jwt.PyJWTError as exc:
        raise JwtInvalid(f"malformed token: {exc}") from exc
    alg = header.get("alg")
    if alg not in JWT_ALGORITHMS:
        raise JwtInvalid(f"algorithm {alg!r} is not accepted")
    key = _key_for(jwks_uri, header.get("kid"), str(alg))
    try:
        claims: dict[str, Any] = jwt.decode(
            raw,
            key=key,
            algorithms=[str(alg)],
            audience=audience,
            issuer=issuer,
            leeway=JWT_LEEWAY_SECONDS,
            options={"require": ["exp", "iss", "aud"], "verify_nbf": True},
        )
    except jwt.PyJWTError as exc:
        raise JwtInvalid(f"{exc.__class__.__name__}: {exc}") from exc
    return claims


# --- OpenID Connect and SAML settings ------------------------------------------------------


def oidc_metadata(config: SsoConfig) -> dict[str, Any]:
    """The provider's endpoints: its discovery document, or the explicit endpoints.

    The discovered `issuer` must equal the configured one (OpenID Connect Discovery 1.0 §4.3).
    """
    if not config.discover_endpoints:
        return {
            "issuer": config.issuer,
            "authorization_endpoint": config.authorization_endpoint,
            "token_endpoint": config.token_endpoint,
            "userinfo_endpoint": config.userinfo_endpoint,
            "jwks_uri": config.jwks_uri,
        }
    url = config.issuer.rstrip("/") + "/.well-known/openid-configuration"
    document = dict(_fetch(url, kind="json"))
    if document.get("issuer") != config.issuer:
        raise IdpUnreachable(
            f"the discovery document's issuer is {document.get('issuer')!r}, "
            f"not the configured {config.issuer!r}"
        )
    for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        if not document.get(key):
            raise IdpUnreachable(f"the discovery document has no {key}")
    return document


def _pem_body(pem: str) -> str:
    return re.sub(r"-----[A-Z ]+-----|\s", "", pem or "")


def certificate_parse(pem: str) -> x509.Certificate:
    """An X.509 certificate from PEM (or its bare base64 body); ValueError when it is not."""
    body = _pem_body(pem)
    if not body:
        raise ValueError("empty certificate")
    text = "-----BEGIN CERTIFICATE-----\n" + body + "\n-----END CERTIFICATE-----\n"
    return x509.load_pem_x509_certificate(text.encode())


@dataclass(frozen=True)
class SamlIdp:
    """What the SP needs from the IdP: its entity ID, sign-in URL and signing certificate."""

    entity_id: str
    sso_url: str
    certificate: str  # base64 body


def _saml_metadata_parse(xml: str, entity_id: str = "") -> SamlIdp:
    from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser

    try:
        parsed = OneLogin_Saml2_IdPMetadataParser.parse(xml, entity_id=entity_id or None)
    except Exception as exc:  # lxml and the parser raise many kinds
        raise ValueError(f"not valid SAML metadata: {exc}") from exc
    idp = parsed.get("idp") or {}
    cert = idp.get("x509cert") or next(
        iter((idp.get("x509certMulti") or {}).get("signing") or []), ""
    )
    if not idp.get("entityId"):
        raise ValueError("the metadata has no IdP EntityDescriptor (IDPSSODescriptor)")
    sso_url = (idp.get("singleSignOnService") or {}).get("url", "")
    if not sso_url:
        raise ValueError("the metadata has no SingleSignOnService URL")
    if not cert:
        raise ValueError("the metadata has no signing certificate")
    return SamlIdp(str(idp["entityId"]), str(sso_url), _pem_body(str(cert)))


def saml_idp(config: SsoConfig) -> SamlIdp:
    """The IdP of a SAML config: from its metadata XML, its metadata URL, or explicit fields."""
    if config.idp_metadata_xml.strip():
        return _saml_metadata_parse(config.idp_metadata_xml, config.idp_entity_id)
    if config.idp_metadata_url:
        xml = str(_fetch(config.idp_metadata_url, kind="text"))
        return _saml_metadata_parse(xml, config.idp_entity_id)
    return SamlIdp(config.idp_entity_id, config.idp_sso_url, _pem_body(config.idp_certificate))


def _claim_list(claim: str) -> list[str]:
    return [c for c in (claim or "").split(",") if c.strip()]


def allauth_app(config: SsoConfig) -> Any:
    """The allauth `SocialApp` (never saved) that serves `config`; see the module docstring."""
    from allauth.socialaccount.models import SocialApp

    if config.protocol == SsoConfig.Protocol.OIDC:
        return SocialApp(
            provider="openid_connect",
            provider_id=config.name,
            name=config.label,
            client_id=config.client_id,
            secret=config.client_secret,
            settings={
                "server_url": config.issuer,
                "uid_field": config.unique_id_claim or "sub",
                "oauth_pkce_enabled": True,
                "fetch_userinfo": bool(config.userinfo_endpoint) or config.discover_endpoints,
                "scope": config.scopes.split() or ["openid"],
                "gateway_config": config.name,
            },
        )
    idp = saml_idp(config)
    uid = config.unique_id_claim
    mapping: dict[str, list[str]] = {
        "email": [
            *_claim_list(config.email_claim),
            "urn:oid:0.9.2342.19200300.100.1.3",
            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
        ],
    }
    if uid and uid.lower() not in {"sub", "nameid"}:
        mapping["uid"] = [uid]
    return SocialApp(
        provider="saml",
        provider_id=config.name,
        name=config.label,
        client_id=config.name,  # allauth's "organization slug" in the SAML URLs
        settings={
            "idp": {
                "entity_id": idp.entity_id,
                "sso_url": idp.sso_url,
                "x509cert": idp.certificate,
            },
            "sp": {"entity_id": config.sp_entity_id} if config.sp_entity_id else {},
            "attribute_mapping": mapping,
            "advanced": {
                "strict": True,  # destination, audience, recipient, validity window, issuer
                "reject_idp_initiated_sso": True,  # only answers to our own requests
                "want_name_id": "uid" not in mapping,
                "want_attribute_statement": False,
                "reject_deprecated_algorithm": True,
                "allow_single_label_domains": True,  # internal hosts such as http://gateway/
            },
            "gateway_config": config.name,
        },
    )


@dataclass(frozen=True)
class SpInfo:
    """What an admin registers at the IdP: URLs, the SP entity ID and SAML SP metadata."""

    callback_url: str = ""
    acs_url: str = ""
    entity_id: str = ""
    metadata_url: str = ""
    metadata_xml: str = ""
    login_url: str = ""


def sp_info(config: SsoConfig, absolute: Any) -> SpInfo:
    """The service-provider side of `config`; `absolute(path)` makes a URL absolute."""
    from django.urls import reverse

    if config.protocol == SsoConfig.Protocol.OIDC:
        return SpInfo(
            callback_url=absolute(
                reverse("openid_connect_callback", kwargs={"provider_id": config.name})
            ),
            login_url=absolute(
                reverse("openid_connect_login", kwargs={"provider_id": config.name})
            ),
        )
    from onelogin.saml2.settings import OneLogin_Saml2_Settings

    acs = absolute(reverse("saml_acs", args=[config.name]))
    metadata_url = absolute(reverse("saml_metadata", args=[config.name]))
    entity_id = config.sp_entity_id or metadata_url
    sp = {
        "entityId": entity_id,
        "assertionConsumerService": {
            "url": acs,
            "binding": "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST",
        },
    }
    try:
        xml = OneLogin_Saml2_Settings(
            {"strict": True, "sp": sp, "security": {"wantAssertionsSigned": False}},
            sp_validation_only=True,
        ).get_sp_metadata()
        metadata_xml = xml.decode() if isinstance(xml, bytes) else str(xml)
    except Exception as exc:  # noqa: BLE001 - shown to the admin instead of the XML
        metadata_xml = f"(SP metadata unavailable: {exc})"
    return SpInfo(
        acs_url=acs,
        entity_id=entity_id,
        metadata_url=metadata_url,
        metadata_xml=metadata_xml,
        login_url=absolute(reverse("saml_login", args=[config.name])),
    )


# --- settings: services --------------------------------------------------------------------


@dataclass
class SsoConfigSpec:
    """Everything an admin sets on an SSO configuration; `client_secret=None` keeps it."""

    name: str
    enabled: bool = False
    provider: str = SsoConfig.Provider.CUSTOM
    protocol: str = SsoConfig.Protocol.OIDC
    client_id: str = ""
    client_secret: str | None = None
    issuer: str = ""
    discover_endpoints: bool = True
    authorization_endpoint: str = ""
    token_endpoint: str = ""
    userinfo_endpoint: str = ""
    jwks_uri: str = ""
    scopes: str = "openid email profile"
    idp_metadata_url: str = ""
    idp_metadata_xml: str = ""
    idp_entity_id: str = ""
    idp_sso_url: str = ""
    idp_certificate: str = ""
    sp_entity_id: str = ""
    enable_scim: bool = False
    button_text: str = ""
    button_image_url: str = ""
    email_claim: str = "email"
    unique_id_claim: str = "sub"
    groups_claim: str = ""
    role_mapping: dict[str, list[str]] = field(default_factory=dict)
    provisioning: str = SsoConfig.Provisioning.JIT
    local_login: str = SsoConfig.LocalLogin.EVERYONE


SPEC_FIELDS = [f for f in SsoConfigSpec.__dataclass_fields__ if f not in {"name", "client_secret"}]


def sso_config_snapshot(config: SsoConfig) -> dict[str, Any]:
    """The audited fields (the client secret only as masked presence)."""
    out: dict[str, Any] = {"name": config.name}
    for name in SPEC_FIELDS:
        out[name] = getattr(config, name)
    if config.client_secret:
        out["client_secret"] = "set"  # noqa: S105 - a marker, masked by the audit log anyway
    return out


_URL_FIELDS = (
    "issuer",
    "authorization_endpoint",
    "token_endpoint",
    "userinfo_endpoint",
    "jwks_uri",
    "idp_metadata_url",
    "idp_sso_url",
    "button_image_url",
)


def _validate(spec: SsoConfigSpec, existing: SsoConfig | None) -> dict[str, list[str]]:
    """Field errors of the spec's own shape (no network); empty when it is well formed."""
    errors: dict[str, list[str]] = {}

    def err(name: str, message: str) -> None:
        errors.setdefault(name, []).append(message)

    if not re.fullmatch(SSO_NAME_PATTERN, spec.name or "") or spec.name in RESERVED_NAMES:
        err("name", "3-64 lower-case letters, digits and '-', starting with a letter")
    if spec.provider not in SsoConfig.Provider.values:
        err("provider", f"must be one of {', '.join(SsoConfig.Provider.values)}")
    if spec.protocol not in SsoConfig.Protocol.values:
        err("protocol", "must be oidc or saml")
    if spec.provisioning not in SsoConfig.Provisioning.values:
        err("provisioning", f"must be one of {', '.join(SsoConfig.Provisioning.values)}")
    if spec.local_login not in SsoConfig.LocalLogin.values:
        err("local_login", f"must be one of {', '.join(SsoConfig.LocalLogin.values)}")
    for name in _URL_FIELDS:
        value = getattr(spec, name)
        if value and not re.match(r"^https?://[^\s/]+", value):
            err(name, "must be an http(s) URL")
    if not isinstance(spec.role_mapping, dict) or not set(spec.role_mapping) <= ROLE_MAPPING_KEYS:
        err("role_mapping", "only 'tenant_admin: [group, ...]' is supported")
    elif not all(
        isinstance(v, list) and all(isinstance(g, str) and g for g in v)
        for v in spec.role_mapping.values()
    ):
        err("role_mapping", "each role maps to a list of group names")
    for name in ("email_claim", "unique_id_claim"):
        if not getattr(spec, name).strip():
            err(name, "required")
    if spec.enable_scim and spec.protocol != SsoConfig.Protocol.SAML:
        err("enable_scim", "SCIM is offered with SAML configurations only")
    has_secret = bool(spec.client_secret) or (
        spec.client_secret is None and existing is not None and bool(existing.client_secret)
    )
    if spec.protocol == SsoConfig.Protocol.OIDC:
        if spec.enabled and not spec.client_id:
            err("client_id", "required to enable an OpenID Connect configuration")
        if spec.enabled and not has_secret:
            err("client_secret", "required to enable an OpenID Connect configuration")
        if spec.enabled and not spec.issuer:
            err("issuer", "required")
        if spec.enabled and not spec.discover_endpoints:
            for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not getattr(spec, name):
                    err(name, "required when endpoints are not discovered")
        if "openid" not in spec.scopes.split():
            err("scopes", "must include 'openid'")
    elif spec.protocol == SsoConfig.Protocol.SAML:
        if spec.idp_certificate.strip():
            try:
                certificate_parse(spec.idp_certificate)
            except ValueError as exc:
                err("idp_certificate", f"not a valid PEM certificate ({exc})")
        if spec.idp_metadata_xml.strip():
            try:
                _saml_metadata_parse(spec.idp_metadata_xml, spec.idp_entity_id)
            except ValueError as exc:
                err("idp_metadata_xml", str(exc))
        manual = spec.idp_sso_url and spec.idp_certificate.strip() and spec.idp_entity_id
        if spec.enabled and not (spec.idp_metadata_xml.strip() or spec.idp_metadata_url or manual):
            err(
                "idp_metadata_url",
                "give the IdP metadata URL or XML, or its entity ID, SSO URL and certificate",
            )
    return errors


@dataclass(frozen=True)
class CheckResult:
    """The outcome of testing a configuration against its IdP."""

    ok: bool
    lines: list[str]
    field: str = ""  # the form field an error belongs to

    @property
    def message(self) -> str:
        return "\n".join(self.lines)


def sso_config_check(config: SsoConfig) -> CheckResult:
    """Reach the IdP as sign-in would, and say clearly what works and what does not."""
    lines: list[str] = []
    if config.protocol == SsoConfig.Protocol.OIDC:
        where = "issuer" if config.discover_endpoints else "authorization_endpoint"
        try:
            metadata = oidc_metadata(config)
        except IdpUnreachable as exc:
            return CheckResult(False, [f"Discovery failed: {exc.message}"], where)
        if config.discover_endpoints:
            lines.append(f"Discovery document found; issuer {config.issuer} matches.")
        try:
            keys = list(_jwks(str(metadata["jwks_uri"]), refresh=True).get("keys", []))
        except IdpUnreachable as exc:
            return CheckResult(False, [*lines, f"JWKS failed: {exc.message}"], "jwks_uri")
        usable = [k for k in keys if isinstance(k, dict) and k.get("use", "sig") == "sig"]
        if not usable:
            return CheckResult(False, [*lines, "The JWKS holds no signing key."], "jwks_uri")
        algs = sorted({str(k.get("alg") or k.get("kty")) for k in usable})
        lines.append(f"JWKS: {len(usable)} signing key(s) ({', '.join(algs)}).")
        return CheckResult(True, lines)
    try:
        idp = saml_idp(config)
    except IdpUnreachable as exc:
        return CheckResult(False, [f"IdP metadata failed: {exc.message}"], "idp_metadata_url")
    except ValueError as exc:
        where = "idp_metadata_xml" if config.idp_metadata_xml.strip() else "idp_metadata_url"
        return CheckResult(False, [f"IdP metadata is invalid: {exc}"], where)
    if not idp.entity_id:
        return CheckResult(False, ["The IdP entity ID is missing."], "idp_entity_id")
    if not idp.sso_url:
        return CheckResult(False, ["The IdP SSO URL is missing."], "idp_sso_url")
    try:
        cert = certificate_parse(idp.certificate)
    except ValueError as exc:
        return CheckResult(False, [f"The IdP certificate is invalid: {exc}"], "idp_certificate")
    lines.append(f"IdP {idp.entity_id}, sign-in at {idp.sso_url}.")
    expires = cert.not_valid_after_utc
    lines.append(
        f"Signing certificate {cert.subject.rfc4514_string()}, valid until {expires:%Y-%m-%d}."
    )
    if expires <= timezone.now():
        return CheckResult(
            False, [*lines, "The signing certificate has expired."], "idp_certificate"
        )
    return CheckResult(True, lines)


def _apply_spec(config: SsoConfig, spec: SsoConfigSpec) -> None:
    for name in SPEC_FIELDS:
        value = getattr(spec, name)
        setattr(
            config,
            name,
            value.strip() if isinstance(value, str) and name != "idp_metadata_xml" else value,
        )
    if spec.client_secret is not None and spec.client_secret != "":
        config.client_secret = spec.client_secret


@transaction.atomic
def sso_config_put(
    *, actor: Principal, spec: SsoConfigSpec, created_via: str = "console"
) -> tuple[SsoConfig, bool]:
    """Create or update an SSO configuration. Returns (config, created).

    Enabling checks the IdP first (discovery and JWKS, or SAML metadata and certificate): a
    configuration that cannot work is refused with the reason on its field, so it can only be
    saved disabled, and password sign-in for admins never depends on it.
    """
    require(actor, Permission.SETTINGS_MANAGE)
    existing = SsoConfig.objects.select_for_update().filter(name=spec.name).first()
    errors = _validate(spec, existing)
    if errors:
        raise ValidationFailed("the SSO settings are not valid", errors)
    config = existing or SsoConfig(name=spec.name, created_via=created_via)
    before = sso_config_snapshot(existing) if existing is not None else None
    secret_before = existing.client_secret if existing is not None else ""
    _apply_spec(config, spec)
    if config.enabled:
        result = sso_config_check(config)
        if not result.ok:
            raise ValidationFailed(
                f"cannot enable: {result.message}",
                {result.field or "enabled": [result.message + " Save it disabled to keep it."]},
            )
    config.save()
    after = sso_config_snapshot(config)
    if before is None:
        audit_record(actor=actor, action="sso_config.created", target=config, after=after)
    elif before != after or secret_before != config.client_secret:
        audit_record(
            actor=actor, action="sso_config.updated", target=config, before=before, after=after
        )
    return config, existing is None


@transaction.atomic
def sso_config_delete(*, actor: Principal, config: SsoConfig) -> None:
    """Remove a configuration; its users keep their accounts and can be given passwords."""
    require(actor, Permission.SETTINGS_MANAGE)
    audit_record(
        actor=actor, action="sso_config.deleted", target=config, before=sso_config_snapshot(config)
    )
    config.delete()


def sso_config_test(*, actor: Principal, config: SsoConfig) -> CheckResult:
    """Check `config` against its IdP now (fresh fetches) and remember the outcome."""
    require_any(actor, Permission.SETTINGS_MANAGE)
    cache_clear()
    result = sso_config_check(config)
    SsoConfig.objects.filter(pk=config.pk).update(
        last_test_ok=result.ok, last_test_message=result.message, last_tested_at=timezone.now()
    )
    config.refresh_from_db()
    return result


# --- settings: selectors -------------------------------------------------------------------


def sso_config_list(principal: Principal) -> QuerySet[SsoConfig]:
    """SSO configurations, for holders of settings:ListSettings or ManageSettings."""
    require_any(principal, Permission.SETTINGS_LIST, Permission.SETTINGS_MANAGE)
    return SsoConfig.objects.order_by("name")


def sso_config_get_for(principal: Principal, name: str) -> SsoConfig:
    """One configuration; 404 when missing or when the principal may not read settings."""
    if not holds_any(principal, Permission.SETTINGS_LIST, Permission.SETTINGS_MANAGE):
        raise ObjectNotFound("SSO configuration not found")
    config = SsoConfig.objects.filter(name=name).first()
    if config is None:
        raise ObjectNotFound("SSO configuration not found")
    return config


def sso_login_options() -> list[SsoConfig]:
    """Enabled configurations, in name order: the login page shows one button each."""
    return list(SsoConfig.objects.filter(enabled=True).order_by("name"))


def sso_config_enabled(name: str) -> SsoConfig | None:
    """The enabled configuration called `name`, or None."""
    return SsoConfig.objects.filter(name=name, enabled=True).first()


def local_login_restricted() -> bool:
    """True when an enabled configuration limits password sign-in to break-glass admins."""
    return SsoConfig.objects.filter(
        enabled=True, local_login=SsoConfig.LocalLogin.BREAK_GLASS
    ).exists()


def password_login_allowed(user: User) -> bool:
    """Whether `user` may sign in with a password now: always for tenant admins.

    Tenant admins keep password sign-in whatever the SSO settings, so a broken IdP can never
    lock the tenant out.
    """
    if not local_login_restricted():
        return True
    from accounts.selectors import principal_for_user

    return user.is_tenant_admin or principal_for_user(user).is_tenant_admin


# --- SSO sign-in: provisioning -------------------------------------------------------------


class SsoLoginRefused(GatewayError):
    """The IdP vouched for someone this gateway will not sign in; `message` says why."""

    status = 403


@dataclass(frozen=True)
class IdpIdentity:
    """What the IdP asserted about the person signing in."""

    issuer: str
    subject: str
    email: str = ""
    email_verified: bool = False
    display_name: str = ""
    groups: tuple[str, ...] | None = None  # None: the config reads no groups


def claims_identity(config: SsoConfig, claims: Mapping[str, Any], issuer: str) -> IdpIdentity:
    """The identity in OpenID Connect claims (ID token merged with userinfo)."""
    subject = claims.get(config.unique_id_claim or "sub")
    email = claims.get(config.email_claim or "email")
    verified = claims.get("email_verified")
    groups: tuple[str, ...] | None = None
    if config.groups_claim:
        groups = _as_strings(claims.get(config.groups_claim))
    return IdpIdentity(
        issuer=issuer,
        subject=str(subject) if subject not in (None, "") else "",
        email=str(email or ""),
        email_verified=verified is True or str(verified).lower() == "true",
        display_name=str(claims.get("name") or ""),
        groups=groups,
    )


def saml_identity(
    config: SsoConfig, attributes: Mapping[str, Sequence[str]], nameid: str, issuer: str
) -> IdpIdentity:
    """The identity in a validated SAML assertion: NameID (or the configured attribute)."""

    def first(names: Iterable[str]) -> str:
        for name in names:
            values = attributes.get(name) or []
            if values:
                return str(values[0])
        return ""

    uid = config.unique_id_claim
    subject = nameid if not uid or uid.lower() in {"sub", "nameid"} else first([uid])
    email = first(_claim_list(config.email_claim)) or (nameid if "@" in nameid else "")
    groups = None
    if config.groups_claim:
        groups = _as_strings(list(attributes.get(config.groups_claim) or []))
    return IdpIdentity(
        issuer=issuer,
        subject=subject,
        email=email,
        email_verified=True,  # signed by the organisation's IdP: see the module docstring
        display_name=first(["displayName", "name", "cn"]),
        groups=groups,
    )


def _as_strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        return ()
    return tuple(dict.fromkeys(str(v).strip() for v in value if str(v).strip()))


def _new_user(identity: IdpIdentity, email: str) -> User:
    user = User.objects.create_user(
        email, None, display_name=identity.display_name[:150], created_via="system"
    )
    audit_record(
        actor=_system(),
        action="user.provisioned_from_idp",
        target=user,
        after={**services.user_snapshot(user), "issuer": identity.issuer},
    )
    return user


def _link(config: SsoConfig, user: User, identity: IdpIdentity) -> ExternalIdentity:
    link = ExternalIdentity.objects.create(
        user=user,
        config=config,
        issuer=identity.issuer,
        subject=identity.subject,
        email=identity.email,
    )
    audit_record(
        actor=_system(),
        action="user.identity_linked",
        target=user,
        after={"issuer": identity.issuer, "subject": identity.subject, "sso": config.name},
    )
    return link


def _find_or_create_user(config: SsoConfig, identity: IdpIdentity) -> tuple[User, ExternalIdentity]:
    link = (
        ExternalIdentity.objects.select_related("user")
        .filter(issuer=identity.issuer, subject=identity.subject)
        .first()
    )
    if link is not None:
        return link.user, link
    if not identity.email:
        raise SsoLoginRefused(
            f"Your identity provider sent no email address (claim '{config.email_claim}')."
        )
    try:
        email = services.normalize_email(identity.email)
    except ValidationFailed as exc:
        raise SsoLoginRefused("Your identity provider sent an invalid email address.") from exc
    user = User.objects.filter(email__iexact=email).first()
    if user is not None:
        if ExternalIdentity.objects.filter(user=user, issuer=identity.issuer).exists():
            raise SsoLoginRefused(
                "This email address belongs to a user linked to another identity at your "
                "identity provider. Ask an administrator to resolve it."
            )
        if not identity.email_verified:
            raise SsoLoginRefused(
                "Your identity provider did not mark your email address as verified, so it "
                "cannot be linked to the existing user with that address."
            )
        if not user.is_active:
            raise SsoLoginRefused("Your account is deactivated. Ask an administrator.")
        return user, _link(config, user, identity)
    if config.provisioning == SsoConfig.Provisioning.INVITE_ONLY:
        raise SsoLoginRefused(
            "Sign-in is by invitation only and there is no user for your email address. "
            "Ask an administrator to invite you."
        )
    if config.provisioning == SsoConfig.Provisioning.SCIM_ONLY:
        raise SsoLoginRefused(
            "Users are provisioned by your identity provider over SCIM and yours has not "
            "been provisioned yet. Ask an administrator."
        )
    user = _new_user(identity, email)
    return user, _link(config, user, identity)


def _sync_groups(user: User, groups: Sequence[str]) -> None:
    """Make the user's SSO-backed team memberships exactly the asserted groups.

    Groups whose names are valid team names become `sso-group` teams when missing. Teams made
    by hand or by SCIM are never touched, even when their names match a group.
    """
    wanted: dict[str, Team] = {}
    for name in groups:
        if not re.fullmatch(TEAM_NAME_PATTERN, name) or name.lower() == EVERYONE:
            continue
        team = Team.objects.filter(name__iexact=name).first()
        if team is None:
            team = team_services.team_create(
                actor=_system(),
                name=name,
                description="Mirrors the identity provider group of this name.",
                source=Team.Source.SSO_GROUP,
                created_via="system",
            )
        if team.source == Team.Source.SSO_GROUP:
            wanted[team.name] = team
    current = {
        m.team.name: m.team
        for m in TeamMembership.objects.select_related("team").filter(
            user=user, role=TeamMembership.Role.MEMBER, team__source=Team.Source.SSO_GROUP
        )
    }
    for name in sorted(wanted.keys() - current.keys()):
        team_services.team_membership_add(actor=_system(), team=wanted[name], user=user)
    for name in sorted(current.keys() - wanted.keys()):
        team_services.team_membership_remove(actor=_system(), team=current[name], user=user)


def _apply_role_mapping(config: SsoConfig, user: User, groups: Sequence[str]) -> User:
    """tenant-admin for members of a mapped group; everyone else back to member.

    The last active tenant admin is never demoted (accounts.services refuses, and the sign-in
    goes on with the role unchanged).
    """
    admin_groups = set(config.role_mapping.get("tenant_admin") or [])
    if not admin_groups:
        return user
    is_mapped = bool(admin_groups & set(groups))
    role = TENANT_ADMIN if is_mapped else MEMBER
    if is_mapped == user.is_tenant_admin:
        return user
    try:
        return services.user_update(actor=_system(), user=user, tenant_role=role)
    except Conflict as exc:
        logger.warning("sso: kept %s as %s: %s", user.email, user.tenant_role_id, exc.message)
        return user


@transaction.atomic
def user_provision_from_idp(*, config: SsoConfig, identity: IdpIdentity) -> User:
    """The user an IdP sign-in is for: found by (issuer, subject), linked, or just-in-time.

    Refuses (SsoLoginRefused) deactivated users, unknown users under invite-only or SCIM-only
    provisioning, and ambiguous email matches (see the module docstring). Then keeps the
    display name, SSO-backed team memberships and the mapped tenant role current. Every change
    is audited with the system as actor.
    """
    if not config.enabled:
        raise SsoLoginRefused("This sign-in method is disabled.")
    if not identity.subject or not identity.issuer:
        raise SsoLoginRefused(
            f"Your identity provider sent no subject (claim '{config.unique_id_claim}')."
        )
    user, link = _find_or_create_user(config, identity)
    user = User.objects.select_for_update().get(pk=user.pk)
    if not user.is_active:
        raise SsoLoginRefused("Your account is deactivated. Ask an administrator.")
    ExternalIdentity.objects.filter(pk=link.pk).update(
        last_login_at=timezone.now(), email=identity.email, config=config
    )
    if identity.display_name and identity.display_name[:150] != user.display_name:
        user = services.user_update(
            actor=_system(), user=user, display_name=identity.display_name[:150]
        )
    if identity.groups is not None:
        _sync_groups(user, identity.groups)
        user = _apply_role_mapping(config, user, identity.groups)
    return user


def saml_assertion_consume(*, issuer: str, assertion_id: str, not_on_or_after: int | None) -> bool:
    """Record a validated assertion's ID; False when it was seen before (a replay).

    Kept until the assertion would expire anyway (at least a day when it names no expiry).
    """
    if not assertion_id:
        return False
    now = timezone.now()
    expires = (
        datetime.fromtimestamp(not_on_or_after, tz=UTC)
        if not_on_or_after
        else now + timedelta(days=1)
    )
    SamlAssertionSeen.objects.filter(expires_at__lt=now - timedelta(minutes=5)).delete()
    try:
        with transaction.atomic():
            SamlAssertionSeen.objects.create(
                issuer=issuer, assertion_id=assertion_id, expires_at=expires
            )
    except IntegrityError:
        return False
    return True


def oidc_nonce(state_id: str) -> str:
    """The nonce sent with an authorization request: bound to its state (and so the session).

    OpenID Connect Core 1.0 §3.1.2.1; checked in the ID token by accounts.sso_adapters.
    """
    key = hashlib.sha256(("gateway-oidc-nonce:" + settings.SECRET_KEY).encode()).digest()
    return hmac.new(key, state_id.encode(), hashlib.sha256).hexdigest()


# --- IdP-issued JWTs at the API and the proxy ---------------------------------------------


@dataclass(frozen=True)
class MappingSpec:
    """Tokens whose claim `key` holds one of `values` act as `user` (email) or `virtual_account`."""

    key: str
    values: list[str]
    user: str = ""
    virtual_account: str = ""


@dataclass
class ExternalIdpSpec:
    """An `external-identity-provider`: whose JWTs are accepted, and who they act as."""

    name: str
    issuer: str
    audience: str
    jwks_uri: str
    email_claim: str = "email"
    unique_id_claim: str = "sub"
    enabled: bool = True
    mappings: list[MappingSpec] = field(default_factory=list)


def external_idp_snapshot(provider: ExternalIdentityProvider) -> dict[str, Any]:
    """The audited fields of an external IdP and its mappings."""
    return {
        "name": provider.name,
        "enabled": provider.enabled,
        "issuer": provider.issuer,
        "audience": provider.audience,
        "jwks_uri": provider.jwks_uri,
        "email_claim": provider.email_claim,
        "unique_id_claim": provider.unique_id_claim,
        "mappings": [
            {
                "key": m.claim_key,
                "values": list(m.values),
                **(
                    {"user": m.user.email}
                    if m.user is not None
                    else {"virtual_account": m.virtual_account.name if m.virtual_account else ""}
                ),
            }
            for m in provider.mappings.select_related("user", "virtual_account").order_by("id")
        ],
    }


@transaction.atomic
def external_idp_put(
    *, actor: Principal, spec: ExternalIdpSpec, created_via: str = "console"
) -> tuple[ExternalIdentityProvider, bool]:
    """Create or replace an external IdP with its mappings. Returns (provider, created)."""
    require(actor, Permission.EXTERNAL_IDENTITY_MANAGE)
    errors: dict[str, list[str]] = {}
    if not re.fullmatch(SSO_NAME_PATTERN, spec.name or ""):
        errors["name"] = ["3-64 lower-case letters, digits and '-', starting with a letter"]
    for name in ("issuer", "audience", "jwks_uri"):
        if not getattr(spec, name):
            errors[name] = ["required"]
    if spec.jwks_uri and not re.match(r"^https?://[^\s/]+", spec.jwks_uri):
        errors["jwks_uri"] = ["must be an http(s) URL"]
    targets: list[tuple[User | None, VirtualAccount | None]] = []
    for index, mapping in enumerate(spec.mappings):
        path = f"mappings[{index}]"
        if not mapping.key or not mapping.values:
            errors.setdefault(f"{path}.key", []).append("a claim key and values are required")
        if bool(mapping.user) == bool(mapping.virtual_account):
            errors.setdefault(path, []).append("give exactly one of user or virtual_account")
            continue
        user = User.objects.filter(email__iexact=mapping.user).first() if mapping.user else None
        account = (
            VirtualAccount.objects.filter(name=mapping.virtual_account).first()
            if mapping.virtual_account
            else None
        )
        if mapping.user and user is None:
            errors.setdefault(f"{path}.user", []).append(f"no user '{mapping.user}'")
        if mapping.virtual_account and account is None:
            errors.setdefault(f"{path}.virtual_account", []).append(
                f"no virtual account '{mapping.virtual_account}'"
            )
        # A mapping lets a token act as its target: only those who administer the target may
        # create one (no impersonation beyond one's own rights).
        if user is not None:
            require(actor, Permission.USER_MANAGE)
            if user.is_tenant_admin and not can_administer_admins(actor):
                raise PolicyDenied(Permission.EXTERNAL_IDENTITY_MANAGE, "maps to a tenant admin")
        if account is not None:
            require(actor, Permission.VIRTUAL_ACCOUNT_MANAGE, team_id=account.owner_team_id)
        targets.append((user, account))
    if errors:
        raise ValidationFailed("the external identity provider is not valid", errors)
    provider = ExternalIdentityProvider.objects.select_for_update().filter(name=spec.name).first()
    created = provider is None
    before = None if provider is None else external_idp_snapshot(provider)
    if provider is None:
        provider = ExternalIdentityProvider(name=spec.name, created_via=created_via)
    for name in ("issuer", "audience", "jwks_uri", "email_claim", "unique_id_claim", "enabled"):
        setattr(provider, name, getattr(spec, name))
    provider.save()
    provider.mappings.all().delete()
    for mapping, (user, account) in zip(spec.mappings, targets, strict=True):
        ExternalIdentityMapping.objects.create(
            provider=provider,
            claim_key=mapping.key,
            values=list(mapping.values),
            user=user,
            virtual_account=account,
        )
    after = external_idp_snapshot(provider)
    if before != after:
        action = "external_idp.created" if created else "external_idp.updated"
        audit_record(actor=actor, action=action, target=provider, before=before, after=after)
    return provider, created


@transaction.atomic
def external_idp_delete(*, actor: Principal, provider: ExternalIdentityProvider) -> None:
    """Stop accepting this IdP's tokens."""
    require(actor, Permission.EXTERNAL_IDENTITY_MANAGE)
    audit_record(
        actor=actor,
        action="external_idp.deleted",
        target=provider,
        before=external_idp_snapshot(provider),
    )
    provider.delete()


def external_idp_list(principal: Principal) -> QuerySet[ExternalIdentityProvider]:
    """External IdPs, for holders of the external-identity permissions."""
    require_any(principal, Permission.EXTERNAL_IDENTITY_LIST, Permission.EXTERNAL_IDENTITY_MANAGE)
    return ExternalIdentityProvider.objects.prefetch_related("mappings").order_by("name")


def looks_like_jwt(raw: str) -> bool:
    """A compact JWS (three base64url parts, a JSON header): worth trying as an IdP token."""
    return raw.startswith("eyJ") and raw.count(".") == 2


@dataclass(frozen=True)
class IdpJwtGrant:
    """Who an IdP-issued JWT acts as, and until when (its `exp`)."""

    principal: Principal
    expires_at: datetime
    provider: str
    subject: str


def _claim_values(value: Any) -> set[str]:
    if isinstance(value, list | tuple):
        return {str(v) for v in value}
    return set() if value is None else {str(value)}


def idp_jwt_authenticate(raw: str) -> IdpJwtGrant | None:
    """The grant for a JWT from an enabled external IdP, or None when it does not validate.

    The token's unverified `iss` only picks the provider; then its signature (the provider's
    JWKS), `iss`, `aud`, `exp` and `nbf` are verified. It acts as the first mapping whose
    claim matches, else as the user whose SSO identity has this (issuer, subject); never by
    email alone. Deactivated users and expired virtual accounts get nothing.
    """
    if not looks_like_jwt(raw):
        return None
    try:
        unverified = jwt.decode(raw, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    issuer = unverified.get("iss")
    if not isinstance(issuer, str) or not issuer:
        return None
    for provider in ExternalIdentityProvider.objects.filter(issuer=issuer, enabled=True):
        try:
            claims = jwt_verify(
                raw, jwks_uri=provider.jwks_uri, issuer=provider.issuer, audience=provider.audience
            )
        except JwtInvalid as exc:
            logger.info("idp jwt: refused by %s: %s", provider.name, exc)
            continue
        principal = _principal_for_claims(provider, claims)
        if principal is None:
            logger.info("idp jwt: %s token maps to nobody", provider.name)
            return None
        expires = datetime.fromtimestamp(int(claims["exp"]), tz=UTC)
        subject = str(claims.get(provider.unique_id_claim or "sub") or "")
        return IdpJwtGrant(principal, expires, provider.name, subject)
    return None


def _principal_for_claims(
    provider: ExternalIdentityProvider, claims: Mapping[str, Any]
) -> Principal | None:
    from accounts.selectors import principal_for_user
    from accounts.virtual_accounts import principal_for_virtual_account

    for mapping in provider.mappings.select_related("user", "virtual_account").order_by("id"):
        if _claim_values(claims.get(mapping.claim_key)) & {str(v) for v in mapping.values}:
            if mapping.user is not None:
                return principal_for_user(mapping.user) if mapping.user.is_active else None
            account = mapping.virtual_account
            if account is None or account.is_expired:
                return None
            return principal_for_virtual_account(account)
    subject = claims.get(provider.unique_id_claim or "sub")
    if subject in (None, ""):
        return None
    link = (
        ExternalIdentity.objects.select_related("user", "user__tenant_role")
        .filter(issuer=provider.issuer, subject=str(subject))
        .first()
    )
    if link is None or not link.user.is_active:
        return None
    return principal_for_user(link.user)


def principal_for_idp_jwt(raw: str) -> Principal | None:
    """The principal for an IdP-issued JWT, or None (see idp_jwt_authenticate)."""
    grant = idp_jwt_authenticate(raw)
    return grant.principal if grant is not None else None


def dump_json(value: Any) -> str:
    """Pretty JSON for the console (role mappings)."""
    return json.dumps(value, indent=2, sort_keys=True)
