"""SSO pages: Platform > Settings > SSO in the console, and the OpenID Connect endpoints.

Console views parse input, call one accounts.sso service or selector and render. The OIDC
login and callback views are allauth's, run with accounts.sso_adapters.GatewayOIDCAdapter (the
one that checks the nonce); the SAML endpoints are allauth's own (see accounts.sso_urls).
"""

from __future__ import annotations

from typing import Any

from allauth.socialaccount.models import SocialApp
from allauth.socialaccount.providers.oauth2.views import OAuth2CallbackView, OAuth2LoginView
from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts import sso
from accounts.console import ConsoleView, form_error_apply
from accounts.models import SsoConfig
from accounts.policy import Permission, PolicyDenied
from accounts.sso_adapters import GatewayOIDCAdapter
from gateway_project.errors import ValidationFailed
from teams.scim_services import scim_token_status

INVALID_FORM = 400
TEXTAREA = {"rows": 5, "spellcheck": "false", "class": "mono"}


# --- OpenID Connect endpoints --------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def oidc_login(request: HttpRequest, provider_id: str) -> HttpResponse:
    """Start sign-in with the enabled OIDC configuration `provider_id` (POST from the button)."""
    try:
        view = OAuth2LoginView.adapter_view(GatewayOIDCAdapter(request, provider_id))
        response: HttpResponse = view(request)
    except SocialApp.DoesNotExist as exc:
        raise Http404("no such sign-in method") from exc
    return response


@require_http_methods(["GET"])
def oidc_callback(request: HttpRequest, provider_id: str) -> HttpResponse:
    """The redirect URI registered at the OpenID Provider."""
    try:
        view = OAuth2CallbackView.adapter_view(GatewayOIDCAdapter(request, provider_id))
        response: HttpResponse = view(request)
    except SocialApp.DoesNotExist as exc:
        raise Http404("no such sign-in method") from exc
    return response


# --- console ---------------------------------------------------------------------------------


class SsoConfigForm(forms.Form):
    """Every field of an SSO configuration; the client secret is write-only."""

    name = forms.CharField(max_length=64, help_text="Lower-case letters, digits and '-'.")
    enabled = forms.BooleanField(
        required=False,
        help_text="Enabling checks the identity provider first; a failing configuration can "
        "still be saved disabled.",
    )
    provider = forms.ChoiceField(choices=SsoConfig.Provider.choices)
    protocol = forms.ChoiceField(choices=SsoConfig.Protocol.choices)
    client_id = forms.CharField(label="Client ID", required=False)
    client_secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only: leave blank to keep the stored secret.",
    )
    issuer = forms.CharField(label="Issuer URL", required=False)
    discover_endpoints = forms.BooleanField(
        required=False, initial=True, help_text="Read the endpoints from the issuer's discovery."
    )
    authorization_endpoint = forms.CharField(required=False)
    token_endpoint = forms.CharField(required=False)
    userinfo_endpoint = forms.CharField(required=False)
    jwks_uri = forms.CharField(label="JWKS URI", required=False)
    scopes = forms.CharField(initial="openid email profile")
    idp_metadata_url = forms.CharField(label="IdP metadata URL", required=False)
    idp_metadata_xml = forms.CharField(
        label="IdP metadata XML", required=False, widget=forms.Textarea(attrs=TEXTAREA)
    )
    idp_entity_id = forms.CharField(label="IdP entity ID", required=False)
    idp_sso_url = forms.CharField(label="IdP SSO URL", required=False)
    idp_certificate = forms.CharField(
        label="IdP signing certificate (PEM)",
        required=False,
        widget=forms.Textarea(attrs=TEXTAREA),
    )
    sp_entity_id = forms.CharField(
        label="SP entity ID", required=False, help_text="Default: the SP metadata URL."
    )
    enable_scim = forms.BooleanField(label="Enable SCIM", required=False)
    button_text = forms.CharField(required=False, help_text='Default: "Login with SSO".')
    button_image_url = forms.CharField(required=False)
    email_claim = forms.CharField(initial="email")
    unique_id_claim = forms.CharField(label="Unique ID claim", initial="sub")
    groups_claim = forms.CharField(required=False)
    admin_groups = forms.CharField(
        label="Tenant admin groups",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        help_text="role_mapping.tenant_admin: one group per line. Members of these groups "
        "become tenant admins; others become members.",
    )
    provisioning = forms.ChoiceField(choices=SsoConfig.Provisioning.choices)
    local_login = forms.ChoiceField(label="Password sign-in", choices=SsoConfig.LocalLogin.choices)

    def spec(self) -> sso.SsoConfigSpec:
        """The cleaned data as a service spec."""
        data = self.cleaned_data
        groups = [g.strip() for g in data["admin_groups"].splitlines() if g.strip()]
        values = {k: v for k, v in data.items() if k != "admin_groups"}
        values["client_secret"] = data["client_secret"] or None
        values["role_mapping"] = {"tenant_admin": groups} if groups else {}
        return sso.SsoConfigSpec(**values)


def form_initial(config: SsoConfig) -> dict[str, Any]:
    """A configuration as form values (never its secret)."""
    initial: dict[str, Any] = {"name": config.name}
    for name in sso.SPEC_FIELDS:
        initial[name] = getattr(config, name)
    initial["admin_groups"] = "\n".join(config.role_mapping.get("tenant_admin") or [])
    return initial


ALIASES = {"role_mapping": "admin_groups"}


