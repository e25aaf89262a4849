"""Console template helpers: the permission-aware sidebar, sortable headers, JSON and labels."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django import template
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from accounts.forms import permission_label as _permission_label
from accounts.policy import Permission, Principal, holds_any

register = template.Library()


# Feather-style icon bodies (24x24, stroke); constants, never user input.
ICONS = {
    "lock": '<rect x="3" y="11" width="18" height="11" rx="2"/>'
    '<path d="M7 11V7a5 5 0 0 1 10 0v4"/>',
    "user": '<path d="M20 21v-2a4 4 0 0 0-4-4H8a4 4 0 0 0-4 4v2"/><circle cx="12" cy="7" r="4"/>',
    "users": '<path d="M17 21v-2a4 4 0 0 0-4-4H5a4 4 0 0 0-4 4v2"/><circle cx="9" cy="7" r="4"/>'
    '<path d="M23 21v-2a4 4 0 0 0-3-3.87"/><path d="M16 3.13a4 4 0 0 1 0 7.75"/>',
    "shield": '<path d="M12 22s8-4 8-10V5l-8-3-8 3v7c0 6 8 10 8 10z"/>',
    "cpu": '<rect x="4" y="4" width="16" height="16" rx="2"/>'
    '<rect x="9" y="9" width="6" height="6"/>'
    '<path d="M9 1v3M15 1v3M9 20v3M15 20v3M20 9h3M20 14h3M1 9h3M1 14h3"/>',
    "key": '<circle cx="7.5" cy="15.5" r="5.5"/><path d="M11.4 11.6 21 2M16 7l3 3M19 4l2 2"/>',
    "box": '<path d="M21 16V8a2 2 0 0 0-1-1.73l-7-4a2 2 0 0 0-2 0l-7 4A2 2 0 0 0 3 8v8a2 2 0 0 0 '
    '1 1.73l7 4a2 2 0 0 0 2 0l7-4A2 2 0 0 0 21 16z"/><path d="M3.27 6.96 12 12.01l8.73-5.05'
    'M12 22.08V12"/>',
    "server": '<rect x="2" y="2" width="20" height="8" rx="2"/><rect x="2" y="14" width="20" '
    'height="8" rx="2"/><path d="M6 6h.01M6 18h.01"/>',
    "sliders": '<path d="M4 21v-7M4 10V3M12 21v-9M12 8V3M20 21v-5M20 12V3M1 14h6M9 8h6M17 16h6"/>',
    "activity": '<path d="M22 12h-4l-3 9L9 3l-3 9H2"/>',
    "chart": '<path d="M12 20V10M18 20V4M6 20v-4"/>',
    "file": '<path d="M14 2H6a2 2 0 0 0-2 2v16a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2V8z"/>'
    '<path d="M14 2v6h6M16 13H8M16 17H8"/>',
    "code": '<path d="m16 18 6-6-6-6M8 6l-6 6 6 6"/>',
}


@dataclass(frozen=True)
class NavItem:
    """One sidebar link, with its sub-links."""

    label: str
    icon: str
    url: str = ""
    active: bool = False
    children: tuple[NavItem, ...] = ()

    @property
    def svg(self) -> SafeString:
        """The icon's SVG markup."""
        return mark_safe(ICONS[self.icon])  # noqa: S308  (constant markup above)


@dataclass(frozen=True)
class NavSection:
    """A titled group of sidebar items (title "" for a top-level entry)."""

    title: str
    items: list[NavItem] = field(default_factory=list)


def _link(label: str, icon: str, url_name: str, view_name: str, prefix: str) -> NavItem:
    return NavItem(label, icon, reverse(url_name), view_name.startswith(prefix))


def _may_read_virtual_accounts(principal: Principal) -> bool:
    """Tenant-wide readers, and those who may read them in some team (as va_list filters)."""
    if principal.holds(Permission.VIRTUAL_ACCOUNT_READ):
        return True
    return any(
        Permission.VIRTUAL_ACCOUNT_READ in granted
        for granted in principal.team_permissions.values()
    )


def _may_see_resources(principal: Principal, kind: str, *tenant_wide: Permission) -> bool:
    """Whether the principal collaborates on any resource of `kind` or may read them all."""
    if holds_any(principal, *tenant_wide):
        return True
    return any(resource_kind == kind for resource_kind, _id in principal.resource_roles)


