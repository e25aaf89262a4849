"""Per-user OAuth 2.0 for `oauth2` MCP servers: authorization code with PKCE, then refresh.

The gateway is the OAuth client of the MCP server's own authorization server (MCP 2025-06-18
"Authorization"). Each user connects once from the console: `connect` sends the browser to the
server's `authorization_url` with a PKCE S256 challenge (RFC 7636) and a one-time `state` kept
in the session; `callback` exchanges the code at `token_url` (RFC 6749 §4.1.3, with the
`resource` indicator of RFC 8707) and stores the tokens; `access_token_for` hands the proxy a
current access token, refreshing it when it is about to expire (RFC 6749 §6).

Tokens are stored through `user_token_get` / `user_token_save`, the one seam to the
`providers.McpUserToken` model (server, user, encrypted access and refresh tokens, expires_at,
unique per server and user); until that model is installed they raise `OAuthNotReady`.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from django.apps import apps
from django.conf import settings
from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme

from accounts.console import ConsoleView, console_user
from accounts.policy import Permission
from gateway_project.errors import ObjectNotFound
from providers import selectors
from providers.models import McpServer
from providers.services import secret_values
from providers.upstream import allowed_host

logger = logging.getLogger(__name__)

SESSION_KEY = "mcp_oauth_pending"
PENDING_TTL_SECONDS = 600  # a consent screen left open longer than this must start again
MAX_PENDING = 5  # parallel connect attempts kept per session (several tabs)
REFRESH_MARGIN = timedelta(seconds=60)  # refresh a little early: clocks and transit
TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class OAuthFailed(Exception):
    """The flow could not complete; the message is safe to show (no tokens, no secrets)."""


class OAuthNotReady(OAuthFailed):
    """Per-user tokens cannot be stored yet (the McpUserToken model is not installed)."""


@dataclass(frozen=True, slots=True)
class TokenSet:
    """What a token endpoint granted."""

    access_token: str
    refresh_token: str
    expires_at: datetime | None


# --- storage seam: the only code that touches providers.McpUserToken -----------------------


STORAGE_MODEL: str = "providers.McpUserToken"  # a plain str: resolved at run time, not by mypy


def _token_model() -> Any:
    try:
        return apps.get_model(STORAGE_MODEL)
    except LookupError as exc:
        raise OAuthNotReady("per-user MCP tokens cannot be stored yet") from exc


def user_token_get(*, server_id: int, user_id: int) -> TokenSet | None:
    """The stored tokens of one user for one server, or None."""
    row = _token_model().objects.filter(server_id=server_id, user_id=user_id).first()
    if row is None:
        return None
    return TokenSet(row.access_token, row.refresh_token, row.expires_at)


@transaction.atomic
def user_token_save(*, server_id: int, user_id: int, tokens: TokenSet) -> None:
    """Create or replace one user's tokens for one server."""
    _token_model().objects.update_or_create(
        server_id=server_id,
        user_id=user_id,
        defaults={
            "access_token": tokens.access_token,
            "refresh_token": tokens.refresh_token,
            "expires_at": tokens.expires_at,
        },
    )


# --- the protocol ---------------------------------------------------------------------------


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge of a verifier (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def pkce_pair() -> tuple[str, str]:
    """A fresh (code_verifier, code_challenge) (RFC 7636 §4.1)."""
    verifier = secrets.token_urlsafe(64)  # 86 characters, inside the 43-128 range
    return verifier, pkce_challenge(verifier)


def redirect_uri() -> str:
    """The callback registered with every authorization server: stable, from the public URL."""
    return f"{settings.GATEWAY_PUBLIC_URL}{reverse('providers:mcp_oauth_callback')}"


def authorization_url(server: McpServer, *, state: str, challenge: str) -> str:
    """Where to send the browser to ask the user's consent (RFC 6749 §4.1.1)."""
    auth = server.auth_public
    params = {
        "response_type": "code",
        "client_id": str(auth.get("client_id", "")),
        "redirect_uri": redirect_uri(),
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "resource": server.url,
    }
    scopes = auth.get("scopes") or []
    if scopes:
        params["scope"] = " ".join(str(s) for s in scopes)
    base = str(auth.get("authorization_url", ""))
    return f"{base}{'&' if '?' in base else '?'}{urlencode(params)}"


def _token_url(server: McpServer) -> str:
    url = str(server.auth_public.get("token_url", ""))
    parts = urlsplit(url)
    # The gateway itself calls this URL: same host rules as any upstream (SSRF).
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OAuthFailed("the MCP server's token URL is not an http(s) URL")
    if not allowed_host(parts.hostname):
        raise OAuthFailed("the MCP server's token URL is not on an allowed host")
    return url


def _token_request(server: McpServer, form: dict[str, str]) -> TokenSet:
    """POST to the token endpoint with client_secret_post authentication."""
    form = {
        **form,
        "client_id": str(server.auth_public.get("client_id", "")),
        "resource": server.url,
    }
    client_secret = secret_values(server).get("client_secret")
    if client_secret:
        form["client_secret"] = str(client_secret)
    try:
        with httpx.Client(timeout=TIMEOUT, follow_redirects=False) as client:
            response = client.post(
                _token_url(server), data=form, headers={"Accept": "application/json"}
            )
    except httpx.HTTPError as exc:
        logger.info("mcp oauth: token endpoint of %s failed: %s", server.name, type(exc).__name__)
        raise OAuthFailed("the authorization server could not be reached") from exc
    if response.status_code != 200:
        # The body may echo the code or a client secret: keep only the status.
        logger.info(
            "mcp oauth: token endpoint of %s answered %s", server.name, response.status_code
        )
        raise OAuthFailed(f"the authorization server refused (HTTP {response.status_code})")
    return _token_set(response)


def _token_set(response: httpx.Response) -> TokenSet:
    try:
        body = response.json()
    except ValueError as exc:
        raise OAuthFailed("the authorization server answered with invalid JSON") from exc
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
        raise OAuthFailed("the authorization server returned no access token")
    if str(body.get("token_type", "bearer")).lower() != "bearer":
        raise OAuthFailed("the authorization server returned a non-bearer token")
    expires_in = body.get("expires_in")
    expires_at = (
        timezone.now() + timedelta(seconds=int(expires_in))
        if isinstance(expires_in, int | float) and expires_in > 0
        else None
    )
    refresh = body.get("refresh_token")
    return TokenSet(body["access_token"], refresh if isinstance(refresh, str) else "", expires_at)


def code_exchange(server: McpServer, *, code: str, verifier: str) -> TokenSet:
    """Trade an authorization code for tokens (RFC 6749 §4.1.3, RFC 7636 §4.5)."""
    return _token_request(
        server,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri(),
            "code_verifier": verifier,
        },
    )


