"""django-allauth adapters: IdPs from `SsoConfig`, hardened protocols, our own provisioning.

- `GatewaySocialAccountAdapter.list_apps` serves allauth the apps built from the enabled
  `SsoConfig` rows on each request (accounts.sso explains why not `SocialApp` rows).
- `pre_social_login` hands the verified identity to `accounts.sso.user_provision_from_idp`,
  signs the user in and redirects to a same-host URL only. allauth's own account tables
  (`SocialAccount`, `EmailAddress`) are never written: `ExternalIdentity` is the link.
- `GatewayOIDCProvider` adds a nonce bound to the state (and so to the browser session), uses
  PKCE, and always verifies the ID token's signature, `iss`, `aud`, `exp`, `nbf` and `nonce`.
- `GatewaySAMLProvider` refuses a replayed assertion (python3-saml in strict mode already checks
  the signature against the configured certificate, audience, recipient, validity window and
  signature wrapping).
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.providers.oauth2.client import OAuth2Client, OAuth2Error
from allauth.socialaccount.providers.openid_connect.provider import OpenIDConnectProvider
from allauth.socialaccount.providers.openid_connect.views import OpenIDConnectOAuth2Adapter
from allauth.socialaccount.providers.saml.provider import SAMLProvider
from django.conf import settings
from django.contrib.auth import login
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render, resolve_url
from django.utils.http import url_has_allowed_host_and_scheme

from accounts import sso
from accounts.audit import audit_source
from accounts.models import AuditEvent, SsoConfig

logger = logging.getLogger(__name__)

EMAIL_BACKEND = "accounts.backends.EmailBackend"
SESSION_SSO_KEY = "gateway_sso_config"


def refusal(request: HttpRequest, message: str, status: int = 403) -> HttpResponse:
    """The page shown when an IdP sign-in cannot go on."""
    return render(request, "accounts/sso_error.html", {"message": message}, status=status)


def safe_next(request: HttpRequest, url: str | None) -> str:
    """`url` when it stays on this host; else the default landing page (no open redirects)."""
    if url and url_has_allowed_host_and_scheme(
        url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return url
    return resolve_url(settings.LOGIN_REDIRECT_URL)


class GatewayAccountAdapter(DefaultAccountAdapter):
    """allauth's account flows are not used: sign-up is closed, redirects stay on this host."""

    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return False

    def is_safe_url(self, url: str | None) -> bool:
        request = getattr(self, "request", None)
        host = request.get_host() if request is not None else None
        return bool(url) and url_has_allowed_host_and_scheme(
            url, allowed_hosts={host} if host else set()
        )


class GatewaySocialAccountAdapter(DefaultSocialAccountAdapter):
    """IdPs come from `SsoConfig`; every sign-in goes through user_provision_from_idp."""

    def list_apps(
        self, request: HttpRequest | None, provider: str | None = None, client_id: str | None = None
    ) -> list[Any]:
        apps = []
        for config in sso.sso_login_options():
            try:
                app = sso.allauth_app(config)
            except (sso.IdpUnreachable, ValueError) as exc:
                logger.warning("sso: %s is unusable now: %s", config.name, exc)
                continue
            if provider and provider not in (app.provider, app.provider_id):
                continue
            if client_id and app.client_id != client_id:
                continue
            apps.append(app)
        return apps

    def is_open_for_signup(self, request: HttpRequest, sociallogin: Any) -> bool:
        return False

    def on_authentication_error(
        self,
        request: HttpRequest,
        provider: Any,
        error: Any = None,
        exception: Any = None,
        extra_context: Any = None,
    ) -> None:
        extra = dict(extra_context or {})
        reason = extra.get("saml_last_error_reason") or exception or error
        logger.warning(
            "sso: sign-in with %s failed: %s", getattr(provider, "sub_id", provider), reason
        )
        raise ImmediateHttpResponse(
            refusal(request, "Sign-in with your identity provider failed. Try again.")
        )

    def pre_social_login(self, request: HttpRequest, sociallogin: Any) -> None:
        """Provision, sign in and redirect; allauth's sign-up and linking never run."""
        name = sociallogin.account.provider
        config = sso.sso_config_enabled(name)
        if config is None:
            raise ImmediateHttpResponse(refusal(request, "This sign-in method is disabled."))
        identity = identity_of(config, sociallogin)
        with audit_source(AuditEvent.Source.SYSTEM):
            try:
                user = sso.user_provision_from_idp(config=config, identity=identity)
            except sso.SsoLoginRefused as exc:
                logger.info("sso: %s refused %s: %s", name, identity.subject, exc.message)
                raise ImmediateHttpResponse(refusal(request, exc.message)) from exc
        login(request, user, backend=EMAIL_BACKEND)
        request.session[SESSION_SSO_KEY] = config.name
        next_url = safe_next(request, sociallogin.state.get("next"))
        raise ImmediateHttpResponse(HttpResponseRedirect(next_url))