def _gateway_items(principal: Principal, view_name: str) -> list[NavItem]:
    """Models and MCP Servers for those who may see any; Controls; Monitor for everyone."""
    items = []
    if _may_see_resources(
        principal,
        "provider-account",
        Permission.PROVIDER_ACCOUNT_READ,
        Permission.PROVIDER_ACCOUNT_MANAGE,
        Permission.PROVIDER_ACCOUNT_CREATE,
    ):
        items.append(
            _link(
                "Models",
                "box",
                "providers:provider_account_list",
                view_name,
                "providers:provider_account_",
            )
        )
    if _may_see_resources(
        principal,
        "mcp-server",
        Permission.MCP_SERVER_READ,
        Permission.MCP_SERVER_MANAGE,
        Permission.MCP_SERVER_CREATE,
    ):
        items.append(
            _link("MCP Servers", "server", "providers:mcp_server_list", view_name, "providers:mcp_")
        )
    if holds_any(principal, Permission.GATEWAY_CONTROLS_LIST, Permission.GATEWAY_CONTROLS_MANAGE):
        items.append(
            _link(
                "Controls (Data Access)",
                "sliders",
                "dataaccess:data_access",
                view_name,
                "dataaccess:data_access",
            )
        )
    # Everyone signed in: the Data Access rules decide what each person sees there.
    requests = NavItem(
        "Requests",
        "activity",
        reverse("dataaccess:request_list"),
        view_name.startswith(("dataaccess:request_", "dataaccess:mcp_call_")),
    )
    metrics = _link("Metrics", "chart", "dataaccess:metrics", view_name, "dataaccess:metrics")
    items.append(
        NavItem(
            "Monitor",
            "activity",
            requests.url,
            requests.active or metrics.active,
            (requests, metrics),
        )
    )
    return items


def navigation(principal: Principal, view_name: str) -> list[NavSection]:
    """The sidebar for `principal`: only what they may use."""
    if not principal.is_user:
        return []
    platform = NavSection("Platform")
    if holds_any(principal, Permission.SETTINGS_LIST, Permission.SETTINGS_MANAGE):
        platform.items.append(_link("Settings (SSO)", "lock", "sso:settings", view_name, "sso:"))
        platform.items.append(
            _link(
                "Secret Stores",
                "lock",
                "accounts:secret_store_list",
                view_name,
                "accounts:secret_store_",
            )
        )
    platform.items.append(
        _link("Apply YAML", "code", "accounts:manifest_apply", view_name, "accounts:manifest_")
    )
    access = NavSection("Access")
    if holds_any(principal, Permission.USER_LIST, Permission.USER_MANAGE):
        access.items.append(
            _link("Users", "user", "accounts:user_list", view_name, "accounts:user_")
        )
    access.items.append(_link("Teams", "users", "teams:team_list", view_name, "teams:"))
    if holds_any(principal, Permission.ROLE_LIST, Permission.ROLE_MANAGE):
        access.items.append(
            _link("Roles", "shield", "accounts:role_list", view_name, "accounts:role_")
        )
    if _may_read_virtual_accounts(principal):
        access.items.append(
            _link(
                "Virtual Account Tokens",
                "cpu",
                "accounts:virtual_account_list",
                view_name,
                "accounts:virtual_account_",
            )
        )
    access.items.append(
        _link("Personal Access Tokens", "key", "accounts:pat_list", view_name, "accounts:pat_")
    )
    gateway = NavSection("AI Gateway", _gateway_items(principal, view_name))
    audit = NavSection("")
    if principal.holds(Permission.SETTINGS_LIST):
        audit.items.append(
            _link("Audit log", "file", "accounts:audit_list", view_name, "accounts:audit_")
        )
    return [s for s in (platform, access, gateway, audit) if s.items]


@register.inclusion_tag("_nav.html", takes_context=True)
def console_nav(context: template.Context) -> dict[str, Any]:
    """Render the sidebar for the request's principal."""
    request: HttpRequest | None = context.get("request")
    principal: Principal = context.get("principal") or Principal.anonymous()
    match = getattr(request, "resolver_match", None)
    view_name = (match.view_name if match else "") or ""
    return {"sections": navigation(principal, view_name)}


@register.simple_tag(takes_context=True)
def sort_header(context: template.Context, key: str, label: str) -> SafeString:
    """A sortable `<th>`: a link that toggles `?sort=key` / `?sort=-key` and keeps filters."""
    request: HttpRequest = context["request"]
    current = str(context.get("sort", ""))
    params = request.GET.copy()
    params.pop("page", None)
    params["sort"] = f"-{key}" if current == key else key
    state = {key: "ascending", f"-{key}": "descending"}.get(current, "none")
    arrow = {"ascending": "↑", "descending": "↓"}.get(state, "")
    return format_html(
        '<th aria-sort="{}"><a class="sort-link" href="?{}">{}<span class="sort-arrow">{}</span>'
        "</a></th>",
        state,
        params.urlencode(),
        label,
        arrow,
    )


@register.filter
def pretty_json(value: Any) -> str:
    """Indented JSON for before/after blocks (escaped by the template as usual)."""
    if value is None:
        return ""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


@register.filter
def permission_label(value: str) -> str:
    """`team:ManageTeam` -> `Manage team`."""
    return _permission_label(str(value))
