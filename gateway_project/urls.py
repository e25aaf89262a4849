"""URL configuration: console, API, health and static files."""

from django.contrib.staticfiles.views import serve as static_serve
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from gateway_project import health
from teams.scim_urls import console_urlpatterns as scim_console_urlpatterns

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api_schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api_schema"), name="api_docs"),
    path("api/v1/", include("gateway_project.api_urls")),
    path("scim/v2/", include("teams.scim_urls")),
    path("", RedirectView.as_view(pattern_name="teams:team_list"), name="home"),
    path("", include("accounts.urls")),
    path("", include("teams.urls")),
    path("", include("accounts.sso_urls")),
    path("", include("providers.urls")),
    path("", include("dataaccess.urls")),
    path("", include(scim_console_urlpatterns)),
    # Static files straight from the app: no separate web server is needed in embedded mode.
    re_path(r"^static/(?P<path>.*)$", static_serve, {"insecure": True}),
]
