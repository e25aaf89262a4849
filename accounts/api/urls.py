from django.urls import path

from accounts.api import va_views, views

app_name = "accounts-api"

urlpatterns = [
    path("me", views.MeApi.as_view(), name="me"),
    path("users", views.UserListApi.as_view(), name="user_list"),
    path("users/<int:pk>", views.UserDetailApi.as_view(), name="user_detail"),
    path("roles", views.RoleListApi.as_view(), name="role_list"),
    path("roles/<slug:slug>", views.RoleDetailApi.as_view(), name="role_detail"),
    path("role-bindings", views.RoleBindingListApi.as_view(), name="role_binding_list"),
    path(
        "role-bindings/<slug:name>",
        views.RoleBindingDetailApi.as_view(),
        name="role_binding_detail",
    ),
    path("personal-access-tokens", views.PatListApi.as_view(), name="pat_list"),
    path("personal-access-tokens/<int:pk>", views.PatDetailApi.as_view(), name="pat_detail"),
    path("audit-events", views.AuditEventListApi.as_view(), name="audit_event_list"),
    path("virtual-accounts", va_views.VirtualAccountListApi.as_view(), name="va_list"),
    path(
        "virtual-accounts/<str:name>", va_views.VirtualAccountDetailApi.as_view(), name="va_detail"
    ),
    path(
        "virtual-accounts/<str:name>/regenerate-token",
        va_views.VirtualAccountRegenerateApi.as_view(),
        name="va_regenerate",
    ),
    path(
        "virtual-accounts/<str:name>/get-token",
        va_views.VirtualAccountGetTokenApi.as_view(),
        name="va_get_token",
    ),
    path(
        "virtual-accounts/<str:name>/sync", va_views.VirtualAccountSyncApi.as_view(), name="va_sync"
    ),
]
