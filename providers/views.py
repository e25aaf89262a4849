"""Console pages for AI Gateway > Models (provider accounts) and AI Gateway > MCP Servers.

Each view parses input, takes the request's principal, calls one service or selector and
renders; providers.services decides what is allowed (accounts.console maps its errors).
Creating and changing MCP servers goes through their YAML page.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from accounts.console import ConsoleView, form_error_apply, no_store, paginate
from accounts.console_yaml import ObjectYamlView, YamlTarget
from accounts.policy import Permission, Principal, Resource, require
from gateway_project.errors import Conflict, ValidationFailed
from providers import selectors, services
from providers.forms import (
    MCP_ROLE_CHOICES,
    PROVIDER_ROLE_CHOICES,
    CollaboratorAddForm,
    CollaboratorRemoveForm,
    ProviderAccountCreateForm,
    ProviderAccountSettingsForm,
    secret_field_of,
)
from providers.kinds import KINDS
from providers.models import PROVIDER_ACCOUNT_MANAGER, Collaborator, McpServer, ProviderAccount
from providers.services import CollaboratorSpec

logger = logging.getLogger(__name__)

INVALID_FORM = 400
GATEWAY_CRUMBS = (("AI Gateway", ""),)
CREATE_ALIASES = {
    "type": "kind",
    "integrations[0].name": "model_name",
    "integrations[0].model_id": "model_id",
    "auth_data.api_key": "api_key",
}
COLLABORATOR_ALIASES = {"collaborators": "subject"}
TOOLS_UNAVAILABLE = "Tool discovery is not available on this gateway yet."
TOOLS_FAILED = "The tool list could not be fetched from the server."


def account_resource(account: ProviderAccount) -> Resource:
    """The policy resource of a provider account."""
    return ("provider-account", account.pk)


def server_resource(server: McpServer) -> Resource:
    """The policy resource of an MCP server."""
    return ("mcp-server", server.pk)


def collaborator_specs(rows: Sequence[Collaborator]) -> list[CollaboratorSpec]:
    """The current collaborators as service specs (uses the prefetched rows)."""
    return [CollaboratorSpec(c.subject, c.role_id) for c in rows]


def collaborators_changed(
    current: Sequence[CollaboratorSpec], op: str, spec: CollaboratorSpec
) -> list[CollaboratorSpec] | None:
    """The list after adding or removing `spec`; None when that changes nothing."""
    if op == "add":
        return None if spec in current else [*current, spec]
    remaining = [c for c in current if c != spec]
    return None if len(remaining) == len(current) else remaining


def collaborator_change(
    request: HttpRequest,
    *,
    roles: Sequence[tuple[str, str]],
    rows: Sequence[Collaborator],
    save: Callable[[list[CollaboratorSpec]], object],
    url: str,
) -> HttpResponse | CollaboratorAddForm:
    """Add (`op=add`) or remove a collaborator through `save` (the service call).

    Returns a redirect when done, or the add form carrying the errors to show.
    """
    adding = request.POST.get("op") == "add"
    form: CollaboratorAddForm | CollaboratorRemoveForm = (
        CollaboratorAddForm(request.POST, roles=roles)
        if adding
        else CollaboratorRemoveForm(request.POST)
    )
    if form.is_valid():
        spec = CollaboratorSpec(form.cleaned_data["subject"], form.cleaned_data["role_id"])
        wanted = collaborators_changed(
            collaborator_specs(rows), "add" if adding else "remove", spec
        )
        if wanted is None:
            messages.info(request, f"Nothing to change for {spec.subject}.")
            return redirect(url)
        try:
            save(wanted)
        except (ValidationFailed, Conflict) as exc:
            form_error_apply(form, exc, COLLABORATOR_ALIASES)
            if not adding:
                messages.error(request, exc.message)
        else:
            verb = "Added" if adding else "Removed"
            messages.success(request, f"{verb} {spec.subject} ({spec.role_id}).")
            return redirect(url)
    elif not adding:
        messages.error(request, "Choose a collaborator to remove.")
    return form if isinstance(form, CollaboratorAddForm) else CollaboratorAddForm(roles=roles)


# --- provider accounts: list and create ------------------------------------------------------


class ProviderAccountListView(ConsoleView):
    """Provider accounts the principal may see, each with its models and who may use them."""

    def get(self, request: HttpRequest) -> HttpResponse:
        """The list page."""
        search = request.GET.get("q", "").strip()
        accounts = selectors.provider_account_list(self.principal, search=search)
        context = {
            "page": paginate(request, accounts),
            "q": search,
            "can_create": self.principal.holds(Permission.PROVIDER_ACCOUNT_CREATE),
        }
        return render(request, "providers/provider_account_list.html", context)


class ProviderAccountCreateView(ConsoleView):
    """A new OpenAI, Anthropic or Bedrock account; the creator becomes its manager."""

    policy_permission = (Permission.PROVIDER_ACCOUNT_CREATE,)
    template_name = "providers/provider_account_create.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        """The empty form."""
        form = ProviderAccountCreateForm()
        return no_store(render(request, self.template_name, {"form": form}))

    def post(self, request: HttpRequest) -> HttpResponse:
        """Create the account."""
        form = ProviderAccountCreateForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            creator = (
                [CollaboratorSpec(self.principal.subject, PROVIDER_ACCOUNT_MANAGER)]
                if self.principal.is_user
                else []
            )
            try:
                account = services.provider_account_create(
                    actor=self.principal,
                    name=data["name"].strip(),
                    kind=data["kind"],
                    auth=form.auth(),
                    base_url=data["base_url"],
                    region=data["region"] if data["kind"] == "aws-bedrock" else "",
                    models=form.models(),
                    collaborators=creator,
                )
            except Conflict as exc:
                form.add_error("name", exc.message)
            except ValidationFailed as exc:
                form_error_apply(form, exc, CREATE_ALIASES)
            else:
                messages.success(request, f"Created provider account {account.name}.")
                return redirect("providers:provider_account_detail", name=account.name)
        response = render(request, self.template_name, {"form": form}, status=INVALID_FORM)
        return no_store(response)


# --- provider accounts: the detail tabs ------------------------------------------------------


def account_page(
    request: HttpRequest,
    principal: Principal,
    account: ProviderAccount,
    tab: str,
    extra: Mapping[str, Any] | None = None,
    status: int = 200,
) -> HttpResponse:
    """One tab of an account's page with the controls `principal` may use."""
    kind = KINDS[account.kind]
    can_manage = selectors.provider_account_can_manage(principal, account)
    context = {
        "account": account,
        "kind": kind,
        "tab": tab,
        "models": list(account.models.all()),
        "collaborators": list(account.collaborators.all()),
        "effective_base_url": account.base_url or kind.default_base_url,
        "can_manage": can_manage,
        "can_delete": principal.holds(Permission.PROVIDER_ACCOUNT_DELETE),
        **(extra or {}),
    }
    return render(request, "providers/provider_account_detail.html", context, status=status)