def _page(
    request: HttpRequest,
    form: SsoConfigForm,
    config: SsoConfig | None,
    *,
    can_manage: bool,
    status: int = 200,
    result: sso.CheckResult | None = None,
) -> HttpResponse:
    info = sso.sp_info(config, request.build_absolute_uri) if config is not None else None
    context = {
        "form": form,
        "config": config,
        "info": info,
        "can_manage": can_manage,
        "result": result,
        "has_secret": bool(config and config.client_secret),
        # SCIM hangs off SAML settings (as in the mirrored product): its URL and tokens.
        "scim": scim_token_status(config.name)
        if config is not None and config.enable_scim
        else None,
    }
    if not can_manage:
        for field in form.fields.values():
            field.disabled = True
    return render(request, "accounts/sso_config_form.html", context, status=status)


class SsoSettingsView(ConsoleView):
    """The SSO configurations and the external identity providers."""

    policy_permission = (Permission.SETTINGS_LIST, Permission.SETTINGS_MANAGE)

    def get(self, request: HttpRequest) -> HttpResponse:
        """The list page."""
        try:
            external = list(sso.external_idp_list(self.principal))
        except PolicyDenied:
            external = None
        context = {
            "configs": sso.sso_config_list(self.principal),
            "external": external,
            "can_manage": self.principal.holds(Permission.SETTINGS_MANAGE),
            "restricted": sso.local_login_restricted(),
        }
        return render(request, "accounts/sso_settings.html", context)


class SsoConfigCreateView(ConsoleView):
    """A new configuration (saved disabled unless its IdP answers)."""

    policy_permission = (Permission.SETTINGS_MANAGE,)

    def get(self, request: HttpRequest) -> HttpResponse:
        """The empty form."""
        initial: dict[str, Any] = {"scopes": "openid email profile", "email_claim": "email"}
        initial |= {"unique_id_claim": "sub", "discover_endpoints": True}
        return _page(request, SsoConfigForm(initial=initial), None, can_manage=True)

    def post(self, request: HttpRequest) -> HttpResponse:
        """Create it; errors stay on their fields."""
        form = SsoConfigForm(request.POST)
        if form.is_valid():
            spec = form.spec()
            if SsoConfig.objects.filter(name=spec.name).exists():
                form.add_error("name", "a configuration with this name already exists")
            else:
                try:
                    config, _ = sso.sso_config_put(actor=self.principal, spec=spec)
                except ValidationFailed as exc:
                    form_error_apply(form, exc, ALIASES)
                else:
                    messages.success(request, f"Saved SSO configuration {config.name}.")
                    return redirect("sso:config_edit", name=config.name)
        return _page(request, form, None, can_manage=True, status=INVALID_FORM)


class SsoConfigEditView(ConsoleView):
    """One configuration: its form, the URLs to register at the IdP, and "Test"."""

    policy_permission = (Permission.SETTINGS_LIST, Permission.SETTINGS_MANAGE)

    def get(self, request: HttpRequest, name: str) -> HttpResponse:
        """The filled form (read-only without settings:ManageSettings)."""
        config = sso.sso_config_get_for(self.principal, name)
        form = SsoConfigForm(initial=form_initial(config))
        form.fields["name"].disabled = True
        can_manage = self.principal.holds(Permission.SETTINGS_MANAGE)
        return _page(request, form, config, can_manage=can_manage)

    def post(self, request: HttpRequest, name: str) -> HttpResponse:
        """Save; the name is the configuration's identity and cannot change."""
        config = sso.sso_config_get_for(self.principal, name)
        if not self.principal.holds(Permission.SETTINGS_MANAGE):
            raise PolicyDenied(Permission.SETTINGS_MANAGE, "read-only")
        data = request.POST.copy()
        data["name"] = config.name
        form = SsoConfigForm(data)
        form.fields["name"].disabled = True
        form.fields["name"].initial = config.name
        if form.is_valid():
            try:
                sso.sso_config_put(actor=self.principal, spec=form.spec())
            except ValidationFailed as exc:
                form_error_apply(form, exc, ALIASES)
            else:
                messages.success(request, f"Saved SSO configuration {config.name}.")
                return redirect("sso:config_edit", name=config.name)
        return _page(request, form, config, can_manage=True, status=INVALID_FORM)


class SsoConfigTestView(ConsoleView):
    """Check the saved configuration against its IdP and show what happened."""

    http_method_names = ("post",)
    policy_permission = (Permission.SETTINGS_MANAGE,)

    def post(self, request: HttpRequest, name: str) -> HttpResponse:
        """Run the check; the result is shown above the form."""
        config = sso.sso_config_get_for(self.principal, name)
        result = sso.sso_config_test(actor=self.principal, config=config)
        form = SsoConfigForm(initial=form_initial(config))
        form.fields["name"].disabled = True
        return _page(request, form, config, can_manage=True, result=result)


class SsoConfigDeleteView(ConsoleView):
    """Delete a configuration (its users keep their accounts)."""

    http_method_names = ("post",)
    policy_permission = (Permission.SETTINGS_MANAGE,)

    def post(self, request: HttpRequest, name: str) -> HttpResponse:
        """Delete and go back to the list."""
        config = sso.sso_config_get_for(self.principal, name)
        sso.sso_config_delete(actor=self.principal, config=config)
        messages.success(request, f"Deleted SSO configuration {name}.")
        return redirect("sso:settings")
