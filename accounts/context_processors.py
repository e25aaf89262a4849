"""Template context: the request's principal, for navigation that follows permissions."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from accounts.request import request_principal


def principal(request: HttpRequest) -> dict[str, Any]:
    return {"principal": request_principal(request)}