class ProviderAccountDetailView(ConsoleView):
    """An account's Models tab."""

    def get(self, request: HttpRequest, name: str) -> HttpResponse:
        """The models of the account."""
        account = selectors.provider_account_get_for(self.principal, name=name)
        return account_page(request, self.principal, account, "models")


class ProviderAccountAccessView(ConsoleView):
    """An account's Access tab: managers add and remove collaborators."""

    def get(self, request: HttpRequest, name: str) -> HttpResponse:
        """The collaborators, and the add form for managers."""
        account = selectors.provider_account_get_for(self.principal, name=name)
        form = CollaboratorAddForm(roles=PROVIDER_ROLE_CHOICES)
        return account_page(request, self.principal, account, "access", {"form": form})

    def post(self, request: HttpRequest, name: str) -> HttpResponse:
        """`op=add` (subject, role_id) or `op=remove`: replace the collaborator list."""
        account = selectors.provider_account_get_for(self.principal, name=name)
        # Refuse before resolving any subject, so non-managers cannot probe names.
        require(
            self.principal, Permission.PROVIDER_ACCOUNT_MANAGE, resource=account_resource(account)
        )

        def save(wanted: list[CollaboratorSpec]) -> object:
            return services.provider_account_update(
                actor=self.principal, account=account, collaborators=wanted
            )

        outcome = collaborator_change(
            request,
            roles=PROVIDER_ROLE_CHOICES,
            rows=list(account.collaborators.all()),
            save=save,
            url=reverse("providers:provider_account_access", args=[account.name]),
        )
        if isinstance(outcome, HttpResponse):
            return outcome
        extra = {"form": outcome}
        return account_page(request, self.principal, account, "access", extra, INVALID_FORM)


