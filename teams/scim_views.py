"""SCIM 2.0 endpoint views (django-scim2's, with what they get wrong replaced) and the console's
"Regenerate SCIM token" page.

Each SCIM view authenticates the SCIM token (teams.scim.ScimTokenAuthMiddleware), parses the
request, calls one adapter (which calls one service) and renders. Every failure, including a
wrong method, an unknown URL and a missing token, is answered in the SCIM error format.
"""

from __future__ import annotations

import functools
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

from django import forms
from django.core.exceptions import RequestDataTooBig
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.views import View
from django_scim import views as scim_views

from accounts.console import ConsoleView, form_error_apply, no_store
from accounts.models import User
from accounts.policy import Permission, PolicyDenied
from accounts.scim import ScimUserAdapter
from gateway_project.errors import Conflict, GatewayError, ObjectNotFound, ValidationFailed
from teams.models import Team
from teams.scim import ScimGroupAdapter, ScimTokenAuthMiddleware
from teams.scim import ServiceProviderConfig as ScimServiceProviderConfig
from teams.scim_protocol import (
    GROUP_FILTERS,
    RESOURCES,
    SCHEMAS,
    SEARCH_URN,
    USER_FILTERS,
    FilterMap,
    ScimError,
    bad_request,
    decode_id,
    json_response,
    list_response,
    load_json,
    paging,
    project,
    scim_root,
)
from teams.scim_services import (
    MAX_GRACE_DAYS,
    ScimUniquenessConflict,
    scim_group_get,
    scim_group_mappings,
    scim_group_queryset,
    scim_token_issue,
    scim_token_status,
    scim_user_get,
    scim_user_queryset,
)

logger = logging.getLogger(__name__)

Adapter = ScimUserAdapter | ScimGroupAdapter


def _error_for(exc: Exception) -> ScimError:
    """The SCIM error for a domain or protocol exception (RFC 7644 §3.12)."""
    if isinstance(exc, ScimError):
        return exc
    if isinstance(exc, ScimUniquenessConflict):
        return ScimError(409, exc.message, "uniqueness")
    if isinstance(exc, ValidationFailed):
        return ScimError(400, exc.message, "invalidValue")
    if isinstance(exc, ObjectNotFound):
        return ScimError(404, exc.message)
    if isinstance(exc, Conflict):
        return ScimError(409, exc.message)
    if isinstance(exc, GatewayError):
        return ScimError(exc.status, exc.message)
    if isinstance(exc, PolicyDenied):
        return ScimError(403, "this token may not do this")
    if isinstance(exc, RequestDataTooBig):
        return ScimError(413, "the request body is too large")
    logger.error("SCIM request failed", exc_info=exc)
    return ScimError(500, "the request could not be processed")


