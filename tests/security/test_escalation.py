"""No escalation: whatever a member or team manager grants is a subset of what they hold.

Property tests over random grant sets. Each example gives a grantor random rights (custom
tenant and team roles bound to them, team memberships and managerships, provider-account and
MCP-server collaborator roles) and asks for a random grant through the real interfaces: the
services, the REST API (`/api/v1/...`) and the Apply API that `gateway apply` and the console's
YAML pages use. Then:

- a grant that succeeds gives every affected principal (the grantor, another user, a new or
  re-tokened virtual account) only capabilities the grantor held before, as `accounts.policy`
  decides them (tenant and team permissions, collaborator permissions on each resource, model
  invocation, tenant admin, team data);
- a refusal changes no row of any governed table, audit events and the config version
  included (the product audits changes only, never denials).

Each example runs inside a savepoint that is rolled back, so examples never see each other's
rows. Each test also checks that both outcomes happened, so it cannot pass vacuously.
"""

from __future__ import annotations

import functools
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.db import models, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from accounts import services as account_services
from accounts import virtual_accounts as va
from accounts.models import (
    TENANT_ADMIN,
    AuditEvent,
    ConfigVersion,
    PersonalAccessToken,
    Role,
    RoleBinding,
    RoleBindingGrant,
    RoleBindingSubject,
    TokenSecret,
    User,
    VirtualAccount,
    VirtualAccountPermission,
    VirtualAccountToken,
)
from accounts.policy import (
    ALL_PERMISSIONS,
    RESOURCE_ROLE_PERMISSIONS,
    TEAM_SCOPED_PERMISSIONS,
    Permission,
    PolicyDenied,
    Principal,
    decide,
)
from accounts.selectors import principal_for_user
from gateway_project import manifests
from gateway_project.errors import Conflict, ObjectNotFound, ValidationFailed
from gateway_project.manifest_io import ManifestError, parse_yaml
from providers import services as provider_services
from providers.models import Collaborator, McpServer, ProviderAccount, ProviderModel
from teams import services as team_services
from teams.models import Team, TeamMembership
from tests import factories

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(120)]

TEAMS = ("esc-red", "esc-blue", "esc-green")
OPENAI, ANTHROPIC, MCP = "esc-openai", "esc-anthropic", "esc-tools"
GRANTOR, PEER = "grantor@example.com", "peer@example.com"
BOT = "esc-bot"  # an existing virtual account of esc-red with access to esc-openai
TENANT_POOL = sorted(ALL_PERMISSIONS)
TEAM_POOL = sorted(TEAM_SCOPED_PERMISSIONS)
REFUSALS = (PolicyDenied, ValidationFailed, ObjectNotFound, Conflict, ManifestError)
INTERFACES = ("service", "api", "apply")
# Every example runs through each interface its grant has; they must agree on the outcome.
INTERFACES_OF = {
    "_va_create_example": INTERFACES,
    "_va_token_example": ("service", "api"),
    "_role_binding_example": INTERFACES,
    "_role_edit_example": INTERFACES,
    "_membership_example": INTERFACES,
    "_collaborator_example": ("service", "apply"),
}
HYPOTHESIS = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,  # examples replay from the seed, not from a shared cache directory
    derandomize=True,
)

WORLD_MANIFESTS = f"""\
type: provider-account/openai
name: {OPENAI}
auth_data: {{type: api-key, api_key: sk-escalation-test}}
base_url: http://127.0.0.1:9/v1
integrations:
  - {{type: integration/model/openai, name: open, model_id: gpt-4o}}
  - {{type: integration/model/openai, name: narrow, model_id: gpt-4o-mini,
      authorized_subjects: ["user:someone@example.com"]}}
---
type: provider-account/anthropic
name: {ANTHROPIC}
auth_data: {{type: api-key, api_key: sk-ant-escalation-test}}
base_url: http://127.0.0.1:9
integrations: [{{type: integration/model/anthropic, name: claude, model_id: claude-sonnet}}]
---
type: mcp-server/remote
name: {MCP}
description: tools
url: http://127.0.0.1:9/mcp
collaborators: []
"""

