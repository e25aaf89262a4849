"""API routes for request logs, MCP tool calls and metrics (included under /api/v1/)."""

from django.urls import path

from dataaccess import api

app_name = "dataaccess-api"

urlpatterns = [
    path("request-logs", api.RequestLogListApi.as_view(), name="request_log_list"),
    path("request-logs.csv", api.RequestLogCsvApi.as_view(), name="request_log_csv"),
    path("request-logs/<str:log_id>", api.RequestLogDetailApi.as_view(), name="request_log_detail"),
    path("mcp-calls", api.McpCallListApi.as_view(), name="mcp_call_list"),
    path("mcp-calls/<str:call_id>", api.McpCallDetailApi.as_view(), name="mcp_call_detail"),
    path("metrics/timeseries", api.MetricsTimeseriesApi.as_view(), name="metrics_timeseries"),
    path(
        "metrics/distribution",
        api.MetricsDistributionApi.as_view(),
        name="metrics_distribution",
    ),
    path("metrics/leaderboard", api.MetricsLeaderboardApi.as_view(), name="metrics_leaderboard"),
    path(
        "metrics/mcp/timeseries",
        api.McpMetricsTimeseriesApi.as_view(),
        name="mcp_metrics_timeseries",
    ),
    path(
        "metrics/mcp/distribution",
        api.McpMetricsDistributionApi.as_view(),
        name="mcp_metrics_distribution",
    ),
    path(
        "metrics/mcp/leaderboard",
        api.McpMetricsLeaderboardApi.as_view(),
        name="mcp_metrics_leaderboard",
    ),
]
