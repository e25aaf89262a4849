"""Tags every change made during a request with its channel, for the audit log."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from accounts.audit import audit_source
from accounts.models import AuditEvent


class AuditSourceMiddleware:
    """`/api/` requests are audited as API, `/scim/` as SCIM, everything else as console."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/api/"):
            source = AuditEvent.Source.API
        elif request.path.startswith("/scim/"):
            source = AuditEvent.Source.SCIM
        else:
            source = AuditEvent.Source.CONSOLE
        with audit_source(source):
            return self.get_response(request)
