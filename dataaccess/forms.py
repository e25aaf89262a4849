"""Console forms: the Data Access rules as a formset, one form per rule."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django import forms

from gateway_project.errors import ValidationFailed

SCOPES = [
    ("own_data", "Own data: requests the subject made"),
    ("team_data", "Team data: requests of the subject's teams and their virtual accounts"),
    ("all_data", "All data (optionally narrowed by filters)"),
]
DATA_TYPES = [("traces", "Request logs and traces"), ("metrics", "Metrics and charts")]


def _lines(text: str) -> list[str]:
    return [
        part.strip() for chunk in text.splitlines() for part in chunk.split(",") if part.strip()
    ]


class RuleForm(forms.Form):
    """One rule; filters are written as `key: value, value` lines and a list of subjects."""

    id = forms.CharField(label="Rule id", max_length=62, required=False)
    description = forms.CharField(max_length=500, required=False)
    enabled = forms.BooleanField(required=False, initial=True)
    subjects = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        required=False,
        help_text="user:<email>, team:<name>, virtualaccount:<name> or role:<role>; "
        "one per line or comma-separated.",
    )
    data_types = forms.MultipleChoiceField(
        label="Data types",
        choices=DATA_TYPES,
        widget=forms.CheckboxSelectMultiple,
        initial=["traces", "metrics"],
    )
    scope = forms.ChoiceField(choices=SCOPES, initial="own_data")
    metadata_filters = forms.CharField(
        label="Metadata filters",
        widget=forms.Textarea(attrs={"rows": 2}),
        required=False,
        help_text="All data only. One `key: value, value` per line; a row must match each.",
    )
    created_by = forms.CharField(
        label="Created by",
        required=False,
        help_text="All data only. Subjects whose requests this rule covers, comma-separated.",
    )

    def is_blank(self) -> bool:
        """An untouched extra form (no id, no subjects): not a rule."""
        data = self.cleaned_data if hasattr(self, "cleaned_data") else {}
        return not data.get("id") and not data.get("subjects")

    def rule(self) -> dict[str, Any]:
        """The rule as the service takes it (the service validates it)."""
        data = self.cleaned_data
        filters: list[dict[str, Any]] = []
        for line in str(data.get("metadata_filters") or "").splitlines():
            if not line.strip():
                continue
            key, sep, values = line.partition(":")
            if not sep:
                key, sep, values = line.partition("=")
            filters.append(
                {
                    "field": "metadata",
                    "key": key.strip(),
                    "operator": "IN",
                    "value": [v.strip() for v in values.split(",") if v.strip()],
                }
            )
        created = _lines(str(data.get("created_by") or ""))
        if created:
            filters.append({"field": "created_by", "operator": "IN", "value": created})
        return {
            "id": data.get("id", "").strip(),
            "description": data.get("description", ""),
            "enabled": bool(data.get("enabled")),
            "subjects": _lines(str(data.get("subjects") or "")),
            "data_types": list(data.get("data_types") or []),
            "scope": data.get("scope") or "own_data",
            "filters": filters,
        }


def rule_initial(rule: Mapping[str, Any]) -> dict[str, Any]:
    """A stored rule as a form's initial data."""
    metadata = []
    created: list[str] = []
    for item in rule.get("filters") or []:
        if item.get("field") == "metadata":
            metadata.append(f"{item['key']}: {', '.join(item['value'])}")
        else:
            created += list(item.get("value") or [])
    return {
        "id": rule.get("id", ""),
        "description": rule.get("description", ""),
        "enabled": rule.get("enabled", True),
        "subjects": "\n".join(rule.get("subjects") or []),
        "data_types": list(rule.get("data_types") or []),
        "scope": rule.get("scope", "own_data"),
        "metadata_filters": "\n".join(metadata),
        "created_by": ", ".join(created),
    }


RuleFormSet = forms.formset_factory(RuleForm, extra=1, can_delete=True)

FIELD_FOR = {
    "id": "id",
    "description": "description",
    "enabled": "enabled",
    "subjects": "subjects",
    "data_types": "data_types",
    "scope": "scope",
}


def formset_rules(formset: Any) -> tuple[list[dict[str, Any]], list[int]]:
    """The rules the formset holds, and for each the index of the form it came from."""
    rules, origin = [], []
    for index, form in enumerate(formset.forms):
        if not form.is_valid() or form.cleaned_data.get("DELETE") or form.is_blank():
            continue
        rules.append(form.rule())
        origin.append(index)
    return rules, origin


def formset_errors_apply(formset: Any, origin: Sequence[int], exc: ValidationFailed) -> list[str]:
    """Put `rules[i].field` errors on the form of rule i; the rest are returned for the page."""
    loose: list[str] = []
    for path, messages in exc.fields.items():
        head, _, rest = path.partition(".")
        if not head.startswith("rules[") or not head.endswith("]"):
            loose += [f"{path}: {m}" for m in messages] if path else list(messages)
            continue
        index = int(head[6:-1])
        if index >= len(origin):
            loose += messages
            continue
        form = formset.forms[origin[index]]
        top = rest.split(".")[0].split("[")[0]
        if top == "filters":
            name: str | None = _filter_field(form.rule()["filters"], rest)
        else:
            name = FIELD_FOR.get(top)
        for message in messages:
            form.add_error(name, message)
    return loose


def _filter_field(filters: Sequence[Mapping[str, Any]], rest: str) -> str:
    """`filters[2].value` -> the form field that filter came from."""
    head = rest.split(".")[0]
    position = head[len("filters[") : -1] if head.startswith("filters[") else ""
    if position.isdigit() and int(position) < len(filters):
        return (
            "created_by"
            if filters[int(position)].get("field") == "created_by"
            else ("metadata_filters")
        )
    return "metadata_filters"
