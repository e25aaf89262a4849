"""Console forms for teams; rules live in teams.services."""

from __future__ import annotations

import re

from django import forms

from teams.models import TeamMembership

EMAILS_HELP = "Emails of existing users, separated by commas or new lines."


class EmailListField(forms.CharField):
    """Comma- or newline-separated emails as a de-duplicated list (existence is checked later)."""

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("help_text", EMAILS_HELP)
        kwargs.setdefault(
            "widget",
            forms.Textarea(
                attrs={"rows": 3, "spellcheck": "false", "placeholder": "a@example.com"}
            ),
        )
        super().__init__(**kwargs)  # type: ignore[arg-type]

    def to_python(self, value: object) -> list[str]:  # type: ignore[override]
        """Split, strip and lower-case; keep the first occurrence of each address."""
        text = super().to_python(value)
        emails = [part.strip().lower() for part in re.split(r"[,\n\r;]+", text or "")]
        return list(dict.fromkeys(e for e in emails if e))


class TeamCreateForm(forms.Form):
    """A new team: name, description and its first members and managers."""

    name = forms.CharField(
        max_length=36,
        help_text="3-36 characters: letters, digits, '-' and '_'. It cannot be changed later.",
        widget=forms.TextInput(attrs={"autofocus": True, "placeholder": "platform-team"}),
    )
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    members = EmailListField()
    managers = EmailListField()


class TeamUpdateForm(forms.Form):
    """A team's description."""

    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))


class TeamMemberAddForm(forms.Form):
    """Add one user, by email, as a member or a manager."""

    email = forms.EmailField(widget=forms.EmailInput(attrs={"placeholder": "user@example.com"}))
    role = forms.ChoiceField(choices=TeamMembership.Role.choices, widget=forms.HiddenInput)


class TeamMemberRemoveForm(forms.Form):
    """Remove one user as a member or a manager."""

    user = forms.IntegerField(widget=forms.HiddenInput)
    role = forms.ChoiceField(choices=TeamMembership.Role.choices, widget=forms.HiddenInput)