class ScimBaseView(View):
    """Token authentication and SCIM-format errors around every handler."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        # View.dispatch, not django-scim2's SCIMView.dispatch: its auth check and error
        # format are the ones replaced here.
        handler: Callable[..., HttpResponseBase] = functools.partial(View.dispatch, self)
        try:
            response: HttpResponseBase = ScimTokenAuthMiddleware(handler)(request, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a SCIM error
            return _error_for(exc).response()
        return response

    def http_method_not_allowed(
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        allowed = ", ".join(self.allowed_methods())
        raise ScimError(405, f"{request.method} is not allowed here", headers={"Allow": allowed})

    def allowed_methods(self) -> list[str]:
        """The methods this endpoint answers (the Allow header of a 405)."""
        return ["GET"]


class NotFoundView(ScimBaseView):
    """Any URL under /scim/v2/ that names no endpoint (404 in the SCIM format)."""

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        raise ScimError(404, f"no SCIM endpoint at {request.path}")

    post = put = patch = delete = get


class NotImplementedView(ScimBaseView):
    """Endpoints the gateway does not offer: /Me, /Bulk, root /.search (RFC 7644 §3.12: 501)."""

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        raise ScimError(501, f"{request.path} is not supported by this service provider")

    post = put = patch = delete = get


class ReadOnlyView(ScimBaseView):
    """Discovery endpoints: GET only; other methods answer a SCIM 405."""

    http_method_names = ("get", "post", "put", "patch", "delete")

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return self.http_method_not_allowed(request)

    put = patch = delete = post

    def allowed_methods(self) -> list[str]:
        return ["GET"]


def _discovery(docs: dict[str, Any], key: str | None, what: str) -> HttpResponse:
    """One discovery document by key, or all of them as a complete ListResponse."""
    if key:
        if key not in docs:
            raise ScimError(404, f"no {what} {key!r}")
        return json_response(docs[key])
    items = list(docs.values())
    return json_response(list_response(items, len(items), 1))


class ServiceProviderConfigView(ReadOnlyView, scim_views.ServiceProviderConfigView):
    """GET /ServiceProviderConfig (RFC 7644 §4)."""

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return json_response(ScimServiceProviderConfig(request=request).to_dict())


class ResourceTypesView(ReadOnlyView, scim_views.ResourceTypesView):
    """GET /ResourceTypes[/{id}] with a complete ListResponse."""

    def get(self, request: HttpRequest, uuid: str | None = None, **kwargs: Any) -> HttpResponse:
        root = scim_root(request)
        return _discovery({r.name: r.to_dict(root) for r in RESOURCES}, uuid, "resource type")


class SchemasView(ReadOnlyView, scim_views.SchemasView):
    """GET /Schemas[/{uri}]: only the attributes the gateway stores."""

    def get(self, request: HttpRequest, uuid: str | None = None, **kwargs: Any) -> HttpResponse:
        root = scim_root(request)
        return _discovery({s.id: s.to_dict(root) for s in SCHEMAS}, uuid, "schema")


def _weak(tag: str) -> str:
    return tag.strip().removeprefix("W/")


def _matches(header: str, etag: str) -> bool:
    """Weak comparison of an If-Match / If-None-Match list against the current ETag."""
    wanted = [part.strip() for part in header.split(",") if part.strip()]
    return "*" in wanted or any(_weak(part) == _weak(etag) for part in wanted)


class ResourceView(ScimBaseView, ABC):
    """Shared GET/POST/PUT/PATCH/DELETE for Users and Groups (RFC 7644 §3.3-3.6, §3.14)."""

    kind: ClassVar[str]
    filters: ClassVar[FilterMap]
    http_method_names = ("get", "post", "put", "patch", "delete")

    @abstractmethod
    def queryset(self) -> QuerySet[Any]:
        """The kind's rows SCIM may see."""

    @abstractmethod
    def lookup(self, pk: int | None) -> Model:
        """One row by primary key (404 when missing)."""

    @abstractmethod
    def adapter(self, obj: Model) -> Adapter:
        """The django-scim2 adapter for a row."""

    @abstractmethod
    def new_object(self) -> Model:
        """An unsaved row for a create."""

    def get_object(self) -> Model:
        """The resource named in the URL; 404 for ids of another kind or unknown ones."""
        return self.lookup(decode_id(self.kind, self.kwargs.get("uuid")))  # type: ignore[arg-type]

    def render_one(self, adapter: Adapter, status: int = 200) -> HttpResponse:
        """One resource, with `attributes`/`excludedAttributes`, Location and ETag."""
        doc = adapter.to_dict()
        shown = project(
            adapter.resource,
            doc,
            self.request.GET.getlist("attributes"),
            self.request.GET.getlist("excludedAttributes"),
        )
        response = json_response(shown, status)
        response["Location"] = doc["meta"]["location"]
        response["ETag"] = doc["meta"]["version"]
        return response

    def check_precondition(self, adapter: Adapter) -> None:
        """If-Match on writes: 412 when the resource changed since it was read."""
        header = self.request.headers.get("If-Match")
        if header and not _matches(header, adapter.to_dict()["meta"]["version"]):
            raise ScimError(412, "the resource changed since it was read (If-Match)")

    def get(self, request: HttpRequest, uuid: str | None = None, **kwargs: Any) -> HttpResponse:
        if not uuid:
            return self.list_resources(
                request.GET.get("filter"),
                request.GET.get("startIndex"),
                request.GET.get("count"),
                request.GET.getlist("attributes"),
                request.GET.getlist("excludedAttributes"),
            )
        adapter = self.adapter(self.get_object())
        none_match = request.headers.get("If-None-Match")
        if none_match and _matches(none_match, adapter.to_dict()["meta"]["version"]):
            response = HttpResponse(status=304)
            response["ETag"] = adapter.to_dict()["meta"]["version"]
            return response
        return self.render_one(adapter)

    def list_resources(
        self,
        filter_text: str | None,
        start: Any,
        count: Any,
        attributes: list[str],
        excluded: list[str],
    ) -> HttpResponse:
        """A filtered page (RFC 7644 §3.4.2); a filter matching nothing gives an empty list."""
        start_index, page_size = paging(start, count)
        qs = self.queryset()
        if filter_text:
            qs = qs.filter(self.filters.q(filter_text)).distinct()
        qs = qs.order_by("pk")
        total = qs.count()
        rows = list(qs[start_index - 1 : start_index - 1 + page_size]) if page_size else []
        docs = []
        for row in rows:
            adapter = self.adapter(row)
            docs.append(project(adapter.resource, adapter.to_dict(), attributes, excluded))
        return json_response(list_response(docs, total, start_index))

    def post(self, request: HttpRequest, uuid: str | None = None, **kwargs: Any) -> HttpResponse:
        if uuid:
            return self.http_method_not_allowed(request)
        body = load_json(request.body)
        adapter = self.adapter(self.new_object())
        adapter.from_dict(body)
        adapter.save()
        return self.render_one(adapter, 201)

    def put(self, request: HttpRequest, uuid: str | None = None, **kwargs: Any) -> HttpResponse:
        if not uuid:
            return self.http_method_not_allowed(request)
        adapter = self.adapter(self.get_object())
        self.check_precondition(adapter)
        adapter.from_dict(load_json(request.body))
        adapter.save()
        return self.render_one(adapter)

    def patch(self, request: HttpRequest, uuid: str | None = None, **kwargs: Any) -> HttpResponse:
        if not uuid:
            return self.http_method_not_allowed(request)
        adapter = self.adapter(self.get_object())
        self.check_precondition(adapter)
        adapter.patch(load_json(request.body))
        adapter.save()
        return self.render_one(adapter)

    def delete(self, request: HttpRequest, uuid: str | None = None, **kwargs: Any) -> HttpResponse:
        if not uuid:
            return self.http_method_not_allowed(request)
        adapter = self.adapter(self.get_object())
        self.check_precondition(adapter)
        adapter.delete()
        return HttpResponse(status=204)

    def allowed_methods(self) -> list[str]:
        if self.kwargs.get("uuid"):
            return ["GET", "PUT", "PATCH", "DELETE"]
        return ["GET", "POST"]