class ProviderAccountSettingsView(ConsoleView):
    """An account's Settings tab: base URL, region and credentials (never shown)."""

    def get(self, request: HttpRequest, name: str) -> HttpResponse:
        """The settings, as a form for managers."""
        account = selectors.provider_account_get_for(self.principal, name=name)
        form = ProviderAccountSettingsForm(account=account)
        return self.page(request, account, form)

    def post(self, request: HttpRequest, name: str) -> HttpResponse:
        """Save the settings; a key in "Replace key" replaces the stored one."""
        account = selectors.provider_account_get_for(self.principal, name=name)
        form = ProviderAccountSettingsForm(request.POST, account=account)
        if form.is_valid():
            data = form.cleaned_data
            try:
                services.provider_account_update(
                    actor=self.principal,
                    account=account,
                    base_url=data["base_url"],
                    region=data.get("region"),
                    auth=form.auth(services.secret_values(account)),
                )
            except (ValidationFailed, Conflict) as exc:
                form_error_apply(form, exc, {"auth_data": "replace_key"})
            else:
                replaced = " The key was replaced." if data.get("replace_key") else ""
                messages.success(request, f"Saved the settings of {account.name}.{replaced}")
                return redirect("providers:provider_account_settings", name=account.name)
        return self.page(request, account, form, status=INVALID_FORM)

    def page(
        self,
        request: HttpRequest,
        account: ProviderAccount,
        form: ProviderAccountSettingsForm,
        status: int = 200,
    ) -> HttpResponse:
        """The Settings tab (kept out of caches: it is where keys are typed)."""
        extra = {
            "form": form,
            "secret_field": secret_field_of(account.auth_type),
            "secret_set": bool(account.auth_secret),
        }
        response = account_page(request, self.principal, account, "settings", extra, status)
        return no_store(response)


class ProviderAccountTestView(ConsoleView):
    """Test connection: one call with the stored credentials (the rights to save them)."""

    http_method_names = ("post",)

    def post(self, request: HttpRequest, name: str) -> HttpResponse:
        """Run the test and flash its answer."""
        account = selectors.provider_account_get_for(self.principal, name=name)
        result = services.provider_account_test(actor=self.principal, account=account)
        report = messages.success if result.ok else messages.error
        report(request, f"Test connection: {result.message}")
        back = request.POST.get("next", "")
        tab = back if back in ("access", "settings") else ""
        route = f"providers:provider_account_{tab}" if tab else "providers:provider_account_detail"
        return redirect(route, name=account.name)


class ProviderAccountDeleteView(ConsoleView):
    """Delete an account and its models (a tenant permission)."""

    policy_permission = (Permission.PROVIDER_ACCOUNT_DELETE,)

    def get(self, request: HttpRequest, name: str) -> HttpResponse:
        """Ask for confirmation."""
        account = selectors.provider_account_get_for(self.principal, name=name)
        return render(request, "providers/provider_account_delete.html", {"account": account})

    def post(self, request: HttpRequest, name: str) -> HttpResponse:
        """Delete it."""
        account = selectors.provider_account_get_for(self.principal, name=name)
        services.provider_account_delete(actor=self.principal, account=account)
        messages.success(request, f"Deleted provider account {name}.")
        return redirect("providers:provider_account_list")


PROVIDER_ACCOUNT_STARTER = """\
# A provider account: credentials, the models it offers, and who may use them.
# Models are called as <account name>/<model name>.
type: provider-account/openai
name: my-openai
auth_data:
  type: api-key
  api_key: sk-REPLACE-ME
collaborators:
  - subject: {subject}
    role_id: provider-account-manager
  - subject: team:everyone
    role_id: provider-account-access
integrations:
  - type: integration/model/openai
    name: gpt-4o
    model_id: gpt-4o
    model_types: [chat]
"""


