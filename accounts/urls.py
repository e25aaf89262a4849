"""Console routes for sign-in, invitations, users, roles, role bindings, tokens and audit."""

from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import views
from accounts.console_yaml import ManifestApplyView
from accounts.va_urls import urlpatterns as va_urlpatterns

app_name = "accounts"
urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("invite/<str:token>/", views.InvitationAcceptView.as_view(), name="invitation_accept"),
    path("users/", views.UserListView.as_view(), name="user_list"),
    path("users/invite/", views.UserInviteView.as_view(), name="user_invite"),
    path("users/<int:pk>/", views.UserDetailView.as_view(), name="user_detail"),
    path("users/<int:pk>/update/", views.UserUpdateView.as_view(), name="user_update"),
    path("users/<int:pk>/active/", views.UserSetActiveView.as_view(), name="user_set_active"),
    path(
        "users/<int:pk>/resend-invite/",
        views.UserInvitationResendView.as_view(),
        name="user_invitation_resend",
    ),
    path("roles/", views.RoleListView.as_view(), name="role_list"),
    # "new" is a valid role or binding name: "-" is not, so "-/new/" can never shadow one.
    path("roles/-/new/", views.RoleCreateView.as_view(), name="role_create"),
    path("roles/<slug:slug>/", views.RoleDetailView.as_view(), name="role_detail"),
    path("roles/<slug:slug>/edit/", views.RoleEditView.as_view(), name="role_edit"),
    path("roles/<slug:slug>/delete/", views.RoleDeleteView.as_view(), name="role_delete"),
    path("roles/<slug:slug>/yaml/", views.RoleYamlView.as_view(), name="role_yaml"),
    path("role-bindings/", views.RoleBindingListView.as_view(), name="role_binding_list"),
    path("role-bindings/-/new/", views.RoleBindingCreateView.as_view(), name="role_binding_create"),
    path(
        "role-bindings/<slug:name>/edit/",
        views.RoleBindingEditView.as_view(),
        name="role_binding_edit",
    ),
    path(
        "role-bindings/<slug:name>/delete/",
        views.RoleBindingDeleteView.as_view(),
        name="role_binding_delete",
    ),
    path(
        "role-bindings/<slug:name>/yaml/",
        views.RoleBindingYamlView.as_view(),
        name="role_binding_yaml",
    ),
    path("apply/", ManifestApplyView.as_view(), name="manifest_apply"),
    path("tokens/", views.PatListView.as_view(), name="pat_list"),
    path("tokens/new/", views.PatCreateView.as_view(), name="pat_create"),
    path("tokens/<int:pk>/revoke/", views.PatRevokeView.as_view(), name="pat_revoke"),
    path("audit/", views.AuditListView.as_view(), name="audit_list"),
    path("audit/<int:pk>/", views.AuditDetailView.as_view(), name="audit_detail"),
]
# Access > Virtual Account Tokens and Platform > Settings > Secret stores.
urlpatterns += va_urlpatterns
