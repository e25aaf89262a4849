"""`/api/v1/`: every app's API routes."""

from django.urls import include, path

urlpatterns = [
    path("", include("accounts.api.urls")),
    path("", include("teams.api.urls")),
]
