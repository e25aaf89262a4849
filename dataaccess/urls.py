"""Console routes: Monitor > Requests and Metrics, Controls > Data Access."""

from django.urls import path

from dataaccess import views

app_name = "dataaccess"
urlpatterns = [
    path("monitor/requests/", views.RequestListView.as_view(), name="request_list"),
    path(
        "monitor/requests/<uuid:log_id>/", views.RequestDetailView.as_view(), name="request_detail"
    ),
    path("monitor/mcp-calls/", views.McpCallListView.as_view(), name="mcp_call_list"),
    path(
        "monitor/mcp-calls/<uuid:call_id>/",
        views.McpCallDetailView.as_view(),
        name="mcp_call_detail",
    ),
    path("monitor/metrics/", views.MetricsView.as_view(), name="metrics"),
    path("controls/data-access/", views.DataAccessView.as_view(), name="data_access"),
    path("controls/data-access/edit/", views.DataAccessEditView.as_view(), name="data_access_edit"),
]
