"""Reads of provider accounts, models and MCP servers, filtered by what a principal may see."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from django.db.models import Prefetch, Q, QuerySet

from accounts.policy import Permission, Principal, Resource, holds_any
from gateway_project.errors import ObjectNotFound
from providers.models import Collaborator, McpServer, ProviderAccount, ProviderModel


def resource_grants_for(
    *, user_id: int, team_ids: Iterable[int], subjects: Iterable[str]
) -> tuple[dict[Resource, frozenset[str]], frozenset[tuple[int, str]]]:
    """Collaborator roles of a user (directly or through teams) and the models they may call.

    `subjects` are the user's subject strings (`user:x`, `team:y`...) for `authorized_subjects`.
    """
    rows = Collaborator.objects.filter(Q(user_id=user_id) | Q(team_id__in=list(team_ids)))
    roles: dict[Resource, set[str]] = defaultdict(set)
    for account_id, server_id, role_id in rows.values_list(
        "provider_account_id", "mcp_server_id", "role_id"
    ):
        key: Resource = (
            ("provider-account", account_id) if account_id else ("mcp-server", server_id)
        )
        roles[key].add(role_id)
    account_ids = [rid for (kind, rid) in roles if kind == "provider-account"]
    return {k: frozenset(v) for k, v in roles.items()}, invokable_models(account_ids, subjects)


def invokable_models(
    account_ids: Iterable[int], subjects: Iterable[str]
) -> frozenset[tuple[int, str]]:
    """(account id, model name) of every model of these accounts the subjects may call."""
    mine = set(subjects)
    models = ProviderModel.objects.filter(account_id__in=list(account_ids)).values_list(
        "account_id", "name", "authorized_subjects"
    )
    return frozenset(
        (account_id, name)
        for account_id, name, authorized in models
        if authorized is None or mine.intersection(authorized)
    )


def _sees_all_accounts(principal: Principal) -> bool:
    return holds_any(
        principal, Permission.PROVIDER_ACCOUNT_READ, Permission.PROVIDER_ACCOUNT_MANAGE
    )


def provider_account_list(principal: Principal, *, search: str = "") -> QuerySet[ProviderAccount]:
    """Accounts the principal may see, with models and collaborators prefetched."""
    qs = ProviderAccount.objects.prefetch_related(
        Prefetch("models", queryset=ProviderModel.objects.order_by("name")),
        Prefetch("collaborators", queryset=Collaborator.objects.select_related("user", "team")),
    )
    if not _sees_all_accounts(principal):
        ids = [rid for (kind, rid) in principal.resource_roles if kind == "provider-account"]
        qs = qs.filter(pk__in=ids)
    if search:
        qs = qs.filter(Q(name__icontains=search) | Q(models__name__icontains=search)).distinct()
    return qs.order_by("name")


def provider_account_get_for(
    principal: Principal, *, pk: int | None = None, name: str | None = None
) -> ProviderAccount:
    """One visible account; 404 whether missing or hidden."""
    qs = provider_account_list(principal)
    account = qs.filter(pk=pk).first() if pk is not None else qs.filter(name=name).first()
    if account is None:
        raise ObjectNotFound("provider account not found")
    return account


def provider_account_can_manage(principal: Principal, account: ProviderAccount) -> bool:
    return principal.holds(
        Permission.PROVIDER_ACCOUNT_MANAGE, resource=("provider-account", account.pk)
    )


def mcp_server_list(principal: Principal, *, search: str = "") -> QuerySet[McpServer]:
    """MCP servers the principal may see."""
    qs = McpServer.objects.prefetch_related(
        Prefetch("collaborators", queryset=Collaborator.objects.select_related("user", "team"))
    )
    if not holds_any(principal, Permission.MCP_SERVER_READ, Permission.MCP_SERVER_MANAGE):
        ids = [rid for (kind, rid) in principal.resource_roles if kind == "mcp-server"]
        qs = qs.filter(pk__in=ids)
    if search:
        qs = qs.filter(Q(name__icontains=search) | Q(description__icontains=search))
    return qs.order_by("name")


def mcp_server_get_for(
    principal: Principal, *, pk: int | None = None, name: str | None = None
) -> McpServer:
    """One visible MCP server; 404 whether missing or hidden."""
    qs = mcp_server_list(principal)
    server = qs.filter(pk=pk).first() if pk is not None else qs.filter(name=name).first()
    if server is None:
        raise ObjectNotFound("MCP server not found")
    return server
