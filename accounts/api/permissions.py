"""DRF permission class reading the view's `policy_permission` through accounts.policy."""

from __future__ import annotations

from typing import Any

from rest_framework import permissions
from rest_framework.request import Request

from accounts.policy import Permission, holds_any
from accounts.request import request_principal


class PolicyPermission(permissions.BasePermission):
    """Authenticated callers only; a view may name tenant-wide permissions it needs (any of).

    Object-level and team-scoped decisions are taken by selectors and services, which raise
    404 or 403 themselves: this class is the user-experience check, not the one that counts.
    """

    def has_permission(self, request: Request, view: Any) -> bool:
        principal = request_principal(request._request)
        if principal.kind == "anonymous":
            return False
        needed: tuple[Permission, ...] = getattr(view, "policy_permission", ())
        return not needed or holds_any(principal, *needed)
