"""Routes of the per-user MCP OAuth flow, to be listed in `providers.urls` (namespace providers)."""

from django.urls import path

from providers import oauth

urlpatterns = [
    path("mcp/oauth/callback", oauth.McpOAuthCallbackView.as_view(), name="mcp_oauth_callback"),
    path(
        "mcp/oauth/<slug:name>/connect",
        oauth.McpOAuthConnectView.as_view(),
        name="mcp_oauth_connect",
    ),
]
