"""Console plumbing shared by every app: login and policy mixins, errors into forms, lists."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from django import forms
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page, Paginator
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.utils.cache import add_never_cache_headers
from django.views import View

from accounts.models import User
from accounts.policy import Permission, PolicyDenied, Principal, holds_any
from accounts.request import request_principal
from gateway_project.errors import GatewayError, ObjectNotFound, ValidationFailed

logger = logging.getLogger(__name__)

PAGE_SIZE = 25
DENIED = "You do not have permission to do this."

M = TypeVar("M", bound=Model)


class PolicyRequiredMixin(View):
    """Checks the view's `policy_permission` (any of, tenant-wide) and maps domain errors.

    This is the user-experience check: services and selectors check again and decide.
    PolicyDenied becomes a 403 page, ObjectNotFound a 404 page.
    """

    policy_permission: tuple[Permission, ...] = ()
    principal: Principal

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        """Load the principal, check the view's permission, then run the handler."""
        self.principal = request_principal(request)
        if self.policy_permission and not holds_any(self.principal, *self.policy_permission):
            logger.info("console: %s lacks %s", self.principal.subject, self.policy_permission)
            raise PermissionDenied(DENIED)
        try:
            return super().dispatch(request, *args, **kwargs)
        except PolicyDenied as exc:
            logger.info("console: %s denied %s (%s)", self.principal.subject, exc, exc.reason)
            raise PermissionDenied(DENIED) from exc
        except ObjectNotFound as exc:
            raise Http404(exc.message) from exc


class ConsoleView(LoginRequiredMixin, PolicyRequiredMixin):
    """Base of every signed-in console page: anonymous visitors go to the login page."""


def console_user(request: HttpRequest) -> User:
    """The signed-in user (ConsoleView has already sent anonymous visitors to log in)."""
    user = request.user
    if not isinstance(user, User):
        raise PermissionDenied(DENIED)
    return user


_INDEX = re.compile(r"\[\d+\].*$|\..*$")


def form_error_apply(
    form: forms.BaseForm, exc: GatewayError, aliases: Mapping[str, str] | None = None
) -> None:
    """Put a service error on the form: each ValidationFailed field on its form field.

    `aliases` maps service field names to form field names ("resourceType" -> "resource_type");
    paths such as `members[2]` land on `members`; unknown names become non-field errors.
    """
    names = dict(aliases or {})
    if not isinstance(exc, ValidationFailed) or not exc.fields:
        form.add_error(None, exc.message)
        return
    for path, messages in exc.fields.items():
        base = _INDEX.sub("", path)
        name = names.get(path) or names.get(base) or base
        target = name if name in form.fields else None
        for message in messages:
            form.add_error(target, message)


def paginate(
    request: HttpRequest, items: QuerySet[M] | Sequence[M], per_page: int = PAGE_SIZE
) -> Page[M]:
    """The requested page (`?page=N`, clamped to the valid range)."""
    return Paginator(items, per_page).get_page(request.GET.get("page"))


def sort_param(request: HttpRequest, allowed: Mapping[str, str], default: str) -> tuple[str, str]:
    """(`?sort=` value as shown in links, ORM ordering) from a whitelist; else the default."""
    raw = request.GET.get("sort", default)
    key = raw.removeprefix("-")
    if key not in allowed:
        raw, key = default, default.removeprefix("-")
    prefix = "-" if raw.startswith("-") else ""
    return raw, prefix + allowed[key]


def no_store(response: HttpResponse) -> HttpResponse:
    """Keep a page that shows a secret out of every cache and the back-forward history.

    The referrer policy is `same-origin`, not `no-referrer`: under `no-referrer` browsers send
    `Origin: null` with the page's own form posts, and CSRF checking refuses them; a secret in
    the URL still never reaches another origin.
    """
    add_never_cache_headers(response)
    response["Cache-Control"] = "no-store, no-cache, must-revalidate, private, max-age=0"
    response["Referrer-Policy"] = "same-origin"
    return response