class ProviderAccountYamlView(ObjectYamlView):
    """A provider account's manifest (secrets as references): view, preview, apply."""

    manifest_types = tuple(spec.manifest_type for spec in KINDS.values())
    starter_label = "Provider account"
    starter = PROVIDER_ACCOUNT_STARTER

    def target(self, **kwargs: Any) -> YamlTarget:
        """The account named by the URL, if the principal may see it."""
        account = selectors.provider_account_get_for(self.principal, name=kwargs["name"])
        return YamlTarget(
            manifest_type=account.manifest_type,
            name=account.name,
            url=reverse("providers:provider_account_detail", args=[account.name]),
            can_change=selectors.provider_account_can_manage(self.principal, account),
            breadcrumbs=(*GATEWAY_CRUMBS, ("Models", reverse("providers:provider_account_list"))),
        )

    @classmethod
    def url_for_name(cls, name: str) -> str | None:
        """The account's page."""
        return reverse("providers:provider_account_detail", args=[name])


# --- MCP servers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolRow:
    """One tool of an MCP server as the gateway exposes it."""

    name: str
    exposed_name: str
    description: str
    params: Sequence[str]
    disabled: bool


def tool_rows(tools: Sequence[Mapping[str, Any]], settings_: Sequence[Any]) -> list[ToolRow]:
    """The server's tools with the server's tool_settings (disable, rename, describe) applied."""
    by_name = {str(s.get("name")): s for s in settings_ if isinstance(s, Mapping)}
    rows = []
    for tool in tools:
        name = str(tool.get("name", ""))
        setting = by_name.get(name, {})
        schema = tool.get("inputSchema") or {}
        props = schema.get("properties", {}) if isinstance(schema, Mapping) else {}
        rows.append(
            ToolRow(
                name=name,
                exposed_name=str(setting.get("rename") or name),
                description=str(setting.get("description") or tool.get("description") or ""),
                params=sorted(props) if isinstance(props, Mapping) else [],
                disabled=bool(setting.get("disabled", False)),
            )
        )
    return rows


def server_tools(server: McpServer) -> tuple[list[ToolRow], str]:
    """The server's tools fetched live, or the reason they could not be ("" when fetched)."""
    try:
        client = importlib.import_module("providers.mcp_client")
    except ImportError:
        return [], TOOLS_UNAVAILABLE
    try:
        tools = client.mcp_server_tools(server)
    except client.McpUnreachable as exc:
        return [], str(getattr(exc, "message", "") or exc) or TOOLS_FAILED
    except Exception:  # the page must render whatever the server answers
        logger.exception("listing the tools of MCP server %s failed", server.name)
        return [], TOOLS_FAILED
    return tool_rows(tools, server.tool_settings or []), ""


def gateway_endpoint(server: McpServer) -> str:
    """The URL clients use to reach this server through the gateway."""
    return f"{settings.GATEWAY_PUBLIC_URL}/mcp/v1/{server.name}/mcp"


class McpServerListView(ConsoleView):
    """MCP servers the principal may see."""

    def get(self, request: HttpRequest) -> HttpResponse:
        """The list page."""
        search = request.GET.get("q", "").strip()
        servers = selectors.mcp_server_list(self.principal, search=search)
        context = {
            "page": paginate(request, servers),
            "q": search,
            "can_create": self.principal.holds(Permission.MCP_SERVER_CREATE),
        }
        return render(request, "providers/mcp_server_list.html", context)


def server_page(
    request: HttpRequest,
    principal: Principal,
    server: McpServer,
    tab: str,
    extra: Mapping[str, Any] | None = None,
    status: int = 200,
) -> HttpResponse:
    """One tab of an MCP server's page with the controls `principal` may use."""
    context = {
        "server": server,
        "tab": tab,
        "collaborators": list(server.collaborators.all()),
        "endpoint": gateway_endpoint(server),
        "can_manage": principal.holds(
            Permission.MCP_SERVER_MANAGE, resource=server_resource(server)
        ),
        "can_delete": principal.holds(Permission.MCP_SERVER_DELETE),
        **(extra or {}),
    }
    return render(request, "providers/mcp_server_detail.html", context, status=status)


class McpServerDetailView(ConsoleView):
    """An MCP server's Tools tab, with the tools fetched from the server."""

    def get(self, request: HttpRequest, name: str) -> HttpResponse:
        """The server, its gateway endpoint and its tools."""
        server = selectors.mcp_server_get_for(self.principal, name=name)
        tools, error = server_tools(server)
        extra = {"tools": tools, "tools_error": error}
        return server_page(request, self.principal, server, "tools", extra)


