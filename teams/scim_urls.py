"""URLs of the SCIM 2.0 endpoint (included at `scim/v2/`) and of its console page.

The names match django-scim2's (`scim:users`, `scim:groups`, …), which its code reverses.
"""

from __future__ import annotations

from django.urls import URLPattern, path, re_path
from django.views.decorators.csrf import csrf_exempt

from teams import scim_views

app_name = "scim"

# Machine-to-machine with a bearer token: no cookies, so no CSRF.
urlpatterns = [
    re_path(r"^$", csrf_exempt(scim_views.NotFoundView.as_view()), name="root"),
    re_path(r"^\.search$", csrf_exempt(scim_views.NotImplementedView.as_view()), name="search"),
    re_path(
        r"^Users/\.search$",
        csrf_exempt(scim_views.UserSearchView.as_view()),
        name="users-search",
    ),
    re_path(
        r"^Users(?:/(?P<uuid>[^/]+))?$", csrf_exempt(scim_views.UsersView.as_view()), name="users"
    ),
    re_path(
        r"^Groups/\.search$",
        csrf_exempt(scim_views.GroupSearchView.as_view()),
        name="groups-search",
    ),
    re_path(
        r"^Groups(?:/(?P<uuid>[^/]+))?$",
        csrf_exempt(scim_views.GroupsView.as_view()),
        name="groups",
    ),
    re_path(r"^Me$", csrf_exempt(scim_views.NotImplementedView.as_view()), name="me"),
    re_path(r"^Bulk$", csrf_exempt(scim_views.NotImplementedView.as_view()), name="bulk"),
    re_path(
        r"^ServiceProviderConfig$",
        csrf_exempt(scim_views.ServiceProviderConfigView.as_view()),
        name="service-provider-config",
    ),
    re_path(
        r"^ResourceTypes(?:/(?P<uuid>[^/]+))?$",
        csrf_exempt(scim_views.ResourceTypesView.as_view()),
        name="resource-types",
    ),
    re_path(
        r"^Schemas(?:/(?P<uuid>.+))?$",
        csrf_exempt(scim_views.SchemasView.as_view()),
        name="schemas",
    ),
    re_path(r"^.*$", csrf_exempt(scim_views.NotFoundView.as_view()), name="not-found"),
]

# The console page, included at the site root under its own namespace.
console_urlpatterns: tuple[list[URLPattern], str] = (
    [
        path(
            "settings/sso/<slug:name>/scim/",
            scim_views.ScimTokenView.as_view(),
            name="scim_token",
        ),
    ],
    "scim_console",
)
