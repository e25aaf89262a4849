"""The checked-in route x principal table: who may use each route of the gateway (issue #10).

Every URL pattern of the Django URLconf (keyed by its namespaced name, or by its pattern when
it has none) and every path prefix of the proxy's ASGI app appears here exactly once.
`tests/security/test_route_matrix.py` fails when a route is missing from this table or when the
table names a route that no longer exists (deny by default), then makes every request below
and checks the outcome class.

The world the requests run against (built by the test): team `alpha` holds a plain member
(`member_pat`) and the virtual account `alpha-bot` (`va_token`, allowed to invoke
`prov-a/gpt` only); `manager_other_team` manages team `beta` and nothing else; every object a
path names (`prov-a`, `mcp-a`, `store-a`, `sso-a`, role `auditor`, binding `rb-a`, the
member's PAT, request log and MCP call) belongs to or is shared with team `alpha` only. The
`scim_token` is the SCIM bearer token of `sso-a`. API and SCIM routes are called with each
principal's bearer token (PAT for people); console routes with people's signed-in sessions
(the two machine tokens can only send their bearer header there).

Outcome classes (`Outcome`): ALLOW is a 2xx or 3xx answer that is not the login page; DENY is
401/403/404 or, on console pages, a redirect to the login page, and a denied write changes
nothing; INVALID means authorized but refused for its content in this fixed world (400/409/422,
nothing changed), used only where noted; UNSUPPORTED is 405/501 to a principal that passed
authentication (a SCIM method the endpoint does not offer); PUBLIC means the route is meant for
everyone, signed in or not (health probes, the login page, SSO protocol endpoints, static files).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal


class Outcome(StrEnum):
    """The class of answer a principal gets from a route."""

    ALLOW = "allow"
    DENY = "deny"
    INVALID = "invalid"
    UNSUPPORTED = "unsupported"
    PUBLIC = "public"


PRINCIPALS: tuple[str, ...] = (
    "anonymous",
    "member_pat",
    "manager_other_team",
    "va_token",
    "scim_token",
    "tenant_admin",
)

Surface = Literal["api", "console", "scim", "proxy"]
Cells = tuple[Outcome, Outcome, Outcome, Outcome, Outcome, Outcome]  # in PRINCIPALS order

A, D, V, U, P = (
    Outcome.ALLOW,
    Outcome.DENY,
    Outcome.INVALID,
    Outcome.UNSUPPORTED,
    Outcome.PUBLIC,
)

#                 anonymous  member  mgr-other  va  scim  admin
PUBLIC: Cells = (P, P, P, P, P, P)
ADMIN_ONLY: Cells = (D, D, D, D, D, A)
PEOPLE: Cells = (D, A, A, D, D, A)  # any signed-in person (lists filter what they show)
CALLERS: Cells = (D, A, A, A, D, A)  # people and virtual accounts (own data only)
ALPHA_PEOPLE: Cells = (D, A, D, D, D, A)  # who belongs to team alpha or may see everything
ALPHA_CALLERS: Cells = (D, A, D, A, D, A)  # alpha's member and alpha's virtual account
SCIM_ONLY: Cells = (D, D, D, D, A, D)
NOBODY: Cells = (D, D, D, D, D, D)
ADMIN_INVALID: Cells = (D, D, D, D, D, V)  # only the admin gets past authorization
SCIM_UNSUPPORTED: Cells = (D, D, D, D, U, D)  # only the SCIM token learns the method is not offered


@dataclass(frozen=True)
class Route:
    """One row: a route, the concrete path used to call it, and its cells per method.

    `cells` is keyed by method, optionally with a variant after a colon (`PUT:dry-run`) when one
    method has several meanings (a dry run, a preview, a test-connection button). `paths` gives
    a different concrete path for a method (proxy prefixes cover many endpoints).
    """

    key: str
    surface: Surface
    path: str
    cells: Mapping[str, Cells]
    note: str = ""
    paths: Mapping[str, str] = field(default_factory=dict)

    def path_for(self, method: str) -> str:
        return self.paths.get(method, self.path)


def r(key: str, surface: Surface, path: str, note: str = "", **cells: Any) -> Route:
    """Build a row: keyword arguments are methods (`GET=...`, `PUT__dry_run=...`), plus
    `paths={method: path}` where a method needs another concrete path."""
    paths = cells.pop("paths", {})
    assert isinstance(paths, Mapping)
    assert all(isinstance(v, tuple) and len(v) == len(PRINCIPALS) for v in cells.values())
    methods = {
        name.replace("__", ":").replace("_", "-"): value
        for name, value in cells.items()
        if isinstance(value, tuple)
    }
    return Route(key, surface, path, methods, note, dict(paths))


def scim(**offered: Cells) -> dict[str, Any]:
    """SCIM endpoints dispatch every method: the ones not offered answer 405/501 after auth."""
    methods = ("GET", "POST", "PUT", "PATCH", "DELETE")
    return {m: offered.get(m, SCIM_UNSUPPORTED) for m in methods}


PROXY_ROUTES: tuple[Route, ...] = (
    r(
        "/api/llm/",
        "proxy",
        "/api/llm/v1/chat/completions",
        "GET lists the models the caller may invoke; POST calls prov-a/gpt (granted to alpha)",
        GET=CALLERS,
        POST=ALPHA_CALLERS,
        paths={"GET": "/api/llm/v1/models"},
    ),
    r(
        "/mcp/v1/",
        "proxy",
        "/mcp/v1/mcp-a/mcp",
        "initialize on mcp-a, usable by team alpha's people only",
        POST=ALPHA_PEOPLE,
    ),
)

SPECIAL_ROUTES: tuple[Route, ...] = (
    r("healthz", "console", "/healthz", "load-balancer probe", GET=PUBLIC),
    r("readyz", "console", "/readyz", "load-balancer probe", GET=PUBLIC),
    r("api_schema", "api", "/api/schema/", "the OpenAPI document", GET=PUBLIC),
    r("api_docs", "api", "/api/docs/", "Swagger UI over the schema", GET=PUBLIC),
    r(
        "home",
        "console",
        "/",
        "redirects to the team list, which asks anonymous to log in",
        GET=PUBLIC,
    ),
    r(
        "accounts:login",
        "console",
        "/login/",
        "the login page",
        GET=PUBLIC,
        POST=PUBLIC,
        PUT=PUBLIC,
    ),
    r("accounts:logout", "console", "/logout/", "ends one's own session", POST=PUBLIC),
    r(
        "accounts:invitation_accept",
        "console",
        "/invite/{invite_token}/",
        "the invitation link is the credential",
        GET=PUBLIC,
        POST=PUBLIC,
    ),
    r("^static/(?P<path>.*)$", "console", "/static/css/app.css", "static files", GET=PUBLIC),
    r("openid_connect_login", "console", "/sso/oidc/sso-a/login/", "SSO protocol", GET=PUBLIC),
    r(
        "openid_connect_callback",
        "console",
        "/sso/oidc/sso-a/login/callback/",
        "SSO protocol",
        GET=PUBLIC,
    ),
    r("saml_login", "console", "/sso/saml/sso-a/login/", "SSO protocol", GET=PUBLIC),
    r("saml_acs", "console", "/sso/saml/sso-a/acs/", "SSO protocol", GET=PUBLIC),
    r("saml_finish_acs", "console", "/sso/saml/sso-a/acs/finish/", "SSO protocol", GET=PUBLIC),
    r("saml_sls", "console", "/sso/saml/sso-a/sls/", "SSO protocol", GET=PUBLIC),
    r("saml_metadata", "console", "/sso/saml/sso-a/metadata/", "SSO protocol", GET=PUBLIC),
)

API_ROUTES: tuple[Route, ...] = (
    r(
        "apply",
        "api",
        "/api/v1/apply",
        "a team manifest changing alpha",
        PUT=ADMIN_ONLY,
        PUT__dry_run=ADMIN_ONLY,
        PUT__provider_account=ADMIN_ONLY,
    ),
    r(
        "export",
        "api",
        "/api/v1/export",
        "every kind needs its read permission tenant-wide",
        GET=ADMIN_ONLY,
    ),
    r("accounts-api:me", "api", "/api/v1/me", GET=CALLERS),
    r("accounts-api:user_list", "api", "/api/v1/users", GET=ADMIN_ONLY, POST=ADMIN_ONLY),
    r(
        "accounts-api:user_detail",
        "api",
        "/api/v1/users/{peer_pk}",
        GET=ADMIN_ONLY,
        PATCH=ADMIN_ONLY,
    ),
    r("accounts-api:role_list", "api", "/api/v1/roles", GET=ADMIN_ONLY, POST=ADMIN_ONLY),
    r(
        "accounts-api:role_detail",
        "api",
        "/api/v1/roles/auditor",
        "auditor is bound by rb-a, so deleting it conflicts",
        GET=ADMIN_ONLY,
        PATCH=ADMIN_ONLY,
        DELETE=ADMIN_INVALID,
    ),
    r(
        "accounts-api:role_binding_list",
        "api",
        "/api/v1/role-bindings",
        GET=ADMIN_ONLY,
        POST=ADMIN_ONLY,
    ),
    r(
        "accounts-api:role_binding_detail",
        "api",
        "/api/v1/role-bindings/rb-a",
        GET=ADMIN_ONLY,
        PUT=ADMIN_ONLY,
        DELETE=ADMIN_ONLY,
    ),
    r(
        "accounts-api:pat_list",
        "api",
        "/api/v1/personal-access-tokens",
        "one's own tokens (none for a virtual account, which cannot create any)",
        GET=CALLERS,
        POST=PEOPLE,
    ),
    r(
        "accounts-api:pat_detail",
        "api",
        "/api/v1/personal-access-tokens/{member_pat_pk}",
        "the member's own token",
        GET=ALPHA_PEOPLE,
        DELETE=ALPHA_PEOPLE,
    ),
    r("accounts-api:audit_event_list", "api", "/api/v1/audit-events", GET=ADMIN_ONLY),
    r(
        "accounts-api:va_list",
        "api",
        "/api/v1/virtual-accounts",
        "the accounts one may read",
        GET=CALLERS,
        POST=ADMIN_ONLY,
    ),
    r(
        "accounts-api:va_detail",
        "api",
        "/api/v1/virtual-accounts/alpha-bot",
        GET=ADMIN_ONLY,
        PUT=ADMIN_ONLY,
        DELETE=ADMIN_ONLY,
    ),
    r(
        "accounts-api:va_regenerate",
        "api",
        "/api/v1/virtual-accounts/alpha-bot/regenerate-token",
        POST=ADMIN_ONLY,
    ),
    r(
        "accounts-api:va_get_token",
        "api",
        "/api/v1/virtual-accounts/alpha-bot/get-token",
        "the token was delivered when it was issued",
        POST=ADMIN_INVALID,
    ),
    r(
        "accounts-api:va_sync",
        "api",
        "/api/v1/virtual-accounts/alpha-bot/sync",
        "alpha-bot has no secret store",
        POST=ADMIN_INVALID,
    ),
    r(
        "teams-api:team_list",
        "api",
        "/api/v1/teams",
        "one's teams (none for a virtual account)",
        GET=CALLERS,
        POST=ADMIN_ONLY,
    ),
    r(
        "teams-api:team_detail",
        "api",
        "/api/v1/teams/alpha",
        "alpha owns alpha-bot, so deleting it conflicts (409)",
        GET=ALPHA_PEOPLE,
        PATCH=ADMIN_ONLY,
        DELETE=ADMIN_INVALID,
    ),
    r("teams-api:team_members", "api", "/api/v1/teams/alpha/members", POST=ADMIN_ONLY),
    r(
        "teams-api:team_member_detail",
        "api",
        "/api/v1/teams/alpha/members/{peer_email}",
        DELETE=ADMIN_ONLY,
    ),
    r(
        "providers-api:account_list",
        "api",
        "/api/v1/provider-accounts",
        "the accounts one may read",
        GET=CALLERS,
    ),
    r(
        "providers-api:account_detail",
        "api",
        "/api/v1/provider-accounts/prov-a",
        GET=ALPHA_PEOPLE,
        DELETE=ADMIN_ONLY,
    ),
    r(
        "providers-api:account_test",
        "api",
        "/api/v1/provider-accounts/prov-a/test-connection",
        "same rights as saving prov-a",
        POST=ADMIN_ONLY,
    ),
    r(
        "providers-api:mcp_server_list",
        "api",
        "/api/v1/mcp-servers",
        "the servers one may read",
        GET=CALLERS,
    ),
    r(
        "providers-api:mcp_server_detail",
        "api",
        "/api/v1/mcp-servers/mcp-a",
        GET=ALPHA_PEOPLE,
        DELETE=ADMIN_ONLY,
    ),
    r("dataaccess-api:request_log_list", "api", "/api/v1/request-logs", GET=CALLERS),
    r("dataaccess-api:request_log_csv", "api", "/api/v1/request-logs.csv", GET=CALLERS),
    r(
        "dataaccess-api:request_log_detail",
        "api",
        "/api/v1/request-logs/{log_id}",
        "the member's own call",
        GET=ALPHA_PEOPLE,
    ),
    r("dataaccess-api:mcp_call_list", "api", "/api/v1/mcp-calls", GET=CALLERS),
    r(
        "dataaccess-api:mcp_call_detail",
        "api",
        "/api/v1/mcp-calls/{call_id}",
        "the member's own call",
        GET=ALPHA_PEOPLE,
    ),
    r("dataaccess-api:metrics_timeseries", "api", "/api/v1/metrics/timeseries", GET=CALLERS),
    r(
        "dataaccess-api:metrics_distribution",
        "api",
        "/api/v1/metrics/distribution?group_by=model",
        GET=CALLERS,
    ),
    r("dataaccess-api:metrics_leaderboard", "api", "/api/v1/metrics/leaderboard", GET=CALLERS),
    r(
        "dataaccess-api:mcp_metrics_timeseries",
        "api",
        "/api/v1/metrics/mcp/timeseries",
        GET=CALLERS,
    ),
    r(
        "dataaccess-api:mcp_metrics_distribution",
        "api",
        "/api/v1/metrics/mcp/distribution?group_by=server",
        GET=CALLERS,
    ),
    r(
        "dataaccess-api:mcp_metrics_leaderboard",
        "api",
        "/api/v1/metrics/mcp/leaderboard",
        GET=CALLERS,
    ),
)

SCIM_ROUTES: tuple[Route, ...] = (
    r(
        "scim:root",
        "scim",
        "/scim/v2/",
        "no resource at the root: 404 even for the SCIM token",
        **scim(GET=NOBODY, POST=NOBODY, PUT=NOBODY, PATCH=NOBODY, DELETE=NOBODY),
    ),
    r("scim:search", "scim", "/scim/v2/.search", "root search is not offered", **scim()),
    r("scim:users-search", "scim", "/scim/v2/Users/.search", **scim(POST=SCIM_ONLY)),
    r("scim:users", "scim", "/scim/v2/Users", **scim(GET=SCIM_ONLY, POST=SCIM_ONLY)),
    r("scim:groups-search", "scim", "/scim/v2/Groups/.search", **scim(POST=SCIM_ONLY)),
    r("scim:groups", "scim", "/scim/v2/Groups", **scim(GET=SCIM_ONLY, POST=SCIM_ONLY)),
    r("scim:me", "scim", "/scim/v2/Me", "not implemented (RFC 7644 §3.11 allows 501)", **scim()),
    r("scim:bulk", "scim", "/scim/v2/Bulk", "bulk is not offered", **scim()),
    r(
        "scim:service-provider-config",
        "scim",
        "/scim/v2/ServiceProviderConfig",
        **scim(GET=SCIM_ONLY),
    ),
    r("scim:resource-types", "scim", "/scim/v2/ResourceTypes", **scim(GET=SCIM_ONLY)),
    r("scim:schemas", "scim", "/scim/v2/Schemas", **scim(GET=SCIM_ONLY)),
    r(
        "scim:not-found",
        "scim",
        "/scim/v2/Nothing",
        "404 even for the SCIM token",
        GET=NOBODY,
        POST=NOBODY,
        PUT=NOBODY,
        PATCH=NOBODY,
        DELETE=NOBODY,
    ),
)

CONSOLE_ROUTES: tuple[Route, ...] = (
    r("accounts:user_list", "console", "/users/", GET=ADMIN_ONLY),
    r("accounts:user_invite", "console", "/users/invite/", GET=ADMIN_ONLY, POST=ADMIN_ONLY),
    r("accounts:user_detail", "console", "/users/{peer_pk}/", GET=ADMIN_ONLY),
    r("accounts:user_update", "console", "/users/{peer_pk}/update/", POST=ADMIN_ONLY),
    r("accounts:user_set_active", "console", "/users/{peer_pk}/active/", POST=ADMIN_ONLY),
    r(
        "accounts:user_invitation_resend",
        "console",
        "/users/{invitee_pk}/resend-invite/",
        POST=ADMIN_ONLY,
    ),
    r("accounts:role_list", "console", "/roles/", GET=ADMIN_ONLY),
    r("accounts:role_create", "console", "/roles/-/new/", GET=ADMIN_ONLY, POST=ADMIN_ONLY),
    r("accounts:role_detail", "console", "/roles/auditor/", GET=ADMIN_ONLY),
    r("accounts:role_edit", "console", "/roles/auditor/edit/", GET=ADMIN_ONLY, POST=ADMIN_ONLY),
    r("accounts:role_delete", "console", "/roles/auditor/delete/", GET=ADMIN_ONLY, POST=ADMIN_ONLY),
    r(
        "accounts:role_yaml",
        "console",
        "/roles/auditor/yaml/",
        GET=ADMIN_ONLY,
        POST__preview=ADMIN_ONLY,
        POST__apply=ADMIN_ONLY,
    ),
    r("accounts:role_binding_list", "console", "/role-bindings/", GET=ADMIN_ONLY),
    r(
        "accounts:role_binding_create",
        "console",
        "/role-bindings/-/new/",
        "authorized, but this body fails the form (400); nothing changes",
        GET=ADMIN_ONLY,
        POST=ADMIN_INVALID,
    ),
    r(
        "accounts:role_binding_edit",
        "console",
        "/role-bindings/rb-a/edit/",
        "authorized, but this body fails the form (400); nothing changes",
        GET=ADMIN_ONLY,
        POST=ADMIN_INVALID,
    ),
    r(
        "accounts:role_binding_delete",
        "console",
        "/role-bindings/rb-a/delete/",
        GET=ADMIN_ONLY,
        POST=ADMIN_ONLY,
    ),
    r(
        "accounts:role_binding_yaml",
        "console",
        "/role-bindings/rb-a/yaml/",
        GET=ADMIN_ONLY,
        POST__preview=ADMIN_ONLY,
        POST__apply=ADMIN_ONLY,
    ),
    r(
        "accounts:manifest_apply",
        "console",
        "/apply/",
        "a team manifest changing alpha",
        GET=PEOPLE,
        POST__preview=ADMIN_ONLY,
        POST__apply=ADMIN_ONLY,
    ),
    r("accounts:pat_list", "console", "/tokens/", GET=PEOPLE),
    r("accounts:pat_create", "console", "/tokens/new/", GET=PEOPLE, POST=PEOPLE),
    r(
        "accounts:pat_revoke",
        "console",
        "/tokens/{member_pat_pk}/revoke/",
        "the member's own token",
        GET=ALPHA_PEOPLE,
        POST=ALPHA_PEOPLE,
    ),
    r("accounts:audit_list", "console", "/audit/", GET=ADMIN_ONLY),
    r("accounts:audit_detail", "console", "/audit/{audit_pk}/", GET=ADMIN_ONLY),
    r("accounts:virtual_account_list", "console", "/access/virtual-accounts/", GET=PEOPLE),
    r(
        "accounts:virtual_account_create",
        "console",
        "/access/virtual-accounts/-/new/",
        "the form opens for anyone signed in; its team field offers only teams one may create"
        " in, so alpha is an invalid choice (400) for the member and the other team's manager",
        GET=PEOPLE,
        POST=(D, V, V, D, D, A),
    ),
    r(
        "accounts:virtual_account_detail",
        "console",
        "/access/virtual-accounts/alpha-bot/",
        GET=ADMIN_ONLY,
    ),
    r(
        "accounts:virtual_account_token_regenerate",
        "console",
        "/access/virtual-accounts/alpha-bot/regenerate/",
        POST=ADMIN_ONLY,
    ),
    r(
        "accounts:virtual_account_token_get",
        "console",
        "/access/virtual-accounts/alpha-bot/get-token/",
        POST=ADMIN_ONLY,
    ),
    r(
        "accounts:virtual_account_sync",
        "console",
        "/access/virtual-accounts/alpha-bot/sync/",
        POST=ADMIN_ONLY,
    ),
    r(
        "accounts:virtual_account_delete",
        "console",
        "/access/virtual-accounts/alpha-bot/delete/",
        GET=ADMIN_ONLY,
        POST=ADMIN_ONLY,
    ),
    r(
        "accounts:virtual_account_yaml",
        "console",
        "/access/virtual-accounts/alpha-bot/yaml/",
        GET=ADMIN_ONLY,
        POST__preview=ADMIN_ONLY,
        POST__apply=ADMIN_ONLY,
    ),
    r("accounts:secret_store_list", "console", "/settings/secret-stores/", GET=ADMIN_ONLY),
    r(
        "accounts:secret_store_create",
        "console",
        "/settings/secret-stores/-/new/",
        "authorized, but this body fails the form (400); nothing changes",
        GET=ADMIN_ONLY,
        POST=ADMIN_INVALID,
    ),
    r(
        "accounts:secret_store_detail",
        "console",
        "/settings/secret-stores/store-a/",
        GET=ADMIN_ONLY,
    ),
    r(
        "accounts:secret_store_edit",
        "console",
        "/settings/secret-stores/store-a/edit/",
        "saving needs Manage Settings",
        GET=ADMIN_ONLY,
        POST=ADMIN_ONLY,
    ),
    r(
        "accounts:secret_store_test",
        "console",
        "/settings/secret-stores/store-a/test-connection/",
        "same rights as saving store-a",
        POST=ADMIN_ONLY,
    ),
    r(
        "accounts:secret_store_delete",
        "console",
        "/settings/secret-stores/store-a/delete/",
        GET=ADMIN_ONLY,
        POST=ADMIN_ONLY,
    ),
    r(
        "accounts:secret_store_yaml",
        "console",
        "/settings/secret-stores/store-a/yaml/",
        GET=ADMIN_ONLY,
        POST__preview=ADMIN_ONLY,
        POST__apply=ADMIN_ONLY,
    ),
    r("teams:team_list", "console", "/teams/", GET=PEOPLE),
    r("teams:team_create", "console", "/teams/new/", GET=ADMIN_ONLY, POST=ADMIN_ONLY),
    r("teams:team_detail", "console", "/teams/{alpha_pk}/", GET=ALPHA_PEOPLE),
    r("teams:team_update", "console", "/teams/{alpha_pk}/update/", POST=ADMIN_ONLY),
    r("teams:team_member_add", "console", "/teams/{alpha_pk}/members/add/", POST=ADMIN_ONLY),
    r("teams:team_member_remove", "console", "/teams/{alpha_pk}/members/remove/", POST=ADMIN_ONLY),
    r("teams:team_delete", "console", "/teams/{alpha_pk}/delete/", GET=ADMIN_ONLY, POST=ADMIN_ONLY),
    r(
        "teams:team_yaml",
        "console",
        "/teams/{alpha_pk}/yaml/",
        GET=ALPHA_PEOPLE,
        POST__preview=ADMIN_ONLY,
        POST__apply=ADMIN_ONLY,
    ),
    r("sso:settings", "console", "/settings/sso/", GET=ADMIN_ONLY),
    r(
        "sso:config_create",
        "console",
        "/settings/sso/-/new/",
        "authorized, but this body fails the form (400); nothing changes",
        GET=ADMIN_ONLY,
        POST=ADMIN_INVALID,
    ),
    r(
        "sso:config_edit",
        "console",
        "/settings/sso/sso-a/",
        "authorized, but this body fails the form (400); nothing changes",
        GET=ADMIN_ONLY,
        POST=ADMIN_INVALID,
    ),
    r(
        "sso:config_test",
        "console",
        "/settings/sso/sso-a/test/",
        "same rights as saving sso-a",
        POST=ADMIN_ONLY,
    ),
    r("sso:config_delete", "console", "/settings/sso/sso-a/delete/", POST=ADMIN_ONLY),
    r(
        "scim_console:scim_token",
        "console",
        "/settings/sso/sso-a/scim/",
        "authorized, but this body fails the form (400); nothing changes",
        GET=ADMIN_ONLY,
        POST=ADMIN_INVALID,
    ),
    r("providers:provider_account_list", "console", "/models/", GET=PEOPLE),
    r(
        "providers:provider_account_create",
        "console",
        "/models/-/new/",
        "authorized, but this body fails the form (400); nothing changes",
        GET=ADMIN_ONLY,
        POST=ADMIN_INVALID,
    ),
    r("providers:provider_account_detail", "console", "/models/prov-a/", GET=ALPHA_PEOPLE),
    r(
        "providers:provider_account_access",
        "console",
        "/models/prov-a/access/",
        "authorized, but this body fails the form (400); nothing changes",
        GET=ALPHA_PEOPLE,
        POST=ADMIN_INVALID,
    ),
    r(
        "providers:provider_account_settings",
        "console",
        "/models/prov-a/settings/",
        "readers see the settings (never the credentials); saving needs Manage",
        GET=ALPHA_PEOPLE,
        POST=ADMIN_ONLY,
    ),
    r(
        "providers:provider_account_test",
        "console",
        "/models/prov-a/test-connection/",
        "same rights as saving prov-a",
        POST=ADMIN_ONLY,
    ),
    r(
        "providers:provider_account_delete",
        "console",
        "/models/prov-a/delete/",
        GET=ADMIN_ONLY,
        POST=ADMIN_ONLY,
    ),
    r(
        "providers:provider_account_yaml",
        "console",
        "/models/prov-a/yaml/",
        GET=ALPHA_PEOPLE,
        POST__preview=ADMIN_ONLY,
        POST__apply=ADMIN_ONLY,
    ),
    r("providers:mcp_server_list", "console", "/mcp-servers/", GET=PEOPLE),
    r("providers:mcp_server_detail", "console", "/mcp-servers/mcp-a/", GET=ALPHA_PEOPLE),
    r(
        "providers:mcp_server_access",
        "console",
        "/mcp-servers/mcp-a/access/",
        "authorized, but this body fails the form (400); nothing changes",
        GET=ALPHA_PEOPLE,
        POST=ADMIN_INVALID,
    ),
    r(
        "providers:mcp_server_delete",
        "console",
        "/mcp-servers/mcp-a/delete/",
        GET=ADMIN_ONLY,
        POST=ADMIN_ONLY,
    ),
    r(
        "providers:mcp_server_yaml",
        "console",
        "/mcp-servers/mcp-a/yaml/",
        GET=ALPHA_PEOPLE,
        POST__preview=ADMIN_ONLY,
        POST__apply=ADMIN_ONLY,
    ),
    r(
        "providers:mcp_oauth_callback",
        "console",
        "/mcp/oauth/callback",
        "signed-in people get 400: no authorization is pending",
        GET=(D, V, V, D, D, V),
    ),
    r(
        "providers:mcp_oauth_connect",
        "console",
        "/mcp/oauth/mcp-a/connect",
        "mcp-a does not use OAuth",
        GET=NOBODY,
    ),
    r("dataaccess:request_list", "console", "/monitor/requests/", GET=PEOPLE),
    r(
        "dataaccess:request_detail",
        "console",
        "/monitor/requests/{log_id}/",
        "the member's own call",
        GET=ALPHA_PEOPLE,
    ),
    r("dataaccess:mcp_call_list", "console", "/monitor/mcp-calls/", GET=PEOPLE),
    r(
        "dataaccess:mcp_call_detail",
        "console",
        "/monitor/mcp-calls/{call_id}/",
        "the member's own call",
        GET=ALPHA_PEOPLE,
    ),
    r("dataaccess:metrics", "console", "/monitor/metrics/", GET=PEOPLE),
    r("dataaccess:data_access", "console", "/controls/data-access/", GET=ADMIN_ONLY),
    r(
        "dataaccess:data_access_edit",
        "console",
        "/controls/data-access/edit/",
        GET=ADMIN_ONLY,
        POST__preview=ADMIN_ONLY,
        POST__save=ADMIN_ONLY,
    ),
)

ROUTES: tuple[Route, ...] = (
    *PROXY_ROUTES,
    *SPECIAL_ROUTES,
    *API_ROUTES,
    *SCIM_ROUTES,
    *CONSOLE_ROUTES,
)

# Endpoints that only check or preview a change, and the write whose rights they must equal:
# (route key, method) of the check -> (route key, method) of the save.
CHECKS_AND_SAVES: Mapping[tuple[str, str], tuple[str, str]] = {
    ("providers-api:account_test", "POST"): ("apply", "PUT:provider-account"),
    ("providers:provider_account_test", "POST"): ("providers:provider_account_settings", "POST"),
    ("accounts:secret_store_test", "POST"): ("accounts:secret_store_edit", "POST"),
    ("sso:config_test", "POST"): ("sso:config_edit", "POST"),
    ("dataaccess:data_access_edit", "POST:preview"): ("dataaccess:data_access_edit", "POST:save"),
    ("apply", "PUT:dry-run"): ("apply", "PUT"),
    ("accounts:manifest_apply", "POST:preview"): ("accounts:manifest_apply", "POST:apply"),
    ("accounts:role_yaml", "POST:preview"): ("accounts:role_yaml", "POST:apply"),
    ("accounts:role_binding_yaml", "POST:preview"): ("accounts:role_binding_yaml", "POST:apply"),
    ("accounts:virtual_account_yaml", "POST:preview"): (
        "accounts:virtual_account_yaml",
        "POST:apply",
    ),
    ("accounts:secret_store_yaml", "POST:preview"): ("accounts:secret_store_yaml", "POST:apply"),
    ("teams:team_yaml", "POST:preview"): ("teams:team_yaml", "POST:apply"),
    ("providers:provider_account_yaml", "POST:preview"): (
        "providers:provider_account_yaml",
        "POST:apply",
    ),
    ("providers:mcp_server_yaml", "POST:preview"): ("providers:mcp_server_yaml", "POST:apply"),
}
