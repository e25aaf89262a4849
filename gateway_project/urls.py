"""URL configuration: console, API, health and static files."""

from django.contrib.staticfiles.views import serve as static_serve
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from gateway_project import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api_schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api_schema"), name="api_docs"),
    path("api/v1/", include("gateway_project.api_urls")),
    path("", RedirectView.as_view(pattern_name="teams:team_list"), name="home"),
    path("", include("accounts.urls")),
    path("", include("teams.urls")),
    path("", include("providers.urls")),
    # Static files straight from the app: no separate web server is needed in embedded mode.
    re_path(r"^static/(?P<path>.*)$", static_serve, {"insecure": True}),
]
