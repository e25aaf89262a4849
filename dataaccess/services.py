"""Writes of the Data Access configuration."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import transaction
from pydantic import ValidationError

from accounts.audit import audit_record
from accounts.policy import Permission, Principal, require
from dataaccess.models import DataAccessConfig
from dataaccess.rules import DEFAULT_RULES, Rule
from gateway_project.errors import ValidationFailed

CONFIG_NAME = "data-access"


def rules_validate(rules: Sequence[dict[str, Any]]) -> list[Rule]:
    """Typed rules, or a field error naming the rule and field; ids must be unique."""
    parsed = []
    for index, raw in enumerate(rules):
        try:
            parsed.append(Rule.model_validate(raw))
        except ValidationError as exc:
            error = exc.errors()[0]
            loc = ".".join(str(p) for p in error["loc"])
            path = f"rules[{index}]" + (f".{loc}" if loc else "")
            raise ValidationFailed.field(path, error["msg"].removeprefix("Value error, ")) from exc
    ids = [r.id for r in parsed]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValidationFailed.field("rules", f"duplicate rule id '{duplicates[0]}'")
    return parsed


@transaction.atomic
def data_access_config_put(
    *,
    actor: Principal,
    rules: Sequence[dict[str, Any]],
    name: str = CONFIG_NAME,
    created_via: str = "console",
) -> DataAccessConfig:
    """Replace the rules (gateway-controls:ManageGatewayControls)."""
    require(actor, Permission.GATEWAY_CONTROLS_MANAGE)
    parsed = rules_validate(rules)
    stored = [r.model_dump(exclude_defaults=False) for r in parsed]
    config = DataAccessConfig.objects.select_for_update().filter(name=name).first()
    before = {"rules": config.rules} if config is not None else None
    if config is None:
        config = DataAccessConfig.objects.create(name=name, rules=stored, created_via=created_via)
    elif config.rules != stored:
        config.rules = stored
        config.save()
    if before != {"rules": stored}:
        audit_record(
            actor=actor,
            action="data_access.updated",
            target=config,
            before=before,
            after={"rules": stored},
        )
    return config


def default_rules() -> list[dict[str, Any]]:
    """The shipped defaults, as stored rules."""
    return [Rule.model_validate(r).model_dump() for r in DEFAULT_RULES]
