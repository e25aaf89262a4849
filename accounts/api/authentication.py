"""DRF authentication: `Authorization: Bearer <token>` (PAT) and console sessions."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from accounts.models import User
from accounts.request import set_request_principal
from accounts.selectors import pat_authenticate, principal_for_user
from accounts.sso import idp_jwt_authenticate, looks_like_jwt
from accounts.tokens import VA_PREFIX
from accounts.virtual_accounts import principal_for_virtual_account, va_for_token

INVALID = "Invalid or expired token."


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """Personal access tokens (`gw_pat_...`) and virtual account tokens (`gw_va_...`)."""

    keyword = "bearer"

    def authenticate(self, request: Request) -> tuple[User | AnonymousUser, str] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != self.keyword:
            return None
        raw = raw.strip()
        if not raw:
            raise exceptions.AuthenticationFailed(INVALID)
        if raw.startswith(VA_PREFIX):
            return self._virtual_account(request, raw)
        if looks_like_jwt(raw):
            return self._idp_jwt(request, raw)
        token = pat_authenticate(raw)
        if token is None:
            # One answer whatever the token: nothing to tell a guesser.
            raise exceptions.AuthenticationFailed(INVALID)
        set_request_principal(request._request, principal_for_user(token.user))
        return token.user, "pat"

    def _idp_jwt(self, request: Request, raw: str) -> tuple[User | AnonymousUser, str]:
        grant = idp_jwt_authenticate(raw)
        if grant is None:
            raise exceptions.AuthenticationFailed(INVALID)
        set_request_principal(request._request, grant.principal)
        if grant.principal.kind == "user":
            return User.objects.get(pk=grant.principal.id), "idp-jwt"
        return AnonymousUser(), "idp-jwt"

    def _virtual_account(self, request: Request, raw: str) -> tuple[AnonymousUser, str]:
        found = va_for_token(raw)
        if found is None:
            raise exceptions.AuthenticationFailed(INVALID)
        set_request_principal(request._request, principal_for_virtual_account(found[0]))
        return AnonymousUser(), "vat"

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="gateway"'


class ConsoleSessionAuthentication(authentication.SessionAuthentication):
    """The console's session cookie, with CSRF enforced (DRF's default behaviour)."""

    def authenticate(self, request: Request) -> Any:
        result = super().authenticate(request)
        if result is not None:
            set_request_principal(request._request, principal_for_user(result[0]))
        return result
