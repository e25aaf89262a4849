"""Data Access rules: who sees which request logs (traces) and metrics.

Semantics (as the mirrored product documents them): every enabled rule whose subjects match
the viewer applies; the viewer sees the union of their scopes; `filters` (only with
`all_data`) restrict that rule's rows; no matching rule means no data. `team_data` covers the
teams the viewer belongs to (never the implicit `everyone`), including the virtual accounts
those teams own, whose rows carry their owner team.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

from django.db.models import Q
from pydantic import Field, model_validator

from accounts.policy import Principal
from gateway_project.manifests import ManifestModel

DataType = Literal["traces", "metrics"]
ALL_DATA_TYPES: tuple[DataType, ...] = ("traces", "metrics")
RULE_ID_PATTERN = r"^[A-Za-z{}][A-Za-z0-9{}._-]{0,60}[A-Za-z0-9{}._]$"


class MetadataFilter(ManifestModel):
    field: Literal["metadata"]
    key: str = Field(min_length=1, max_length=64)
    operator: Literal["IN"] = "IN"
    value: list[str] = Field(min_length=1)


class CreatedByFilter(ManifestModel):
    field: Literal["created_by"]
    operator: Literal["IN"] = "IN"
    value: list[str] = Field(min_length=1)


class Rule(ManifestModel):
    id: str = Field(pattern=RULE_ID_PATTERN)
    description: str = ""
    enabled: bool = True
    subjects: list[str] = Field(min_length=1)
    data_types: list[DataType] = Field(default_factory=lambda: list(ALL_DATA_TYPES))
    scope: Literal["own_data", "team_data", "all_data"]
    filters: list[MetadataFilter | CreatedByFilter] = Field(default_factory=list)

    @model_validator(mode="after")
    def _filters_need_all_data(self) -> Rule:
        if self.filters and self.scope != "all_data":
            raise ValueError("filters are only valid with scope all_data")
        bad = [
            s
            for s in self.subjects
            if s.partition(":")[0] not in ("user", "team", "role", "virtualaccount")
        ]
        if bad:
            raise ValueError(f"not a subject: {bad[0]} (user:, team:, role:, virtualaccount:)")
        return self


DEFAULT_RULES: list[dict[str, object]] = [
    {
        "id": "default-everyone-own-data",
        "description": "Default rule: Users can access their own data",
        "enabled": True,
        "subjects": ["team:everyone"],
        "data_types": ["traces", "metrics"],
        "scope": "own_data",
    },
    {
        "id": "default-everyone-team-data",
        "description": "Default rule: Users can access their teams' data, including the "
        "virtual accounts their teams own",
        "enabled": True,
        "subjects": ["team:everyone"],
        "data_types": ["traces", "metrics"],
        "scope": "team_data",
    },
    {
        "id": "default-tenant-admin-all-data",
        "description": "Default rule: Tenant admins can access all data",
        "enabled": True,
        "subjects": ["role:tenant-admin"],
        "data_types": ["traces", "metrics"],
        "scope": "all_data",
    },
]


def team_ids_q(team_ids: Iterable[int], field: str = "team_ids") -> Q:
    """Rows whose denormalised `|1|7|` team list contains any of `team_ids`."""
    q = Q(pk__in=[])
    for team_id in team_ids:
        q |= Q(**{f"{field}__contains": f"|{team_id}|"})
    return q


def _created_by_q(values: Sequence[str], team_ids_by_name: dict[str, int]) -> Q:
    q = Q(pk__in=[])
    for subject in values:
        kind, _, name = subject.partition(":")
        if kind == "user":
            q |= Q(caller_type="user", caller_name__iexact=name)
        elif kind == "virtualaccount":
            q |= Q(caller_type="virtualaccount", caller_name=name)
        elif kind == "team" and name in team_ids_by_name:
            q |= team_ids_q([team_ids_by_name[name]])
    return q


def _rule_q(
    rule: Rule, viewer: Principal, team_ids_by_name: dict[str, int], everyone_id: int | None
) -> Q:
    if rule.scope == "own_data":
        return Q(caller_type=viewer.subject.partition(":")[0], caller_id=viewer.id)
    if rule.scope == "team_data":
        teams = [t for t in viewer.member_team_ids if t != everyone_id]
        return team_ids_q(teams)
    q = Q(pk__isnull=False)  # explicit "every row": an empty Q() vanishes inside an OR
    for item in rule.filters:
        if isinstance(item, MetadataFilter):
            q &= Q(**{f"metadata__{item.key}__in": item.value})
        else:
            q &= _created_by_q(item.value, team_ids_by_name)
    return q


def viewer_subjects(
    viewer: Principal, team_names: dict[int, str], roles: Iterable[str]
) -> set[str]:
    """Every subject string that names the viewer."""
    subjects = {viewer.subject, *(f"role:{r}" for r in roles)}
    if viewer.is_tenant_admin:
        subjects.add("role:tenant-admin")
    if viewer.kind == "user":
        subjects.add("team:everyone")  # the implicit team holds every user, never VAs
    subjects |= {f"team:{team_names[t]}" for t in viewer.member_team_ids if t in team_names}
    return subjects


def visible_q(
    rules: Sequence[Rule],
    viewer: Principal,
    data_type: DataType,
    *,
    team_names: dict[int, str],
    roles: Iterable[str] = (),
) -> Q:
    """The union of what every enabled, matching rule grants for `data_type`; nothing if none."""
    subjects = viewer_subjects(viewer, team_names, roles)
    by_name = {name: team_id for team_id, name in team_names.items()}
    everyone_id = by_name.get("everyone")
    q = Q(pk__in=[])
    for rule in rules:
        if rule.enabled and data_type in rule.data_types and subjects & set(rule.subjects):
            q |= _rule_q(rule, viewer, by_name, everyone_id)
    return q
