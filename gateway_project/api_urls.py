"""`/api/v1/`: every app's API routes."""

from django.urls import include, path

from gateway_project.apply_api import ApplyApi, ExportApi

urlpatterns = [
    path("apply", ApplyApi.as_view(), name="apply"),
    path("export", ExportApi.as_view(), name="export"),
    path("", include("accounts.api.urls")),
    path("", include("teams.api.urls")),
    path("", include("providers.api.urls")),
    path("", include("dataaccess.api_urls")),
]
