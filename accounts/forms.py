"""Console forms for users, roles, role bindings, personal access tokens and the audit log.

Forms parse and shape input only; every rule lives in accounts.services.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.utils import timezone

from accounts.models import AuditEvent, Role
from accounts.policy import ALL_PERMISSIONS, TEAM_SCOPED_PERMISSIONS, Permission
from accounts.services import GrantRef, SubjectRef

TEXTAREA = {"rows": 4, "spellcheck": "false"}


class LoginForm(AuthenticationForm):
    """Email and password; authentication goes through accounts.backends.EmailBackend."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        username = self.fields["username"]
        username.label = "Email"
        username.widget = forms.EmailInput(
            attrs={"autofocus": True, "autocomplete": "email", "placeholder": "you@example.com"}
        )
        self.fields["password"].widget.attrs["autocomplete"] = "current-password"

    def confirm_login_allowed(self, user: Any) -> None:
        """Also refuses non-admins while SSO limits password sign-in to break-glass admins."""
        super().confirm_login_allowed(user)
        from accounts.sso import password_login_allowed

        if not password_login_allowed(user):
            raise forms.ValidationError(
                "Password sign-in is limited to administrators: use your organisation's "
                "single sign-on above.",
                code="sso_required",
            )


class InvitationAcceptForm(forms.Form):
    """A new password, typed twice; its strength is checked by the service."""

    password1 = forms.CharField(
        label="Password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password", "autofocus": True}),
    )
    password2 = forms.CharField(
        label="Confirm password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean(self) -> dict[str, Any] | None:
        """Both passwords must match."""
        data = super().clean()
        if data and data.get("password1") != data.get("password2"):
            self.add_error("password2", "The two passwords do not match.")
        return data


def _role_choices(roles: Iterable[Role]) -> list[tuple[str, str]]:
    return [(role.slug, role.display_name) for role in roles]


class UserInviteForm(forms.Form):
    """Who to invite and which tenant role they start with."""

    email = forms.EmailField(widget=forms.EmailInput(attrs={"autofocus": True}))
    display_name = forms.CharField(max_length=150, required=False)
    tenant_role = forms.ChoiceField(label="Tenant role")

    def __init__(self, *args: Any, roles: Iterable[Role], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["tenant_role"].choices = _role_choices(roles)  # type: ignore[attr-defined]


class UserUpdateForm(forms.Form):
    """A user's display name and tenant role."""

    display_name = forms.CharField(max_length=150, required=False)
    tenant_role = forms.ChoiceField(label="Tenant role", required=False)

    def __init__(self, *args: Any, roles: Iterable[Role], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["tenant_role"].choices = _role_choices(roles)  # type: ignore[attr-defined]


# --- roles -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PermissionOption:
    """One checkbox of the permission picker."""

    value: str
    action: str
    label: str
    checked: bool
    team_scoped: bool


@dataclass(frozen=True)
class PermissionGroup:
    """The permissions of one resource type (`team:*`, `user:*`...)."""

    resource: str
    options: list[PermissionOption]


def permission_label(value: str) -> str:
    """`team:ManageTeam` -> `Manage team`."""
    action = value.partition(":")[2] or value
    words = re.findall(r"[A-Z][a-z]*|[a-z]+", action)
    return " ".join([words[0], *[w.lower() for w in words[1:]]]) if words else action


def permission_groups(
    available: Iterable[Permission], checked: Iterable[str]
) -> list[PermissionGroup]:
    """`available` grouped by resource type, in the order Permission declares them."""
    chosen = set(checked)
    wanted = set(available)
    groups: dict[str, list[PermissionOption]] = {}
    for permission in Permission:
        if permission not in wanted:
            continue
        resource, _, action = permission.value.partition(":")
        groups.setdefault(resource, []).append(
            PermissionOption(
                value=permission.value,
                action=action,
                label=permission_label(permission.value),
                checked=permission.value in chosen,
                team_scoped=permission in TEAM_SCOPED_PERMISSIONS,
            )
        )
    return [PermissionGroup(resource, options) for resource, options in groups.items()]


def available_permissions(resource_type: str) -> frozenset[Permission]:
    """What a role of `resource_type` may hold: team roles only the team-scoped ones."""
    if resource_type == Role.ResourceType.TEAM:
        return TEAM_SCOPED_PERMISSIONS
    return ALL_PERMISSIONS


class _PermissionsMixin(forms.Form):
    """A permission checkbox list rendered grouped by resource type."""

    permissions = forms.MultipleChoiceField(
        required=False,
        choices=sorted((p.value, p.value) for p in ALL_PERMISSIONS),
        widget=forms.CheckboxSelectMultiple,
    )
    picker: frozenset[Permission] = ALL_PERMISSIONS

    def permission_groups(self) -> list[PermissionGroup]:
        """Groups for the template, with the submitted or initial choices ticked."""
        if self.is_bound:
            checked: Sequence[str] = self.data.getlist("permissions")  # type: ignore[attr-defined]
        else:
            checked = self.initial.get("permissions", [])
        return permission_groups(self.picker, checked)


class RoleCreateForm(_PermissionsMixin):
    """A custom role: name, resource type and permissions."""

    slug = forms.CharField(
        label="Name",
        max_length=64,
        help_text="3-64 lower-case letters, digits and '-', starting with a letter.",
        widget=forms.TextInput(attrs={"autofocus": True, "placeholder": "billing-auditor"}),
    )
    display_name = forms.CharField(max_length=100, required=False)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    resource_type = forms.ChoiceField(
        label="Applies to",
        choices=Role.ResourceType.choices,
        initial=Role.ResourceType.TENANT,
        help_text="Team roles are granted on one team and hold only team-scoped permissions.",
    )

    field_order = ("slug", "display_name", "description", "resource_type", "permissions")


class RoleEditForm(_PermissionsMixin):
    """A role's display name, description and permissions (its name and scope are fixed)."""

    display_name = forms.CharField(max_length=100, required=False)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args: Any, resource_type: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.picker = available_permissions(resource_type)
        field = self.fields["permissions"]
        field.choices = sorted((p.value, p.value) for p in self.picker)  # type: ignore[attr-defined]


# --- role bindings -----------------------------------------------------------------------


def _lines(text: str) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


class RoleBindingForm(forms.Form):
    """Subjects and grants as lines: `user:<email>`, `team:<name>`, `team:<team>:<role>`."""

    name = forms.SlugField(
        max_length=64,
        help_text="Lower-case letters, digits and '-'.",
        widget=forms.TextInput(attrs={"placeholder": "platform-admins"}),
    )
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    subjects = forms.CharField(
        widget=forms.Textarea(
            attrs={**TEXTAREA, "placeholder": "user:alice@example.com\nteam:platform"}
        ),
        help_text="One per line: user:<email> or team:<team name>.",
    )
    grants = forms.CharField(
        label="Roles granted",
        widget=forms.Textarea(
            attrs={
                **TEXTAREA,
                "placeholder": "tenant:org:billing-auditor\nteam:platform:team-admin",
            }
        ),
        help_text="One per line: tenant:<anything>:<role> or team:<team name>:<role>.",
    )

    def __init__(self, *args: Any, fixed_name: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if fixed_name:
            self.fields["name"].disabled = True

    def clean_subjects(self) -> list[SubjectRef]:
        """`type:name` lines as SubjectRefs (the service resolves and checks them)."""
        refs = []
        for line in _lines(self.cleaned_data["subjects"]):
            kind, sep, name = line.partition(":")
            if not sep or not name.strip():
                raise forms.ValidationError(f"'{line}' is not user:<email> or team:<name>.")
            refs.append(SubjectRef(type=kind.strip().lower(), name=name.strip()))
        return refs

    def clean_grants(self) -> list[GrantRef]:
        """`resourceType:resourceFqn:role` lines as GrantRefs."""
        refs = []
        for line in _lines(self.cleaned_data["grants"]):
            kind, sep, rest = line.partition(":")
            fqn, sep2, role = rest.rpartition(":")
            if not (sep and sep2 and fqn.strip() and role.strip()):
                raise forms.ValidationError(
                    f"'{line}' is not tenant:<anything>:<role> or team:<team>:<role>."
                )
            refs.append(
                GrantRef(resource_type=kind.strip().lower(), resource_fqn=fqn.strip(), role=role)
            )
        return refs


# --- personal access tokens --------------------------------------------------------------

EXPIRY_CHOICES = [
    ("never", "No expiry"),
    ("7", "7 days"),
    ("30", "30 days"),
    ("90", "90 days"),
    ("365", "365 days"),
]


class PatCreateForm(forms.Form):
    """A token's name and lifetime."""

    name = forms.CharField(
        max_length=64,
        widget=forms.TextInput(attrs={"autofocus": True, "placeholder": "ci-pipeline"}),
    )
    expiry = forms.ChoiceField(choices=EXPIRY_CHOICES, initial="30")

    def expires_at(self) -> datetime | None:
        """The chosen expiry as a moment, or None for a token that does not expire."""
        value = self.cleaned_data["expiry"]
        return None if value == "never" else timezone.now() + timedelta(days=int(value))


# --- audit log ---------------------------------------------------------------------------

TARGET_TYPES = ("user", "team", "role", "rolebinding", "personalaccesstoken")


class AuditFilterForm(forms.Form):
    """Audit log filters (all optional, combined with AND)."""

    actor = forms.CharField(required=False, widget=forms.TextInput(attrs={"placeholder": "Actor"}))
    action = forms.CharField(
        required=False, widget=forms.TextInput(attrs={"placeholder": "Action, e.g. team.created"})
    )
    target_type = forms.CharField(
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "Target type", "list": "target-types"}),
    )
    target = forms.CharField(
        required=False, widget=forms.TextInput(attrs={"placeholder": "Target"})
    )
    source = forms.ChoiceField(
        required=False, choices=[("", "Any source"), *AuditEvent.Source.choices]
    )

    def filters(self) -> dict[str, str]:
        """The valid filters as selector keyword arguments."""
        if not self.is_valid():
            return {}
        return {key: str(value).strip() for key, value in self.cleaned_data.items() if value}