# Every table a grant could write, in a stable order: a refusal must leave all of them as they
# were (audit events and the config version included).
GOVERNED: tuple[type[models.Model], ...] = (
    User,
    Role,
    RoleBinding,
    RoleBindingSubject,
    RoleBindingGrant,
    PersonalAccessToken,
    VirtualAccount,
    VirtualAccountPermission,
    VirtualAccountToken,
    TokenSecret,
    Team,
    TeamMembership,
    ProviderAccount,
    ProviderModel,
    Collaborator,
    McpServer,
    AuditEvent,
    ConfigVersion,
)


# --- the world and the grantor's rights ------------------------------------------------------


@dataclass(frozen=True)
class Rights:
    """What the grantor holds before the request."""

    tenant: frozenset[Permission]
    team_roles: dict[str, frozenset[Permission]]
    member_of: frozenset[str]
    manager_of: frozenset[str]
    provider_roles: dict[str, str]  # provider account name -> collaborator role
    mcp_role: str | None


def subsets(pool: list[Permission], max_size: int) -> st.SearchStrategy[frozenset[Permission]]:
    return st.frozensets(st.sampled_from(pool), max_size=max_size)


# Bundles that make one kind of grant possible at all: each test hands its own bundle to two
# thirds of its grantors, so examples reach both outcomes.
ROLE_KIT = frozenset({Permission.ROLE_MANAGE, Permission.TENANT_ASSIGN_ROLE, Permission.ROLE_LIST})
TEAM_KIT = frozenset({Permission.TEAM_MANAGE})
VA_KIT = frozenset({Permission.VIRTUAL_ACCOUNT_CREATE, Permission.VIRTUAL_ACCOUNT_MANAGE})
PROVIDER_KIT = frozenset({Permission.PROVIDER_ACCOUNT_MANAGE, Permission.PROVIDER_ACCOUNT_USE})
MCP_KIT = frozenset({Permission.MCP_SERVER_MANAGE, Permission.MCP_SERVER_USE})


def rights(kit: frozenset[Permission] = frozenset()) -> st.SearchStrategy[Rights]:
    """Random rights; with `kit` added to the tenant permissions two times in three."""
    return st.builds(
        Rights,
        tenant=st.builds(
            frozenset.union,
            subsets(TENANT_POOL, 3),
            st.sampled_from((frozenset(), kit, kit)),
        ),
        team_roles=st.dictionaries(st.sampled_from(TEAMS), subsets(TEAM_POOL, 4), max_size=2),
        member_of=st.frozensets(st.sampled_from(TEAMS)),
        manager_of=st.frozensets(st.sampled_from(TEAMS)),
        provider_roles=st.dictionaries(
            st.sampled_from((OPENAI, ANTHROPIC)),
            st.sampled_from(("provider-account-manager", "provider-account-access")),
        ),
        mcp_role=st.sampled_from((None, "mcp-server-user", "mcp-server-manager")),
    )


@pytest.fixture
def world(db: None) -> None:
    """Teams, provider accounts, an MCP server, a peer and a virtual account (rolled back)."""
    for name in TEAMS:
        factories.TeamFactory(name=name)
    factories.UserFactory(email=PEER)
    factories.UserFactory(email="someone@example.com")
    system = Principal.system()
    manifests.apply(parse_yaml(WORLD_MANIFESTS), actor=system)
    TeamMembership.objects.create(
        team=Team.objects.get(name="esc-blue"), user=User.objects.get(email=PEER), role="member"
    )
    grant = [va.PermissionSpec("provider-account-access", "provider-account", OPENAI)]
    va.va_create(
        actor=system,
        spec=va.VirtualAccountSpec(name=BOT, owner_team="esc-red", permissions=grant),
        created_via="apply",  # keeps the token retrievable once ("Get token")
    )


def _bind(user: User, role_slug: str, perms: frozenset[Permission], team: Team | None) -> None:
    kind = Role.ResourceType.TEAM if team else Role.ResourceType.TENANT
    role = Role.objects.create(
        slug=role_slug, display_name=role_slug, resource_type=kind, permissions=sorted(perms)
    )
    binding = RoleBinding.objects.create(name=f"{role_slug}-binding")
    RoleBindingSubject.objects.create(binding=binding, user=user)
    RoleBindingGrant.objects.create(
        binding=binding,
        role=role,
        resource_type=kind,
        resource_fqn=team.name if team else "tenant",
        team=team,
    )


