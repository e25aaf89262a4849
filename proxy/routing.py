"""The proxy's in-process view of provider accounts and models, reloaded on config changes."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from django.db import DatabaseError

from providers.kinds import KINDS, bedrock_endpoint
from providers.models import ProviderAccount
from providers.services import secret_values
from providers.upstream import allowed_host
from proxy import db
from proxy.auth import AuthUnavailable
from teams.models import Team

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Target:
    """Everything needed to call one model: where, with which credentials, at what price."""

    account_id: int
    account: str
    kind: str
    base_url: str
    auth_type: str
    auth_public: dict[str, Any]
    secrets: dict[str, Any] = field(repr=False)
    model: str
    model_id: str
    model_types: tuple[str, ...]
    cost: dict[str, Any]
    region: str

    @property
    def caller_name(self) -> str:
        return f"{self.account}/{self.model}"

    def cost_usd(self, input_tokens: int, output_tokens: int) -> float:
        """Cost from the model's `per_1000_tokens` config (other metrics price at zero)."""
        value = self.cost.get("value") or {}
        metric = self.cost.get("metric")
        if metric == "per_1000_tokens":
            return (
                input_tokens * float(value.get("input", 0))
                + output_tokens * float(value.get("output", 0))
            ) / 1000
        if metric == "per_1000_embedding_tokens":
            return input_tokens * float(value.get("input", 0)) / 1000
        return 0.0


@dataclass(frozen=True, slots=True)
class Routing:
    """A snapshot: `<account>/<model>` -> Target, and team id -> name for log records."""

    targets: dict[str, Target]
    team_names: dict[int, str]


def _base_url(account: ProviderAccount, region: str) -> str:
    if account.base_url:
        return account.base_url
    if account.kind == ProviderAccount.Kind.AWS_BEDROCK:
        return bedrock_endpoint(region)
    return KINDS[account.kind].default_base_url


def _host_allowed(target: Target) -> bool:
    """GATEWAY_UPSTREAM_ALLOWLIST holds at call time too: an account saved before the list
    changed cannot reach a host the list now excludes (its models answer 403)."""
    host = urlsplit(target.base_url).hostname or ""
    if allowed_host(host):
        return True
    logger.warning("routing: %s skipped, host not in GATEWAY_UPSTREAM_ALLOWLIST", target.account)
    return False


def _load() -> Routing:
    try:
        targets: dict[str, Target] = {}
        for account in ProviderAccount.objects.prefetch_related("models"):
            secrets = secret_values(account)
            for model in account.models.all():
                region = model.region or account.region
                target = Target(
                    account_id=account.pk,
                    account=account.name,
                    kind=account.kind,
                    base_url=_base_url(account, region),
                    auth_type=account.auth_type,
                    auth_public=dict(account.auth_public),
                    secrets=secrets,
                    model=model.name,
                    model_id=model.model_id,
                    model_types=tuple(model.model_types),
                    cost=dict(model.cost),
                    region=region,
                )
                if _host_allowed(target):
                    targets[target.caller_name] = target
        team_names = dict(Team.objects.values_list("id", "name"))
    except DatabaseError as exc:
        raise AuthUnavailable from exc
    return Routing(targets, team_names)


class RoutingCache:
    """Reloads the snapshot when the config version it was built for is no longer current."""

    def __init__(self) -> None:
        self._routing: Routing | None = None
        self._version: int | None = None
        self._lock = asyncio.Lock()

    async def get(self, version: int | None) -> Routing:
        routing = self._routing
        if routing is not None and self._version == version:
            return routing
        async with self._lock:
            if self._routing is None or self._version != version:
                try:
                    self._routing = await db.run(_load)
                except AuthUnavailable:
                    if self._routing is None:
                        raise
                    return self._routing  # the database is away: keep the last snapshot
                self._version = version
            return self._routing
