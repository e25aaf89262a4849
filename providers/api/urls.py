from django.urls import path

from providers.api import views

app_name = "providers-api"

urlpatterns = [
    path("provider-accounts", views.ProviderAccountListApi.as_view(), name="account_list"),
    path(
        "provider-accounts/<str:name>",
        views.ProviderAccountDetailApi.as_view(),
        name="account_detail",
    ),
    path(
        "provider-accounts/<str:name>/test-connection",
        views.ProviderAccountTestApi.as_view(),
        name="account_test",
    ),
    path("mcp-servers", views.McpServerListApi.as_view(), name="mcp_server_list"),
    path("mcp-servers/<str:name>", views.McpServerDetailApi.as_view(), name="mcp_server_detail"),
]