def token_refresh(server: McpServer, tokens: TokenSet) -> TokenSet:
    """New tokens from a refresh token; keeps the old refresh token if none is issued (§6)."""
    fresh = _token_request(
        server, {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token}
    )
    return TokenSet(
        fresh.access_token, fresh.refresh_token or tokens.refresh_token, fresh.expires_at
    )


def access_token_for(server: McpServer, user_id: int) -> TokenSet | None:
    """A current token of `user_id` for `server` (refreshed when due), or None to reconnect.

    Sync: the proxy calls it through sync_to_async.
    """
    tokens = user_token_get(server_id=server.pk, user_id=user_id)
    if tokens is None:
        return None
    if tokens.expires_at is None or tokens.expires_at > timezone.now() + REFRESH_MARGIN:
        return tokens
    if not tokens.refresh_token:
        return None
    try:
        tokens = token_refresh(server, tokens)
    except OAuthFailed as exc:
        logger.info("mcp oauth: refresh for user %s on %s failed: %s", user_id, server.name, exc)
        return None
    user_token_save(server_id=server.pk, user_id=user_id, tokens=tokens)
    return tokens


# --- console views ------------------------------------------------------------------------


def _pending(request: HttpRequest) -> dict[str, dict[str, Any]]:
    """state -> {server, user, verifier, next, at}, dropping expired entries."""
    now = time.time()
    stored: dict[str, dict[str, Any]] = request.session.get(SESSION_KEY, {})
    return {k: v for k, v in stored.items() if now - float(v.get("at", 0)) < PENDING_TTL_SECONDS}


def _next_url(request: HttpRequest) -> str:
    target = request.GET.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("home")


class McpOAuthConnectView(ConsoleView):
    """Start connecting the signed-in user to an `oauth2` MCP server they may use."""

    def get(self, request: HttpRequest, name: str) -> HttpResponse:
        """Remember a PKCE verifier under a fresh state, then redirect to the server's consent."""
        server = selectors.mcp_server_get_for(self.principal, name=name)
        usable = self.principal.holds(Permission.MCP_SERVER_USE, resource=("mcp-server", server.pk))
        if not usable or server.auth_type != McpServer.AuthType.OAUTH2:
            raise ObjectNotFound("MCP server not found")
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(32)
        pending = _pending(request)
        pending[state] = {
            "server": server.pk,
            "user": console_user(request).pk,
            "verifier": verifier,
            "next": _next_url(request),
            "at": time.time(),
        }
        newest = sorted(pending.items(), key=lambda item: item[1]["at"])[-MAX_PENDING:]
        request.session[SESSION_KEY] = dict(newest)
        return HttpResponseRedirect(authorization_url(server, state=state, challenge=challenge))


class McpOAuthCallbackView(ConsoleView):
    """Finish the flow: check the one-time state, exchange the code, store the tokens."""

    def get(self, request: HttpRequest) -> HttpResponse:
        """The authorization server redirects here with `code` and `state` (or `error`)."""
        pending = _pending(request)
        entry = pending.pop(request.GET.get("state", ""), None)
        request.session[SESSION_KEY] = pending  # one-time: a replayed state finds nothing
        if entry is None or entry["user"] != console_user(request).pk:
            return HttpResponseBadRequest(
                "This sign-in link is unknown or has expired. Start connecting again.",
                content_type="text/plain",
            )
        server = McpServer.objects.filter(pk=entry["server"]).first()
        if server is None or server.auth_type != McpServer.AuthType.OAUTH2:
            raise ObjectNotFound("MCP server not found")
        try:
            if request.GET.get("error") or not request.GET.get("code"):
                # RFC 6749 §4.1.2.1: the user refused, or the server could not ask them.
                raise OAuthFailed("the authorization server did not grant access")
            tokens = code_exchange(server, code=request.GET["code"], verifier=entry["verifier"])
            user_token_save(server_id=server.pk, user_id=entry["user"], tokens=tokens)
        except OAuthFailed as exc:
            messages.error(request, f"Could not connect to {server.name}: {exc}")
        else:
            messages.success(request, f"Connected to {server.name}.")
        return HttpResponseRedirect(entry["next"])
