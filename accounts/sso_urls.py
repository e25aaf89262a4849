"""SSO routes: the console's Settings > SSO pages (namespace `sso`) and the protocol endpoints.

The protocol endpoints keep allauth's URL names (`openid_connect_callback`, `saml_acs`, ...)
outside any namespace, because allauth reverses them by those names.
"""

from allauth.socialaccount.providers.saml import views as saml_views
from django.urls import include, path

from accounts import sso_views

console_patterns = [
    path("", sso_views.SsoSettingsView.as_view(), name="settings"),
    # "-" is not a valid configuration name, so "-/new/" never shadows one.
    path("-/new/", sso_views.SsoConfigCreateView.as_view(), name="config_create"),
    path("<slug:name>/", sso_views.SsoConfigEditView.as_view(), name="config_edit"),
    path("<slug:name>/test/", sso_views.SsoConfigTestView.as_view(), name="config_test"),
    path("<slug:name>/delete/", sso_views.SsoConfigDeleteView.as_view(), name="config_delete"),
]

protocol_patterns = [
    path("oidc/<slug:provider_id>/login/", sso_views.oidc_login, name="openid_connect_login"),
    path(
        "oidc/<slug:provider_id>/login/callback/",
        sso_views.oidc_callback,
        name="openid_connect_callback",
    ),
    path("saml/<slug:organization_slug>/login/", saml_views.login, name="saml_login"),
    path("saml/<slug:organization_slug>/acs/", saml_views.acs, name="saml_acs"),
    path(
        "saml/<slug:organization_slug>/acs/finish/", saml_views.finish_acs, name="saml_finish_acs"
    ),
    path("saml/<slug:organization_slug>/sls/", saml_views.sls, name="saml_sls"),
    path("saml/<slug:organization_slug>/metadata/", saml_views.metadata, name="saml_metadata"),
]

# No module-level `app_name`: it would namespace the protocol endpoints too.
CONSOLE_NAMESPACE = "sso"
urlpatterns = [
    path("settings/sso/", include((console_patterns, CONSOLE_NAMESPACE))),
    path("sso/", include(protocol_patterns)),
]