class UsersView(ResourceView, scim_views.UsersView):
    """/Users and /Users/{id}."""

    kind = "User"
    filters = USER_FILTERS

    def queryset(self) -> QuerySet[Any]:
        return scim_user_queryset()

    def lookup(self, pk: int | None) -> Model:
        return scim_user_get(pk)

    def adapter(self, obj: Model) -> Adapter:
        return ScimUserAdapter(obj, request=self.request)  # type: ignore[arg-type]

    def new_object(self) -> Model:
        return User()


class GroupsView(ResourceView, scim_views.GroupsView):
    """/Groups and /Groups/{id}."""

    kind = "Group"
    filters = GROUP_FILTERS

    def queryset(self) -> QuerySet[Any]:
        return scim_group_queryset()

    def lookup(self, pk: int | None) -> Model:
        return scim_group_get(pk)

    def adapter(self, obj: Model) -> Adapter:
        return ScimGroupAdapter(obj, request=self.request)  # type: ignore[arg-type]

    def new_object(self) -> Model:
        return Team()


class SearchView(ScimBaseView):
    """POST /Users/.search and /Groups/.search (RFC 7644 §3.4.3)."""

    resource_view: ClassVar[type[ResourceView]]
    http_method_names = ("get", "post", "put", "patch", "delete")

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        body = load_json(request.body)
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object", "invalidSyntax")
        fields = {str(k).lower(): v for k, v in body.items()}
        schemas = fields.get("schemas")
        if not isinstance(schemas, list) or SEARCH_URN.lower() not in {
            str(s).lower() for s in schemas
        }:
            raise bad_request(f"'schemas' must be [\"{SEARCH_URN}\"]", "invalidSyntax")
        view = self.resource_view()
        view.setup(request)
        return view.list_resources(
            fields.get("filter"),
            fields.get("startindex"),
            fields.get("count"),
            _names(fields.get("attributes")),
            _names(fields.get("excludedattributes")),
        )

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return self.http_method_not_allowed(request)

    put = patch = delete = get

    def allowed_methods(self) -> list[str]:
        return ["POST"]


def _names(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise bad_request("attributes must be a list of attribute names", "invalidSyntax")


class UserSearchView(SearchView):
    resource_view = UsersView


class GroupSearchView(SearchView):
    resource_view = GroupsView


# --- console -------------------------------------------------------------------------------


class ScimTokenForm(forms.Form):
    """Regenerate: how long the previous token keeps working."""

    grace_period_days = forms.IntegerField(
        label="Grace period (days)",
        min_value=0,
        max_value=MAX_GRACE_DAYS,
        initial=1,
        help_text="The previous token keeps working this long, so the IdP can be updated.",
    )


class ScimTokenView(ConsoleView):
    """SCIM base URL, tokens in use, IdP group mappings; regenerate (the token is shown once)."""

    policy_permission = (Permission.SETTINGS_MANAGE,)
    template_name = "teams/scim_token.html"

    def context(self, name: str, form: ScimTokenForm) -> dict[str, Any]:
        return {
            "sso_name": name,
            "status": scim_token_status(name),
            "form": form,
            "mappings": scim_group_mappings(),
        }

    def get(self, request: HttpRequest, name: str) -> HttpResponse:
        """The status and the regenerate form."""
        return render(request, self.template_name, self.context(name, ScimTokenForm()))

    def post(self, request: HttpRequest, name: str) -> HttpResponse:
        """Issue a token and show it in this response only (never in a URL or the session)."""
        form = ScimTokenForm(request.POST)
        if form.is_valid():
            try:
                token, raw = scim_token_issue(
                    actor=self.principal,
                    sso_name=name,
                    grace_period_days=form.cleaned_data["grace_period_days"],
                )
            except (ValidationFailed, Conflict) as exc:
                form_error_apply(form, exc)
            else:
                context = {**self.context(name, ScimTokenForm()), "token": token, "raw_token": raw}
                return no_store(render(request, self.template_name, context))
        return render(request, self.template_name, self.context(name, form), status=400)
