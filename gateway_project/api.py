"""API plumbing shared by every app: pagination and one JSON error format.

Errors are `{"error": {"message": str, "fields": {path: [messages]}}}` with the HTTP status.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from accounts.policy import PolicyDenied
from gateway_project.errors import GatewayError, ValidationFailed

logger = logging.getLogger(__name__)


class Pagination(PageNumberPagination):
    """`?page=N&page_size=M` (at most 500)."""

    page_size_query_param = "page_size"
    max_page_size = 500


def error_body(message: str, fields: dict[str, list[str]] | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "fields": fields or {}}}


def _join(prefix: str, key: Any) -> str:
    """`members` + 2 -> `members[2]`; `subjects[0]` + `name` -> `subjects[0].name`."""
    if isinstance(key, int) or str(key).isdigit():
        return f"{prefix}[{key}]"
    name = "" if key == "non_field_errors" else str(key)
    return f"{prefix}.{name}" if prefix and name else (prefix or name)


def _flatten(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail as `{"a.b[0]": ["msg"]}`."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            out.update(_flatten(value, _join(prefix, key)))
    elif isinstance(detail, list):
        if all(not isinstance(v, dict | list) for v in detail):
            out[prefix] = [str(v) for v in detail]
        else:
            for index, value in enumerate(detail):
                out.update(_flatten(value, f"{prefix}[{index}]"))
    else:
        out[prefix] = [str(detail)]
    return out


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Map domain and DRF errors to the JSON error format."""
    if isinstance(exc, ValidationFailed):
        return Response(error_body(exc.message, exc.fields), status=exc.status)
    if isinstance(exc, GatewayError):
        return Response(error_body(exc.message), status=exc.status)
    if isinstance(exc, PolicyDenied | PermissionDenied):
        return Response(
            error_body("You do not have permission to perform this action."),
            status=status.HTTP_403_FORBIDDEN,
        )
    if isinstance(exc, Http404):
        return Response(error_body("Not found."), status=status.HTTP_404_NOT_FOUND)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        first = next(iter(fields.items()), ("", ["invalid input"]))
        message = f"{first[0]}: {first[1][0]}" if first[0] else first[1][0]
        response.data = error_body(message, fields)
    elif isinstance(exc, exceptions.APIException):
        detail = exc.detail
        response.data = error_body(
            str(detail if not isinstance(detail, dict) else exc.default_detail)
        )
    return response
