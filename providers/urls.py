"""Console routes for AI Gateway > Models (provider accounts) and AI Gateway > MCP Servers."""

from django.urls import path

from providers import oauth_urls, views

app_name = "providers"
urlpatterns = [
    path("models/", views.ProviderAccountListView.as_view(), name="provider_account_list"),
    # "-" is not a valid account name, so "-/new/" can never shadow an account.
    path(
        "models/-/new/", views.ProviderAccountCreateView.as_view(), name="provider_account_create"
    ),
    path(
        "models/<slug:name>/",
        views.ProviderAccountDetailView.as_view(),
        name="provider_account_detail",
    ),
    path(
        "models/<slug:name>/access/",
        views.ProviderAccountAccessView.as_view(),
        name="provider_account_access",
    ),
    path(
        "models/<slug:name>/settings/",
        views.ProviderAccountSettingsView.as_view(),
        name="provider_account_settings",
    ),
    path(
        "models/<slug:name>/test-connection/",
        views.ProviderAccountTestView.as_view(),
        name="provider_account_test",
    ),
    path(
        "models/<slug:name>/delete/",
        views.ProviderAccountDeleteView.as_view(),
        name="provider_account_delete",
    ),
    path(
        "models/<slug:name>/yaml/",
        views.ProviderAccountYamlView.as_view(),
        name="provider_account_yaml",
    ),
    path("mcp-servers/", views.McpServerListView.as_view(), name="mcp_server_list"),
    path("mcp-servers/<slug:name>/", views.McpServerDetailView.as_view(), name="mcp_server_detail"),
    path(
        "mcp-servers/<slug:name>/access/",
        views.McpServerAccessView.as_view(),
        name="mcp_server_access",
    ),
    path(
        "mcp-servers/<slug:name>/delete/",
        views.McpServerDeleteView.as_view(),
        name="mcp_server_delete",
    ),
    path(
        "mcp-servers/<slug:name>/yaml/", views.McpServerYamlView.as_view(), name="mcp_server_yaml"
    ),
]

# Per-user OAuth for `oauth2` MCP servers (connect, callback).
urlpatterns += oauth_urls.urlpatterns
