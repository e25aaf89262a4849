"""The principal behind an HTTP request, loaded once and cached on the request."""

from __future__ import annotations

from django.http import HttpRequest

from accounts.models import User
from accounts.policy import Principal
from accounts.selectors import principal_for_user

_ATTR = "_gateway_principal"


def request_principal(request: HttpRequest) -> Principal:
    """The principal for a console session or API token (set by authentication)."""
    cached: Principal | None = getattr(request, _ATTR, None)
    if cached is not None:
        return cached
    user = getattr(request, "user", None)
    principal = (
        principal_for_user(user)
        if isinstance(user, User) and user.is_authenticated
        else Principal.anonymous()
    )
    setattr(request, _ATTR, principal)
    return principal


def set_request_principal(request: HttpRequest, principal: Principal) -> None:
    """Authentication classes set the principal they established."""
    setattr(request, _ATTR, principal)
