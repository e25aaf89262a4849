"""Console pages for Access > Virtual Account Tokens.

Each view parses input, takes the request's principal, calls one service or selector of
accounts.virtual_accounts and renders; the services decide what is allowed (accounts.console
maps PolicyDenied to 403 and ObjectNotFound to 404). Raw tokens appear only in the body of the
POST response that produced them, with `no_store`: never in a URL, a session, a flash or a log.
Changes after creation go through "Apply using YAML", as for MCP servers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib import messages
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from accounts import virtual_accounts as va
from accounts.console import ConsoleView, form_error_apply, no_store, paginate
from accounts.console_yaml import ObjectYamlView, YamlTarget
from accounts.models import TokenSecret, VirtualAccount
from accounts.policy import Permission, Principal, require
from accounts.va_forms import (
    CREATE_ALIASES,
    TokenRegenerateForm,
    VirtualAccountCreateForm,
    creatable_teams,
    va_form_choices,
)
from gateway_project.errors import Conflict, ValidationFailed

INVALID_FORM = 400
ACCESS_CRUMBS = (("Access", ""),)
SUMMARY_CHIPS = 3
RECENT_SECRETS = 10

VIRTUAL_ACCOUNT_STARTER = """\
# A virtual account: a token for an application, owned by a team, with its own grants.
# Applying it issues a token: fetch it once with "Get token", or from its secret store.
type: virtual-account
name: my-app
ownedBy:
  team: my-team
permissions:
  - role_id: provider-account-access
    resource_type: provider-account
    resource_fqn: my-openai
auto_rotate:
  auto_rotate_interval: 90
  grace_period: 7
"""


# --- what the pages show -----------------------------------------------------------------------


def permission_label(role_id: str, fqn: str) -> str:
    """`provider-account-access` on `openai-main` -> `openai-main (every model)`."""
    if role_id == "provider-account-access":
        return f"{fqn} (every model)"
    if role_id == "mcp-server-user":
        return f"MCP {fqn}"
    return fqn


@dataclass(frozen=True)
class SyncStatus:
    """The secret-store badge: a label, its colour and a tooltip."""

    label: str
    css: str
    title: str


def sync_status(account: VirtualAccount) -> SyncStatus | None:
    """None without a store; else failed, synced or pending."""
    if account.secret_store is None:
        return None
    where = f"{account.secret_store.name}: {account.secret_path}"
    if account.sync_error:
        return SyncStatus("Sync failed", "badge-red", f"{where} — {account.sync_error}")
    if account.synced_at is not None:
        return SyncStatus("Synced", "badge-green", where)
    return SyncStatus("Pending", "badge-amber", where)


@dataclass(frozen=True)
class AccountRow:
    """One row of the list, from prefetched relations only (no query per row)."""

    account: VirtualAccount
    permissions: Sequence[str]
    more_permissions: int
    sync: SyncStatus | None


def account_row(account: VirtualAccount) -> AccountRow:
    """The list row of one account."""
    labels = sorted(permission_label(p.role_id, p.resource_fqn) for p in account.permissions.all())
    return AccountRow(
        account=account,
        permissions=labels[:SUMMARY_CHIPS],
        more_permissions=max(0, len(labels) - SUMMARY_CHIPS),
        sync=sync_status(account),
    )


@dataclass(frozen=True)
class SecretRow:
    """One version of the account's token (never its value)."""

    prefix: str
    state: str
    state_css: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    retrievable: bool


STATE_CSS = {
    TokenSecret.State.NEXT: "badge-blue",
    TokenSecret.State.CURRENT: "badge-green",
    TokenSecret.State.PREVIOUS: "badge-amber",
    TokenSecret.State.RETIRED: "badge-grey",
}


def secret_rows(account: VirtualAccount) -> tuple[int | None, list[SecretRow]]:
    """(token id, its most recent versions, newest first)."""
    token = account.tokens.order_by("pk").first()
    if token is None:
        return None, []
    secrets = token.secrets.order_by("-created_at", "-pk")[:RECENT_SECRETS]
    return token.pk, [
        SecretRow(
            prefix=s.prefix,
            state=s.state,
            state_css=STATE_CSS.get(TokenSecret.State(s.state), "badge-grey"),
            created_at=s.created_at,
            expires_at=s.expires_at,
            last_used_at=s.last_used_at,
            retrievable=bool(s.undelivered) and s.state == TokenSecret.State.CURRENT,
        )
        for s in secrets
    ]


