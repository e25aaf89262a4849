"""Console forms for virtual accounts: create, regenerate a token.

Forms parse and shape input only; every rule lives in accounts.virtual_accounts. The choices
offered (owner teams, grantable resources, secret stores) come from `va_form_choices`, which
asks the same policy module the service asks, so the form offers what the service accepts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from django import forms
from django.utils import timezone
from pydantic import ValidationError as PydanticValidationError

from accounts import virtual_accounts as va
from accounts.models import SecretStore
from accounts.notify import notification_target_parse
from accounts.policy import Permission, Principal, decide
from providers.selectors import mcp_server_list, provider_account_list
from teams.models import EVERYONE, Team

EXPIRATION_CHOICES = [
    ("never", "No expiration"),
    ("7", "7 days"),
    ("14", "14 days"),
    ("30", "30 days"),
    ("90", "90 days"),
    ("365", "365 days"),
]
NOTIFY_CHOICES = [
    ("", "No notifications"),
    ("email", "Email"),
    ("slack-webhook", "Slack incoming webhook"),
    ("webhook", "Webhook (signed JSON POST)"),
]
ROTATE_CHOICES = [("", "Only when regenerated"), ("on", "Rotate automatically")]
DEFAULT_INTERVAL_DAYS = 360
DEFAULT_GRACE_DAYS = 30
MAX_GRACE_DAYS = 365
SEP = "|"  # role_id|resource_fqn in a permission choice's value; neither part holds it

# Service field paths -> form fields (see accounts.console.form_error_apply).
CREATE_ALIASES = {
    "ownedBy.team": "owner_team",
    "permissions": "permissions",
    "expiration_date": "expiration",
    "auto_rotate.auto_rotate_interval": "rotate_interval_days",
    "auto_rotate.grace_period": "grace_period_days",
    "secret_store_config.integration_fqn": "secret_store",
    "secret_store_config.secret_path": "secret_path",
    "notification_target": "notify_type",
}


@dataclass(frozen=True)
class VaFormChoices:
    """What a principal may pick when creating a virtual account."""

    teams: list[tuple[str, str]]
    permissions: list[tuple[str, list[tuple[str, str]]]]  # grouped for the widget
    stores: list[tuple[str, str]]


def creatable_teams(principal: Principal) -> list[Team]:
    """Teams the principal may create virtual accounts for (never `everyone`)."""
    qs = Team.objects.exclude(name=EVERYONE).order_by("name")
    if not principal.holds(Permission.VIRTUAL_ACCOUNT_CREATE):
        ids = [
            team_id
            for team_id, granted in principal.team_permissions.items()
            if Permission.VIRTUAL_ACCOUNT_CREATE in granted
        ]
        qs = qs.filter(pk__in=ids)
    return list(qs)


def grantable_permissions(principal: Principal) -> list[tuple[str, list[tuple[str, str]]]]:
    """Provider accounts, models and MCP servers the principal may use, as grouped choices.

    The same `decide()` questions the service asks when it resolves a permission, so nothing
    offered here is refused for lack of rights.
    """
    accounts: list[tuple[str, str]] = []
    models: list[tuple[str, str]] = []
    for account in provider_account_list(principal):
        resource = ("provider-account", account.pk)
        if decide(principal, Permission.PROVIDER_ACCOUNT_USE, resource=resource).allowed:
            accounts.append(
                (f"provider-account-access{SEP}{account.name}", f"{account.name} (every model)")
            )
        for model in account.models.all():
            target = (account.pk, model.name)
            if decide(principal, Permission.PROVIDER_ACCOUNT_USE, target=target).allowed:
                ref = f"{account.name}/{model.name}"
                models.append((f"provider-integration-access{SEP}{ref}", ref))
    servers = [
        (f"mcp-server-user{SEP}{server.name}", server.name)
        for server in mcp_server_list(principal)
        if decide(principal, Permission.MCP_SERVER_USE, resource=("mcp-server", server.pk)).allowed
    ]
    groups = [
        ("Provider accounts", accounts),
        ("Models", models),
        ("MCP servers", servers),
    ]
    return [(label, items) for label, items in groups if items]


def secret_store_choices() -> list[tuple[str, str]]:
    """Every configured store by name (names only: a store's settings stay on its page)."""
    rows = SecretStore.objects.order_by("name").values_list("name", "kind")
    labels = dict(SecretStore.Kind.choices)
    return [("", "None"), *((name, f"{name} ({labels.get(kind, kind)})") for name, kind in rows)]


def va_form_choices(principal: Principal) -> VaFormChoices:
    """The choices of the create form for `principal`."""
    return VaFormChoices(
        teams=[(t.name, t.name) for t in creatable_teams(principal)],
        permissions=grantable_permissions(principal),
        stores=secret_store_choices(),
    )


@dataclass(frozen=True)
class PermissionOption:
    """One checkbox: a role on a resource."""

    value: str
    label: str
    role_id: str
    checked: bool


@dataclass(frozen=True)
class PermissionGroup:
    label: str
    options: list[PermissionOption]


def _lines(value: str) -> list[str]:
    return [part.strip() for part in re.split(r"[,\n\r;]+", value or "") if part.strip()]


class VirtualAccountCreateForm(forms.Form):
    """A new virtual account: its manifest fields, as a form."""

    name = forms.CharField(
        max_length=36,
        help_text="3-36 lower-case letters, digits and '-'. It cannot be changed later.",
        widget=forms.TextInput(attrs={"autofocus": True, "placeholder": "billing-bot"}),
    )
    owner_team = forms.ChoiceField(
        label="Owner team",
        help_text="Managers of this team manage the account; its usage counts as the team's.",
    )
    permissions = forms.MultipleChoiceField(
        widget=forms.CheckboxSelectMultiple,
        help_text="What the token may use. You can grant only what you may use yourself.",
    )
    expiration = forms.ChoiceField(
        choices=EXPIRATION_CHOICES,
        initial="never",
        help_text="The token stops working after this day. It cannot be changed later.",
    )
    auto_rotate = forms.ChoiceField(
        label="Rotation",
        choices=ROTATE_CHOICES,
        required=False,
        help_text="A rotated token is written to the secret store and the old one keeps"
        " working for the grace period.",
    )
    rotate_interval_days = forms.IntegerField(
        label="Rotate every (days)",
        min_value=va.MIN_ROTATE_DAYS,
        initial=DEFAULT_INTERVAL_DAYS,
        required=False,
        help_text=f"At least {va.MIN_ROTATE_DAYS} days.",
    )
    grace_period_days = forms.IntegerField(
        label="Grace period (days)",
        min_value=1,
        max_value=MAX_GRACE_DAYS,
        initial=DEFAULT_GRACE_DAYS,
        required=False,
        help_text="How long the previous token keeps working after a rotation.",
    )
    notify_type = forms.ChoiceField(label="Notify", choices=NOTIFY_CHOICES, required=False)
    to_emails = forms.CharField(
        label="Email addresses",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false"}),
        help_text="Separated by commas or new lines.",
    )
    slack_webhook_url = forms.CharField(
        label="Slack webhook URL",
        required=False,
        max_length=500,
        widget=forms.TextInput(attrs={"placeholder": "https://hooks.slack.com/services/..."}),
    )
    webhook_url = forms.CharField(label="Webhook URL", required=False, max_length=500)
    webhook_secret = forms.CharField(
        label="Signing secret",
        required=False,
        max_length=500,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Optional: requests then carry an X-Gateway-Signature HMAC.",
    )
    secret_store = forms.ChoiceField(
        required=False,
        help_text="The token is written there at creation and on every rotation.",
    )
    secret_path = forms.CharField(
        required=False,
        max_length=500,
        widget=forms.TextInput(attrs={"placeholder": "gateway/billing-bot"}),
        help_text="Where in the store: letters, digits, '/', '-' and '_'.",
    )

    def __init__(self, *args: Any, choices: VaFormChoices, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        fields = self.fields
        fields["owner_team"].choices = [("", "Choose a team"), *choices.teams]  # type: ignore[attr-defined]
        fields["permissions"].choices = choices.permissions  # type: ignore[attr-defined]
        fields["secret_store"].choices = choices.stores  # type: ignore[attr-defined]

    def permission_groups(self) -> list[PermissionGroup]:
        """The grantable resources as checkbox groups, with the submitted ones checked."""
        chosen = set(self["permissions"].value() or [])
        groups = []
        for label, items in self.fields["permissions"].choices:  # type: ignore[attr-defined]
            options = [
                PermissionOption(value, text, value.partition(SEP)[0], value in chosen)
                for value, text in items
            ]
            groups.append(PermissionGroup(label, options))
        return groups

    def clean(self) -> dict[str, Any] | None:
        """Rotation needs its numbers; a store needs a path; a target must be deliverable."""
        data = super().clean()
        if data is None:
            return data
        if data.get("auto_rotate") == "on":
            for name in ("rotate_interval_days", "grace_period_days"):
                if data.get(name) is None and name not in self.errors:
                    self.add_error(name, "Required when the token rotates automatically.")
        if data.get("secret_store") and not data.get("secret_path"):
            self.add_error("secret_path", "Required with a secret store.")
        target = self.notification_target()
        if target is not None:
            try:
                notification_target_parse(target)
            except PydanticValidationError as exc:
                for err in exc.errors():
                    field = _NOTIFY_FIELDS.get(data.get("notify_type") or "", "notify_type")
                    self.add_error(field, err["msg"].removeprefix("Value error, "))
        return data

    def notification_target(self) -> dict[str, Any] | None:
        """The `notification_target` manifest object, or None."""
        data = self.cleaned_data
        kind = data.get("notify_type") or ""
        if kind == "email":
            return {"type": "email", "to_emails": _lines(data.get("to_emails", ""))}
        if kind == "slack-webhook":
            return {"type": "slack-webhook", "webhook_url": data.get("slack_webhook_url", "")}
        if kind == "webhook":
            target = {"type": "webhook", "url": data.get("webhook_url", "")}
            if data.get("webhook_secret"):
                target["secret"] = data["webhook_secret"]
            return target
        return None

    def expiration_date(self) -> date | None:
        """The chosen lifetime as a last valid day (UTC), or None."""
        value = self.cleaned_data["expiration"]
        if value == "never":
            return None
        return timezone.now().date() + timedelta(days=int(value))

    def spec(self) -> va.VirtualAccountSpec:
        """The service-level spec of the valid form."""
        data = self.cleaned_data
        permissions: Sequence[va.PermissionSpec] = [
            va.PermissionSpec(role, va.ROLE_RESOURCE.get(role, ""), fqn)
            for role, _sep, fqn in (value.partition(SEP) for value in data["permissions"])
        ]
        rotation = (
            va.RotationSpec(data["rotate_interval_days"], data["grace_period_days"])
            if data.get("auto_rotate") == "on"
            else None
        )
        store = data.get("secret_store") or ""
        return va.VirtualAccountSpec(
            name=data["name"].strip(),
            owner_team=data["owner_team"],
            permissions=permissions,
            expiration_date=self.expiration_date(),
            rotation=rotation,
            notification_target=self.notification_target(),
            secret_store=store,
            secret_path=data.get("secret_path", "").strip() if store else "",
        )


_NOTIFY_FIELDS = {
    "email": "to_emails",
    "slack-webhook": "slack_webhook_url",
    "webhook": "webhook_url",
}


class TokenRegenerateForm(forms.Form):
    """Regenerate: how long the old token keeps working (0 retires it at once)."""

    grace_period_days = forms.IntegerField(
        label="Grace period (days)",
        min_value=0,
        max_value=MAX_GRACE_DAYS,
        help_text="The current token keeps working this long; 0 stops it immediately.",
    )
