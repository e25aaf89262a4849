"""Template helpers for the Models and MCP Servers pages: logos, roles and model costs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

from providers.models import MCP_SERVER_MANAGER, PROVIDER_ACCOUNT_MANAGER

register = template.Library()

LOGO_TEXT = {"openai": "AI", "anthropic": "A\\", "aws-bedrock": "aws", "mcp": "MCP"}
MANAGER_ROLES = {PROVIDER_ACCOUNT_MANAGER, MCP_SERVER_MANAGER}


@register.simple_tag
def provider_logo(kind: str, label: str = "") -> SafeString:
    """A small coloured tile standing in for the provider's logo."""
    return format_html(
        '<span class="provider-logo provider-{}" title="{}" aria-hidden="true">{}</span>',
        kind,
        label or kind,
        LOGO_TEXT.get(kind, kind[:2].upper()),
    )


@register.filter
def role_label(role_id: str) -> str:
    """`provider-account-manager` -> `Manager`; the access and user roles -> `User`."""
    return "Manager" if role_id in MANAGER_ROLES else "User"


@register.filter
def role_css(role_id: str) -> str:
    """The badge class of a collaborator role."""
    return "role-manager" if role_id in MANAGER_ROLES else "role-user"


def _price(value: Any) -> str:
    return f"${float(value):g}"


@register.filter
def model_cost(cost: Mapping[str, Any] | None) -> str:
    """A model's cost setting in words ("" when none is set)."""
    if not cost:
        return ""
    metric = cost.get("metric")
    value = cost.get("value") or {}
    if metric == "public_cost":
        return "Public pricing"
    if metric == "per_1000_tokens":
        return f"{_price(value.get('input', 0))} in · {_price(value.get('output', 0))} out / 1K"
    if metric == "per_1000_embedding_tokens":
        return f"{_price(value.get('input', 0))} / 1K tokens"
    return str(metric or "")