def grantor_with(rights: Rights) -> User:
    """The grantor, given `rights` directly in the tables (as an admin would have)."""
    user = factories.UserFactory(email=GRANTOR)
    if rights.tenant:
        _bind(user, "esc-grantor-tenant", rights.tenant, None)
    for index, (team_name, perms) in enumerate(sorted(rights.team_roles.items())):
        if perms:
            _bind(user, f"esc-grantor-team-{index}", perms, Team.objects.get(name=team_name))
    for names, role in ((rights.member_of, "member"), (rights.manager_of, "manager")):
        for name in names:
            TeamMembership.objects.create(team=Team.objects.get(name=name), user=user, role=role)
    for account, role_id in rights.provider_roles.items():
        Collaborator.objects.create(
            provider_account=ProviderAccount.objects.get(name=account), user=user, role_id=role_id
        )
    if rights.mcp_role:
        Collaborator.objects.create(
            mcp_server=McpServer.objects.get(name=MCP), user=user, role_id=rights.mcp_role
        )
    return user


# --- capabilities as accounts.policy decides them --------------------------------------------

Capability = tuple[Any, ...]


def capabilities(principal: Principal, *, with_team_data: bool = True) -> set[Capability]:
    """Everything `principal` may do in the world, one tuple per allowed decision."""
    caps: set[Capability] = set()
    if principal.is_tenant_admin:
        caps.add(("tenant-admin",))
    for perm in ALL_PERMISSIONS:
        if decide(principal, perm).allowed:
            caps.add(("tenant", perm))
    for team_id in Team.objects.values_list("pk", flat=True):
        for perm in ALL_PERMISSIONS:
            if decide(principal, perm, team_id=team_id).allowed:
                caps.add(("team", team_id, perm))
        if with_team_data and team_id in principal.member_team_ids:
            caps.add(("team-data", team_id))
    resources = [("provider-account", pk) for pk in ProviderAccount.objects.values_list("pk")]
    resources += [("mcp-server", pk) for pk in McpServer.objects.values_list("pk")]
    for kind, (pk,) in resources:
        for perm in set().union(*RESOURCE_ROLE_PERMISSIONS.values()):
            if decide(principal, perm, resource=(kind, pk)).allowed:
                caps.add(("resource", kind, pk, perm))
        manage = {"provider-account": Permission.PROVIDER_ACCOUNT_MANAGE}.get(
            kind, Permission.MCP_SERVER_MANAGE
        )
        if ("resource", kind, pk, manage) in caps:  # Manage lets one read (as selectors do)
            read = (
                Permission.PROVIDER_ACCOUNT_READ
                if kind == "provider-account"
                else (Permission.MCP_SERVER_READ)
            )
            caps.add(("resource", kind, pk, read))
    for account_id, model in ProviderModel.objects.values_list("account_id", "name"):
        target = (account_id, model)
        if decide(principal, Permission.PROVIDER_ACCOUNT_USE, target=target).allowed:
            caps.add(("invoke", account_id, model))
    return caps


def user_caps(email: str, *, with_team_data: bool = True) -> set[Capability]:
    principal = principal_for_user(User.objects.get(email=email))
    return capabilities(principal, with_team_data=with_team_data)


def snapshot() -> list[list[dict[str, Any]]]:
    """Every row of every governed table, ordered by primary key.

    `last_used_at` is left out: authenticating the grantor's own token records its use.
    """
    tables = []
    for model in GOVERNED:
        columns = [f.attname for f in model._meta.concrete_fields if f.name != "last_used_at"]
        tables.append(list(model._default_manager.order_by("pk").values(*columns)))
    return tables


# --- running one example ---------------------------------------------------------------------