def mcp_spec_with(
    server: McpServer, collaborators: Sequence[CollaboratorSpec]
) -> services.McpServerSpec:
    """The server as it is, with other collaborators (the stored secret is kept)."""
    return services.McpServerSpec(
        name=server.name,
        description=server.description,
        url=server.url,
        auth_type=server.auth_type,
        auth_public=server.auth_public,
        auth_secret=None,
        tool_settings=server.tool_settings,
        tls_settings=server.tls_settings,
        collaborators=collaborators,
        tags=server.tags,
    )


class McpServerAccessView(ConsoleView):
    """An MCP server's Access tab: managers add and remove collaborators."""

    def get(self, request: HttpRequest, name: str) -> HttpResponse:
        """The collaborators, and the add form for managers."""
        server = selectors.mcp_server_get_for(self.principal, name=name)
        form = CollaboratorAddForm(roles=MCP_ROLE_CHOICES)
        return server_page(request, self.principal, server, "access", {"form": form})

    def post(self, request: HttpRequest, name: str) -> HttpResponse:
        """`op=add` (subject, role_id) or `op=remove`: replace the collaborator list."""
        server = selectors.mcp_server_get_for(self.principal, name=name)
        # Refuse before resolving any subject, so non-managers cannot probe names.
        require(self.principal, Permission.MCP_SERVER_MANAGE, resource=server_resource(server))

        def save(wanted: list[CollaboratorSpec]) -> object:
            return services.mcp_server_put(actor=self.principal, spec=mcp_spec_with(server, wanted))

        outcome = collaborator_change(
            request,
            roles=MCP_ROLE_CHOICES,
            rows=list(server.collaborators.all()),
            save=save,
            url=reverse("providers:mcp_server_access", args=[server.name]),
        )
        if isinstance(outcome, HttpResponse):
            return outcome
        extra = {"form": outcome}
        return server_page(request, self.principal, server, "access", extra, INVALID_FORM)


class McpServerDeleteView(ConsoleView):
    """Delete an MCP server (a tenant permission)."""

    policy_permission = (Permission.MCP_SERVER_DELETE,)

    def get(self, request: HttpRequest, name: str) -> HttpResponse:
        """Ask for confirmation."""
        server = selectors.mcp_server_get_for(self.principal, name=name)
        return render(request, "providers/mcp_server_delete.html", {"server": server})

    def post(self, request: HttpRequest, name: str) -> HttpResponse:
        """Delete it."""
        server = selectors.mcp_server_get_for(self.principal, name=name)
        services.mcp_server_delete(actor=self.principal, server=server)
        messages.success(request, f"Deleted MCP server {name}.")
        return redirect("providers:mcp_server_list")


MCP_SERVER_STARTER = """\
# A remote MCP server, reached by clients at <gateway>/mcp/v1/<name>/mcp.
type: mcp-server/remote
name: my-mcp-server
description: What the server's tools do.
url: https://mcp.example.com/mcp
auth_data:
  type: header
  headers:
    Authorization: Bearer REPLACE-ME
collaborators:
  - subject: {subject}
    role_id: mcp-server-manager
  - subject: team:everyone
    role_id: mcp-server-user
"""


class McpServerYamlView(ObjectYamlView):
    """An MCP server's manifest (header values as references): view, preview, apply."""

    manifest_types = ("mcp-server/remote",)
    starter_label = "MCP server"
    starter = MCP_SERVER_STARTER

    def target(self, **kwargs: Any) -> YamlTarget:
        """The server named by the URL, if the principal may see it."""
        server = selectors.mcp_server_get_for(self.principal, name=kwargs["name"])
        return YamlTarget(
            manifest_type="mcp-server/remote",
            name=server.name,
            url=reverse("providers:mcp_server_detail", args=[server.name]),
            can_change=self.principal.holds(
                Permission.MCP_SERVER_MANAGE, resource=server_resource(server)
            ),
            breadcrumbs=(*GATEWAY_CRUMBS, ("MCP Servers", reverse("providers:mcp_server_list"))),
        )

    @classmethod
    def url_for_name(cls, name: str) -> str | None:
        """The server's page."""
        return reverse("providers:mcp_server_detail", args=[name])
