"""`{% sso_login_buttons %}`: the login page's "Login with SSO" buttons, one per enabled IdP."""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse

from accounts import sso
from accounts.models import SsoConfig

register = template.Library()


def _login_url(config: SsoConfig) -> str:
    if config.protocol == SsoConfig.Protocol.OIDC:
        return reverse("openid_connect_login", kwargs={"provider_id": config.name})
    return reverse("saml_login", args=[config.name])


@register.inclusion_tag("accounts/_sso_buttons.html", takes_context=True)
def sso_login_buttons(context: template.Context) -> dict[str, Any]:
    """Buttons that POST (with CSRF) to each enabled IdP's login URL, keeping `next`."""
    request = context.get("request")
    buttons = [
        (config.label, config.button_image_url, _login_url(config))
        for config in sso.sso_login_options()
    ]
    return {
        "buttons": buttons,
        "next": context.get("next", ""),
        "restricted": bool(buttons) and sso.local_login_restricted(),
        "request": request,
        "csrf_token": context.get("csrf_token"),
    }