def notification_summary(target: Any) -> str:
    """Where notifications go (a webhook's signing secret is never shown)."""
    if not isinstance(target, dict):
        return ""
    kind = target.get("type", "")
    if kind == "email":
        return "Email: " + ", ".join(str(e) for e in target.get("to_emails") or [])
    if kind == "slack-webhook":
        return "Slack webhook"
    if kind == "webhook":
        signed = " (signed)" if target.get("secret") else ""
        return f"Webhook {target.get('url', '')}{signed}"
    return str(kind)


def detail_page(
    request: HttpRequest,
    principal: Principal,
    account: VirtualAccount,
    *,
    form: TokenRegenerateForm | None = None,
    status: int = 200,
) -> HttpResponse:
    """The account's page: manifest fields, permissions and the "Manage tokens" section."""
    token_id, secrets = secret_rows(account)
    team_id = account.owner_team_id
    context = {
        "account": account,
        "permissions": sorted(account.permissions.all(), key=lambda p: (p.role_id, p.resource_fqn)),
        "notification": notification_summary(account.notification_target),
        "sync": sync_status(account),
        "token_id": token_id,
        "secrets": secrets,
        "retrievable": any(s.retrievable for s in secrets),
        "regenerate_form": form
        or TokenRegenerateForm(initial={"grace_period_days": account.grace_period_days}),
        "can_manage": principal.holds(Permission.VIRTUAL_ACCOUNT_MANAGE, team_id=team_id),
        "can_delete": principal.holds(Permission.VIRTUAL_ACCOUNT_DELETE, team_id=team_id),
    }
    return render(request, "accounts/va_detail.html", context, status=status)


def token_page(
    request: HttpRequest,
    account: VirtualAccount,
    raw: str,
    *,
    action: str,
    grace_days: int | None = None,
) -> HttpResponse:
    """The one response that shows a raw token: never cached, never stored."""
    context = {"account": account, "raw_token": raw, "action": action, "grace_days": grace_days}
    return no_store(render(request, "accounts/va_token.html", context))


# --- list and create ---------------------------------------------------------------------------


class VirtualAccountListView(ConsoleView):
    """Virtual accounts the principal may read: tenant-wide readers all, managers their teams'."""

    def get(self, request: HttpRequest) -> HttpResponse:
        """The list page (search by account or owner team name)."""
        search = request.GET.get("q", "").strip()
        accounts = va.va_list(self.principal)
        if search:
            accounts = accounts.filter(
                Q(name__icontains=search) | Q(owner_team__name__icontains=search)
            )
        page = paginate(request, accounts.order_by("name"))
        context = {
            "page": page,
            "rows": [account_row(a) for a in page],
            "q": search,
            "can_create": bool(creatable_teams(self.principal)),
        }
        return render(request, "accounts/va_list.html", context)