@dataclass
class Outcome:
    """Counts both outcomes so a test can prove it saw grants and refusals."""

    counts: Counter[str] = field(default_factory=Counter)

    def check(self) -> None:
        """Grants and refusals both happened, and every interface tried granted something."""
        assert self.counts["granted"] > 0, self.counts
        assert self.counts["refused"] > 0, self.counts
        tried = {k.partition(":")[2] for k in self.counts if ":" in k}
        granted = {k.partition(":")[2] for k in self.counts if k.startswith("granted:")}
        assert tried == granted, self.counts


@contextmanager
def rolled_back() -> Iterator[None]:
    """One example's rows live in a savepoint that is always rolled back."""
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


def api_for(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {factories.pat_for(user, uuid.uuid4().hex)}")
    return client


def api_result(response: Any, ok: tuple[int, ...] = (200, 201)) -> Any:
    """The body of a success; a refusal raises like the service would have."""
    if response.status_code in ok:
        return response.json()
    assert response.status_code in (400, 403, 404, 409), (response.status_code, response.content)
    raise PolicyDenied("api", f"{response.status_code}: {response.content!r}")


def apply_manifest(client: APIClient, manifest: dict[str, Any]) -> None:
    """Through the Apply API, as `gateway apply` sends it."""
    response = client.put("/api/v1/apply", {"manifest": manifest}, format="json")
    api_result(response)


def attempt(
    outcome: Outcome,
    grantor: User,
    act: Callable[[], Callable[[], set[Capability]] | None],
    affected: tuple[str, ...] = (GRANTOR, PEER),
    interface: str = "service",
) -> bool:
    """Run `act`: a grant (True) gives nothing the grantor lacks; a refusal changes nothing.

    `act` may return a function giving the capabilities of something it created (a virtual
    account's token), which must all be the grantor's too.
    """
    held = user_caps(grantor.email)
    # Team data is not a policy decision: it counts for the grantor (joining a team to read
    # its logs is escalation), not for whom the grantor adds to a team they manage.
    caps_of = {
        email: functools.partial(user_caps, email, with_team_data=email == grantor.email)
        for email in affected
    }
    before_caps = {email: caps() for email, caps in caps_of.items()}
    before_rows = snapshot()
    try:
        created = act()
    except REFUSALS:
        outcome.counts["refused"] += 1
        outcome.counts[f"refused:{interface}"] += 1
        assert snapshot() == before_rows, f"a refusal through {interface} changed the database"
        return False
    outcome.counts["granted"] += 1
    outcome.counts[f"granted:{interface}"] += 1
    for email in affected:
        gained = caps_of[email]() - before_caps[email]
        assert gained <= held, f"{email} gained {sorted(map(str, gained - held))}"
    if created is not None:
        extra = created() - held
        assert not extra, f"created principal holds {sorted(map(str, extra))}"
    return True


def va_caps(name: str) -> Callable[[], set[Capability]]:
    """A virtual account's capabilities (team data aside: rules, not teams, show VAs data)."""

    def caps() -> set[Capability]:
        account = VirtualAccount.objects.get(name=name)
        return capabilities(va.principal_for_virtual_account(account), with_team_data=False)

    return caps


def token_caps(raw: str) -> Callable[[], set[Capability]]:
    """What a raw virtual account token can do, found the way authentication finds it."""

    def caps() -> set[Capability]:
        found = va.va_for_token(raw)
        assert found is not None
        return capabilities(va.principal_for_virtual_account(found[0]), with_team_data=False)

    return caps


# --- virtual accounts ------------------------------------------------------------------------

VA_GRANTS = (
    ("provider-account-access", "provider-account", OPENAI),
    ("provider-account-access", "provider-account", ANTHROPIC),
    ("provider-integration-access", "provider-integration", f"{OPENAI}/open"),
    ("provider-integration-access", "provider-integration", f"{OPENAI}/narrow"),
    ("mcp-server-user", "mcp-server", MCP),
)


@given(
    rights=rights(VA_KIT),
    owner=st.sampled_from(TEAMS),
    grants=st.lists(st.sampled_from(VA_GRANTS), min_size=1, max_size=3, unique=True),
)
@HYPOTHESIS
def _va_create_example(
    outcome: Outcome,
    rights: Rights,
    owner: str,
    grants: list[tuple[str, str, str]],
) -> None:
    def one(interface: str) -> bool:
        with rolled_back():
            grantor = grantor_with(rights)
            client = api_for(grantor)  # before the snapshot: the token is not the grant
            manifest = {
                "type": "virtual-account",
                "name": "esc-new-bot",
                "ownedBy": {"team": owner},
                "permissions": [
                    {"role_id": r, "resource_type": t, "resource_fqn": f} for r, t, f in grants
                ],
            }

            def act() -> Callable[[], set[Capability]]:
                if interface == "service":
                    spec = va.VirtualAccountSpec(
                        name="esc-new-bot",
                        owner_team=owner,
                        permissions=[va.PermissionSpec(*g) for g in grants],
                    )
                    va.va_create(actor=principal_for_user(grantor), spec=spec)
                elif interface == "api":
                    api_result(client.post("/api/v1/virtual-accounts", manifest, format="json"))
                else:
                    apply_manifest(client, manifest)
                return va_caps("esc-new-bot")

            return attempt(outcome, grantor, act, interface=interface)

    outcomes = {one(interface) for interface in INTERFACES_OF["_va_create_example"]}
    assert len(outcomes) == 1, "the interfaces disagree"


def test_virtual_accounts_never_get_more_than_their_creator_holds(world: None) -> None:
    outcome = Outcome()
    _va_create_example(outcome)
    outcome.check()


@given(
    rights=rights(VA_KIT),
    how=st.sampled_from(("regenerate", "get-token")),
)
@HYPOTHESIS
def _va_token_example(outcome: Outcome, rights: Rights, how: str) -> None:
    def one(interface: str) -> bool:
        with rolled_back():
            grantor = grantor_with(rights)
            client = api_for(grantor)  # before the snapshot: the token is not the grant

            def act() -> Callable[[], set[Capability]]:
                actor = principal_for_user(grantor)
                if interface == "service":
                    account = va.va_get_for(actor, BOT)
                    if how == "regenerate":
                        _token, raw = va.va_token_regenerate(actor=actor, account=account)
                    else:
                        raw = va.va_token_reveal(actor=actor, account=account)
                else:
                    path = "regenerate-token" if how == "regenerate" else "get-token"
                    body = api_result(client.post(f"/api/v1/virtual-accounts/{BOT}/{path}", {}))
                    raw = body["token"]
                return token_caps(raw)

            return attempt(outcome, grantor, act, interface=interface)

    outcomes = {one(interface) for interface in INTERFACES_OF["_va_token_example"]}
    assert len(outcomes) == 1, "the interfaces disagree"


def test_virtual_account_tokens_are_minted_only_by_those_holding_their_grants(
    world: None,
) -> None:
    outcome = Outcome()
    _va_token_example(outcome)
    outcome.check()


# --- role bindings ---------------------------------------------------------------------------

SUBJECTS = (("user", GRANTOR), ("user", PEER), ("team", "esc-red"), ("team", "esc-blue"))


@given(
    rights=rights(ROLE_KIT),
    subject=st.sampled_from(SUBJECTS),
    role=st.sampled_from(("tenant-admin", "member", "esc-custom-tenant", "esc-custom-team")),
    data=st.data(),
    team=st.sampled_from(TEAMS),
)
@HYPOTHESIS
def _role_binding_example(
    outcome: Outcome,
    rights: Rights,
    subject: tuple[str, str],
    role: str,
    data: st.DataObject,
    team: str,
) -> None:
    held = sorted(rights.tenant)
    custom_tenant = data.draw(
        st.frozensets(st.sampled_from(held)) if held else st.just(frozenset())
    )
    custom_tenant |= data.draw(subsets(TENANT_POOL, 1))
    custom_team = data.draw(subsets(TEAM_POOL, 2))

    def one(interface: str) -> bool:
        with rolled_back():
            Role.objects.create(
                slug="esc-custom-tenant",
                display_name="custom tenant",
                resource_type="tenant",
                permissions=sorted(custom_tenant),
            )
            Role.objects.create(
                slug="esc-custom-team",
                display_name="custom team",
                resource_type="team",
                permissions=sorted(custom_team),
            )
            grantor = grantor_with(rights)
            client = api_for(grantor)  # before the snapshot: the token is not the grant
            scope = "team" if role == "esc-custom-team" else "tenant"
            fqn = team if scope == "team" else "tenant"
            body = {
                "name": "esc-request",
                "subjects": [{"type": subject[0], "name": subject[1]}],
                "permissions": [{"resourceType": scope, "resourceFqn": fqn, "role": role}],
            }

            def act() -> None:
                if interface == "service":
                    account_services.role_binding_put(
                        actor=principal_for_user(grantor),
                        name="esc-request",
                        subjects=[account_services.SubjectRef(*subject)],
                        grants=[account_services.GrantRef(scope, fqn, role)],
                    )
                elif interface == "api":
                    api_result(client.post("/api/v1/role-bindings", body, format="json"))
                else:
                    apply_manifest(client, {"type": "role-binding", **body})

            return attempt(outcome, grantor, act, interface=interface)

    outcomes = {one(interface) for interface in INTERFACES_OF["_role_binding_example"]}
    assert len(outcomes) == 1, "the interfaces disagree"


def test_role_bindings_never_hand_out_more_than_the_grantor_holds(world: None) -> None:
    outcome = Outcome()
    _role_binding_example(outcome)
    outcome.check()


@given(
    rights=rights(ROLE_KIT),
    data=st.data(),
)
@HYPOTHESIS
def _role_edit_example(outcome: Outcome, rights: Rights, data: st.DataObject) -> None:
    """The grantor edits a role bound to themselves and a peer, adding permissions: some they
    hold (granted), and sometimes one they lack (refused)."""

    held = sorted(rights.tenant)
    added = data.draw(st.frozensets(st.sampled_from(held)) if held else st.just(frozenset()))
    added |= data.draw(subsets(TENANT_POOL, 1))
    wanted = sorted(added)

    def one(interface: str) -> bool:
        with rolled_back():
            grantor = grantor_with(rights)
            client = api_for(grantor)  # before the snapshot: the token is not the grant
            _bind(grantor, "esc-shared", frozenset(), None)
            role = Role.objects.get(slug="esc-shared")
            binding = RoleBinding.objects.get(name="esc-shared-binding")
            RoleBindingSubject.objects.create(binding=binding, user=User.objects.get(email=PEER))

            def act() -> None:
                if interface == "service":
                    account_services.role_update(
                        actor=principal_for_user(grantor), role=role, permissions=wanted
                    )
                elif interface == "api":
                    api_result(
                        client.patch(
                            f"/api/v1/roles/{role.slug}", {"permissions": wanted}, format="json"
                        )
                    )
                else:
                    manifest = {
                        "type": "role",
                        "name": role.slug,
                        "displayName": role.display_name,
                        "resourceType": "tenant",
                        "permissions": wanted,
                    }
                    apply_manifest(client, manifest)

            return attempt(outcome, grantor, act, interface=interface)

    outcomes = {one(interface) for interface in INTERFACES_OF["_role_edit_example"]}
    assert len(outcomes) == 1, "the interfaces disagree"


def test_editing_a_role_one_holds_never_adds_what_one_lacks(world: None) -> None:
    outcome = Outcome()
    _role_edit_example(outcome)
    outcome.check()


# --- teams -----------------------------------------------------------------------------------


@given(
    rights=rights(TEAM_KIT),
    team=st.sampled_from(TEAMS),
    who=st.sampled_from((GRANTOR, PEER)),
    role=st.sampled_from(("member", "manager")),
    team_grant=subsets(TENANT_POOL, 3),
)
@HYPOTHESIS
def _membership_example(
    outcome: Outcome,
    rights: Rights,
    team: str,
    who: str,
    role: str,
    team_grant: frozenset[Permission],
) -> None:
    """Join a team (or make someone its manager) whose binding grants `team_grant`."""

    def one(interface: str) -> bool:
        with rolled_back():
            grantor = grantor_with(rights)
            client = api_for(grantor)  # before the snapshot: the token is not the grant
            target_team = Team.objects.get(name=team)
            if team_grant:  # what belonging to the team brings, e.g. an admins team
                role_row = Role.objects.create(
                    slug="esc-team-brings",
                    display_name="team brings",
                    resource_type="tenant",
                    permissions=sorted(team_grant),
                )
                binding = RoleBinding.objects.create(name="esc-team-brings")
                RoleBindingSubject.objects.create(binding=binding, team=target_team)
                RoleBindingGrant.objects.create(
                    binding=binding, role=role_row, resource_type="tenant", resource_fqn="tenant"
                )
            user = User.objects.get(email=who)

            def act() -> None:
                if interface == "service":
                    team_services.team_membership_add(
                        actor=principal_for_user(grantor), team=target_team, user=user, role=role
                    )
                elif interface == "api":
                    api_result(
                        client.post(
                            f"/api/v1/teams/{team}/members",
                            {"email": who, "role": role},
                            format="json",
                        )
                    )
                else:
                    manifest = manifests.kinds()["team"].current(team)
                    assert manifest is not None
                    key = "members" if role == "member" else "managers"
                    manifest[key] = sorted({*manifest.get(key, []), who})
                    apply_manifest(client, manifest)

            return attempt(outcome, grantor, act, interface=interface)

    outcomes = {one(interface) for interface in INTERFACES_OF["_membership_example"]}
    assert len(outcomes) == 1, "the interfaces disagree"


def test_joining_teams_or_appointing_managers_never_escalates(world: None) -> None:
    outcome = Outcome()
    _membership_example(outcome)
    outcome.check()


@given(rights=rights(TEAM_KIT), team=st.sampled_from(TEAMS))
@HYPOTHESIS
def _tenant_admin_team_example(outcome: Outcome, rights: Rights, team: str) -> None:
    """A team whose members are tenant admins: joining it is becoming an admin."""
    with rolled_back():
        binding = RoleBinding.objects.create(name="esc-admins")
        RoleBindingSubject.objects.create(binding=binding, team=Team.objects.get(name=team))
        RoleBindingGrant.objects.create(
            binding=binding,
            role=Role.objects.get(slug=TENANT_ADMIN),
            resource_type="tenant",
            resource_fqn="tenant",
        )
        grantor = grantor_with(rights)
        target = Team.objects.get(name=team)

        def act() -> None:
            team_services.team_membership_add(
                actor=principal_for_user(grantor), team=target, user=grantor
            )

        attempt(outcome, grantor, act)


def test_nobody_but_an_admin_joins_a_team_of_admins(world: None) -> None:
    outcome = Outcome()
    _tenant_admin_team_example(outcome)
    # Grantors already in the team "join" as a no-op (checked to gain nothing); the others,
    # tenant-wide team managers included, are refused.
    assert outcome.counts["refused"] > 0, outcome.counts
    # ... while a tenant admin still can add people to such a team.
    admin = principal_for_user(factories.tenant_admin())
    peer = User.objects.get(email=PEER)
    red = Team.objects.get(name="esc-red")
    assert team_services.team_membership_add(actor=admin, team=red, user=peer)


# --- provider accounts and MCP servers -------------------------------------------------------


@given(
    rights=rights(PROVIDER_KIT),
    account=st.sampled_from((OPENAI, ANTHROPIC)),
    subject=st.sampled_from((f"user:{GRANTOR}", f"user:{PEER}", "team:esc-blue")),
    role_id=st.sampled_from(("provider-account-manager", "provider-account-access")),
)
@HYPOTHESIS
def _collaborator_example(
    outcome: Outcome, rights: Rights, account: str, subject: str, role_id: str
) -> None:
    def one(interface: str) -> bool:
        with rolled_back():
            grantor = grantor_with(rights)
            client = api_for(grantor)  # before the snapshot: the token is not the grant
            target = ProviderAccount.objects.get(name=account)

            def act() -> None:
                if interface == "service":
                    current = [
                        provider_services.CollaboratorSpec(c.subject, c.role_id)
                        for c in target.collaborators.select_related("user", "team")
                    ]
                    provider_services.provider_account_update(
                        actor=principal_for_user(grantor),
                        account=target,
                        collaborators=[
                            *current,
                            provider_services.CollaboratorSpec(subject, role_id),
                        ],
                    )
                else:
                    manifest = manifests.kinds()[target.manifest_type].current(account)
                    assert manifest is not None
                    collaborators = manifest.get("collaborators", [])
                    manifest["collaborators"] = [
                        *collaborators,
                        {"subject": subject, "role_id": role_id},
                    ]
                    apply_manifest(client, manifest)

            return attempt(outcome, grantor, act, interface=interface)

    outcomes = {one(interface) for interface in INTERFACES_OF["_collaborator_example"]}
    assert len(outcomes) == 1, "the interfaces disagree"


def test_provider_account_collaborators_never_exceed_the_grantor(world: None) -> None:
    outcome = Outcome()
    _collaborator_example(outcome)
    outcome.check()


@given(
    rights=rights(MCP_KIT),
    subject=st.sampled_from((f"user:{GRANTOR}", f"user:{PEER}", "team:esc-blue")),
    role_id=st.sampled_from(("mcp-server-manager", "mcp-server-user")),
)
@HYPOTHESIS
def _mcp_collaborator_example(outcome: Outcome, rights: Rights, subject: str, role_id: str) -> None:
    with rolled_back():
        grantor = grantor_with(rights)
        client = api_for(grantor)  # before the snapshot: the token is not the grant

        def act() -> None:
            manifest = manifests.kinds()["mcp-server/remote"].current(MCP)
            assert manifest is not None
            manifest["collaborators"] = [
                *manifest.get("collaborators", []),
                {"subject": subject, "role_id": role_id},
            ]
            apply_manifest(client, manifest)

        attempt(outcome, grantor, act, interface="apply")


def test_mcp_server_collaborators_never_exceed_the_grantor(world: None) -> None:
    outcome = Outcome()
    _mcp_collaborator_example(outcome)
    outcome.check()


# --- personal access tokens ------------------------------------------------------------------


@given(rights=rights(), owner=st.sampled_from((GRANTOR, PEER)))
@HYPOTHESIS
def _pat_example(outcome: Outcome, rights: Rights, owner: str) -> None:
    """A PAT carries exactly its owner's rights, and only its owner mints it."""
    with rolled_back():
        grantor = grantor_with(rights)

        def act() -> Callable[[], set[Capability]]:
            _token, raw = account_services.pat_create(
                actor=principal_for_user(grantor),
                user=User.objects.get(email=owner),
                name="esc-token",
            )
            return lambda: pat_caps(raw)

        attempt(outcome, grantor, act)


def pat_caps(raw: str) -> set[Capability]:
    """What a raw PAT authenticates as, through the API's own authentication."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    me = client.get("/api/v1/me")
    assert me.status_code == 200, me.content
    return user_caps(me.json()["email"])


def test_personal_access_tokens_carry_exactly_their_owners_rights(world: None) -> None:
    outcome = Outcome()
    _pat_example(outcome)
    outcome.check()


def test_token_api_mints_only_for_the_caller_and_never_for_a_virtual_account(
    world: None,
) -> None:
    peer = User.objects.get(email=PEER)
    client = api_for(peer)
    response = client.post(
        "/api/v1/personal-access-tokens", {"name": "mine", "user": "grantor"}, format="json"
    )
    assert response.status_code == 201, response.content
    token = PersonalAccessToken.objects.get(digest__isnull=False, name="mine")
    assert token.user_id == peer.pk
    assert pat_caps(response.json()["token"]) == user_caps(PEER)

    raw = va.va_token_reveal(actor=Principal.system(), account=VirtualAccount.objects.get(name=BOT))
    bot = APIClient()
    bot.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    before = snapshot()
    for path, body in (
        ("/api/v1/personal-access-tokens", {"name": "bot-pat"}),
        (
            "/api/v1/virtual-accounts",
            {
                "name": "bot-child",
                "ownedBy": {"team": "esc-red"},
                "permissions": [
                    dict(zip(("role_id", "resource_type", "resource_fqn"), g, strict=True))
                    for g in VA_GRANTS[:1]
                ],
            },
        ),
        (f"/api/v1/virtual-accounts/{BOT}/regenerate-token", {}),
        ("/api/v1/teams/esc-red/members", {"email": PEER, "role": "manager"}),
    ):
        response = bot.post(path, body, format="json")
        assert response.status_code in (403, 404), (path, response.status_code)
    assert snapshot() == before
