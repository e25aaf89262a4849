"""DRF authentication: `Authorization: Bearer <token>` (PAT) and console sessions."""

from __future__ import annotations

from typing import Any

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from accounts.models import User
from accounts.request import set_request_principal
from accounts.selectors import pat_authenticate, principal_for_user

INVALID = "Invalid or expired token."


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """Personal access tokens (`gw_pat_...`); virtual account tokens arrive with their issue."""

    keyword = "bearer"

    def authenticate(self, request: Request) -> tuple[User, str] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != self.keyword:
            return None
        raw = raw.strip()
        if not raw:
            raise exceptions.AuthenticationFailed(INVALID)
        token = pat_authenticate(raw)
        if token is None:
            # One answer whatever the token: nothing to tell a guesser.
            raise exceptions.AuthenticationFailed(INVALID)
        set_request_principal(request._request, principal_for_user(token.user))
        return token.user, "pat"

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="gateway"'


class ConsoleSessionAuthentication(authentication.SessionAuthentication):
    """The console's session cookie, with CSRF enforced (DRF's default behaviour)."""

    def authenticate(self, request: Request) -> Any:
        result = super().authenticate(request)
        if result is not None:
            set_request_principal(request._request, principal_for_user(result[0]))
        return result