def identity_of(config: SsoConfig, sociallogin: Any) -> sso.IdpIdentity:
    """What the (already verified) protocol response says about the person."""
    data = dict(sociallogin.account.extra_data or {})
    if config.protocol == SsoConfig.Protocol.OIDC:
        id_token = dict(data.get("id_token") or {})
        claims = {**id_token, **dict(data.get("userinfo") or {})}
        return sso.claims_identity(config, claims, issuer=str(id_token.get("iss", "")))
    attributes = {k: v for k, v in data.items() if not k.startswith("_gateway_")}
    return sso.saml_identity(
        config,
        attributes,
        nameid=str(data.get("_gateway_nameid") or ""),
        issuer=str(data.get("_gateway_issuer") or ""),
    )


# --- OpenID Connect ------------------------------------------------------------------------


class NonceOAuth2Client(OAuth2Client):
    """Adds `nonce` (derived from the state) to the authorization request."""

    def get_redirect_url(self, authorization_url: str, scope: Any, extra_params: Any) -> str:
        params = dict(extra_params or {})
        if self.state:
            params["nonce"] = sso.oidc_nonce(str(self.state))
        return str(super().get_redirect_url(authorization_url, scope, params))


class GatewayOIDCAdapter(OpenIDConnectOAuth2Adapter):
    """Endpoints from accounts.sso (discovered or explicit); ID tokens always verified."""

    client_class = NonceOAuth2Client

    def _config(self) -> SsoConfig:
        config = sso.sso_config_enabled(self.provider_id)
        if config is None:
            raise OAuth2Error("this sign-in method is disabled")
        return config

    @property
    def openid_config(self) -> dict[str, Any]:
        if not hasattr(self, "_openid_config"):
            try:
                self._openid_config = sso.oidc_metadata(self._config())
            except sso.IdpUnreachable as exc:
                raise OAuth2Error(exc.message) from exc
        return self._openid_config

    def complete_login(self, request: HttpRequest, app: Any, token: Any, **kwargs: Any) -> Any:
        """Verify the ID token (signature, iss, aud, exp, nbf, nonce), then read userinfo."""
        raw = (kwargs.get("response") or {}).get("id_token")
        if not raw:
            raise OAuth2Error("the token response has no id_token")
        metadata = self.openid_config
        try:
            claims = sso.jwt_verify(
                str(raw),
                jwks_uri=str(metadata["jwks_uri"]),
                issuer=str(metadata["issuer"]),
                audience=str(app.client_id),
            )
        except sso.JwtInvalid as exc:
            raise OAuth2Error(f"invalid id_token: {exc}") from exc
        state_id = request.GET.get("state", "")
        expected = sso.oidc_nonce(state_id) if state_id else ""
        if not expected or not hmac.compare_digest(str(claims.get("nonce", "")), expected):
            raise OAuth2Error("invalid id_token: nonce mismatch")
        data: dict[str, Any] = {"id_token": claims}
        if metadata.get("userinfo_endpoint") and app.settings.get("fetch_userinfo", True):
            userinfo = self._fetch_user_info(token.token)
            # OpenID Connect Core 1.0 §5.3.2: userinfo must be about the ID token's subject.
            if str(userinfo.get("sub")) != str(claims.get("sub")):
                raise OAuth2Error("userinfo is about another subject")
            data["userinfo"] = userinfo
        return self.get_provider().sociallogin_from_response(request, data)


class GatewayOIDCProvider(OpenIDConnectProvider):
    """allauth's OpenID Connect provider with PKCE, nonce and full ID token checks."""

    oauth2_adapter_class = GatewayOIDCAdapter
    pkce_enabled_default = True


# --- SAML ------------------------------------------------------------------------------------


class GatewaySAMLProvider(SAMLProvider):
    """allauth's SAML provider that also refuses replayed assertions."""

    def sociallogin_from_response(self, request: HttpRequest, response: Any) -> Any:
        """`response` is python3-saml's auth object, already validated (strict mode)."""
        idp_entity_id = str(self.app.settings["idp"]["entity_id"])
        fresh = sso.saml_assertion_consume(
            issuer=idp_entity_id,
            assertion_id=str(response.get_last_assertion_id() or ""),
            not_on_or_after=response.get_last_assertion_not_on_or_after(),
        )
        if not fresh:
            logger.warning("sso: replayed SAML assertion %s", response.get_last_assertion_id())
            raise ImmediateHttpResponse(
                refusal(request, "This sign-in response was already used. Sign in again.")
            )
        sociallogin = super().sociallogin_from_response(request, response)
        extra = dict(sociallogin.account.extra_data or {})
        extra["_gateway_nameid"] = response.get_nameid() or ""
        extra["_gateway_issuer"] = idp_entity_id
        sociallogin.account.extra_data = extra
        return sociallogin