class VirtualAccountCreateView(ConsoleView):
    """A new virtual account; its token is shown once, in the response to the POST."""

    template_name = "accounts/va_create.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        """The empty form."""
        form = VirtualAccountCreateForm(choices=va_form_choices(self.principal))
        return self.page(request, form)

    def post(self, request: HttpRequest) -> HttpResponse:
        """Create the account and show its token."""
        form = VirtualAccountCreateForm(request.POST, choices=va_form_choices(self.principal))
        if form.is_valid():
            try:
                account, raw = va.va_create(actor=self.principal, spec=form.spec())
            except Conflict as exc:
                form.add_error("name", exc.message)
            except ValidationFailed as exc:
                form_error_apply(form, exc, CREATE_ALIASES)
            else:
                messages.success(request, f"Created virtual account {account.name}.")
                return token_page(request, account, raw, action="created")
        return self.page(request, form, status=INVALID_FORM)

    def page(
        self, request: HttpRequest, form: VirtualAccountCreateForm, status: int = 200
    ) -> HttpResponse:
        """The form (kept out of caches: a webhook secret may be typed here)."""
        context = {"form": form, "has_teams": bool(form.fields["owner_team"].choices[1:])}  # type: ignore[attr-defined]
        return no_store(render(request, self.template_name, context, status=status))


# --- one account -------------------------------------------------------------------------------


class VirtualAccountDetailView(ConsoleView):
    """One account: its manifest fields, permissions and tokens."""

    def get(self, request: HttpRequest, name: str) -> HttpResponse:
        """The account page."""
        account = va.va_get_for(self.principal, name)
        return detail_page(request, self.principal, account)


class VirtualAccountRegenerateView(ConsoleView):
    """Regenerate the token now; the old one keeps working for the chosen grace period."""

    http_method_names = ("post",)

    def post(self, request: HttpRequest, name: str) -> HttpResponse:
        """Issue the new token and show it once."""
        account = va.va_get_for(self.principal, name)
        form = TokenRegenerateForm(request.POST)
        if form.is_valid():
            try:
                _token, raw = va.va_token_regenerate(
                    actor=self.principal,
                    account=account,
                    grace_period_days=form.cleaned_data["grace_period_days"],
                )
            except ValidationFailed as exc:
                form_error_apply(form, exc)
            else:
                return token_page(
                    request,
                    account,
                    raw,
                    action="regenerated",
                    grace_days=form.cleaned_data["grace_period_days"],
                )
        return detail_page(request, self.principal, account, form=form, status=INVALID_FORM)


class VirtualAccountGetTokenView(ConsoleView):
    """ "Get token": the current token, once, when it was never delivered."""

    http_method_names = ("post",)

    def post(self, request: HttpRequest, name: str) -> HttpResponse:
        """Show the token, or say why it cannot be shown."""
        account = va.va_get_for(self.principal, name)
        try:
            raw = va.va_token_reveal(actor=self.principal, account=account)
        except Conflict as exc:
            messages.error(request, exc.message)
            return redirect("accounts:virtual_account_detail", name=account.name)
        return token_page(request, account, raw, action="retrieved")


class VirtualAccountSyncView(ConsoleView):
    """ "Sync now": queue a write of the current token to the account's secret store."""

    http_method_names = ("post",)

    def post(self, request: HttpRequest, name: str) -> HttpResponse:
        """Queue the sync and go back to the account."""
        account = va.va_get_for(self.principal, name)
        try:
            va.va_sync_request(actor=self.principal, account=account)
        except ValidationFailed as exc:
            messages.error(request, exc.message)
        else:
            messages.success(
                request, "Sync queued: the token is being written to the secret store."
            )
        return redirect("accounts:virtual_account_detail", name=account.name)


class VirtualAccountDeleteView(ConsoleView):
    """Delete an account; its tokens stop working."""

    def get(self, request: HttpRequest, name: str) -> HttpResponse:
        """Ask for confirmation (403 for those who may read the account but not delete it)."""
        account = va.va_get_for(self.principal, name)
        require(self.principal, Permission.VIRTUAL_ACCOUNT_DELETE, team_id=account.owner_team_id)
        return render(request, "accounts/va_delete.html", {"account": account})

    def post(self, request: HttpRequest, name: str) -> HttpResponse:
        """Delete it."""
        account = va.va_get_for(self.principal, name)
        va.va_delete(actor=self.principal, account=account)
        messages.success(request, f"Deleted virtual account {name}.")
        return redirect("accounts:virtual_account_list")


class VirtualAccountYamlView(ObjectYamlView):
    """A virtual account's manifest: view, preview and apply changes."""

    manifest_types = ("virtual-account",)
    starter_label = "Virtual account"
    starter = VIRTUAL_ACCOUNT_STARTER

    def target(self, **kwargs: Any) -> YamlTarget:
        """The account named by the URL, if the principal may read it."""
        account = va.va_get_for(self.principal, kwargs["name"])
        return YamlTarget(
            manifest_type="virtual-account",
            name=account.name,
            url=reverse("accounts:virtual_account_detail", args=[account.name]),
            can_change=self.principal.holds(
                Permission.VIRTUAL_ACCOUNT_MANAGE, team_id=account.owner_team_id
            ),
            breadcrumbs=(
                *ACCESS_CRUMBS,
                ("Virtual Account Tokens", reverse("accounts:virtual_account_list")),
            ),
        )

    @classmethod
    def url_for_name(cls, name: str) -> str | None:
        """The account's page."""
        return reverse("accounts:virtual_account_detail", args=[name])
