"""The server-rendered console: sign-in, invitations, users, roles, bindings, tokens, audit."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import (
    TEAM_MANAGER,
    AuditEvent,
    PersonalAccessToken,
    Role,
    RoleBinding,
    User,
)
from accounts.policy import TEAM_SCOPED_PERMISSIONS
from accounts.tokens import pat_generate
from gateway_project.crypto import keyed_digest
from teams.models import Team, TeamMembership
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(db):
    return factories.UserFactory(email="admin@example.com", tenant_role_id="tenant-admin")


@pytest.fixture
def admin_client(client, admin):
    client.force_login(admin)
    return client


@pytest.fixture
def member(db):
    return factories.UserFactory(email="member@example.com", display_name="Mia Member")


@pytest.fixture
def member_client(client, member):
    client.force_login(member)
    return client


def make_role(slug: str, permissions: list[str], resource_type: str = "tenant") -> Role:
    return Role.objects.create(
        slug=slug, display_name=slug.title(), resource_type=resource_type, permissions=permissions
    )


def make_pat(user: User, name: str = "ci") -> PersonalAccessToken:
    _raw, prefix, digest = pat_generate()
    return PersonalAccessToken.objects.create(user=user, name=name, prefix=prefix, digest=digest)


# --- sign-in -----------------------------------------------------------------------------


def test_login_page_renders_the_email_form(client):
    response = client.get(reverse("accounts:login"))

    assert response.status_code == 200
    assert b'type="email" name="username"' in response.content
    assert b'name="password"' in response.content


def test_login_with_email_and_password_starts_a_session(client, admin):
    response = client.post(
        reverse("accounts:login"),
        {"username": "ADMIN@example.com", "password": factories.PASSWORD},
    )

    assert response.status_code == 302
    assert response["Location"] == "/"
    assert client.session["_auth_user_id"] == str(admin.pk)


def test_login_with_a_wrong_password_is_refused(client, admin):
    response = client.post(
        reverse("accounts:login"), {"username": "admin@example.com", "password": "wrong"}
    )

    assert response.status_code == 200
    assert b"Please enter a correct email and password" in response.content
    assert "_auth_user_id" not in client.session


def test_deactivated_user_cannot_log_in(client, member):
    User.objects.filter(pk=member.pk).update(is_active=False)

    response = client.post(
        reverse("accounts:login"),
        {"username": "member@example.com", "password": factories.PASSWORD},
    )

    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


def test_logout_needs_post_and_ends_the_session(admin_client):
    assert admin_client.get(reverse("accounts:logout")).status_code == 405

    response = admin_client.post(reverse("accounts:logout"))

    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:login")
    after = admin_client.get(reverse("accounts:user_list"))
    assert after.status_code == 302
    assert after["Location"] == f"{reverse('accounts:login')}?next=/users/"


def test_home_redirects_to_teams(admin_client):
    response = admin_client.get("/")

    assert response.status_code == 302
    assert response["Location"] == reverse("teams:team_list")


def test_header_shows_the_user_and_a_logout_form(admin_client, admin):
    response = admin_client.get(reverse("accounts:pat_list"))

    html = response.content.decode()
    assert f'data-testid="signed-in-user">{admin.display_name}</strong>' in html
    assert f'<form method="post" action="{reverse("accounts:logout")}">' in html


@pytest.mark.parametrize(
    "url",
    [
        "/users/",
        "/users/invite/",
        "/roles/",
        "/role-bindings/",
        "/tokens/",
        "/tokens/new/",
        "/audit/",
        "/teams/",
        "/teams/new/",
    ],
)
def test_anonymous_visitors_are_sent_to_login(client, url):
    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"] == f"/login/?next={url}"


# --- every page, navigation, denial ------------------------------------------------------


@pytest.fixture
def world(admin, member):
    """One of everything, for rendering every page."""
    team = factories.TeamFactory(name="platform")
    TeamMembership.objects.create(team=team, user=member, role="member")
    role = make_role("auditor", ["settings:ListSettings"])
    binding = RoleBinding.objects.create(name="auditors")
    token = make_pat(admin)
    event = AuditEvent.objects.create(
        actor="user:admin@example.com",
        action="team.created",
        target_type="team",
        target_id=str(team.pk),
        target="platform",
        after={"name": "platform"},
        source="console",
    )
    return {"team": team, "role": role, "binding": binding, "token": token, "event": event}


def page_urls(world: dict[str, Any], member: User) -> list[str]:
    return [
        reverse("accounts:user_list"),
        reverse("accounts:user_invite"),
        reverse("accounts:user_detail", args=[member.pk]),
        reverse("accounts:role_list"),
        reverse("accounts:role_create"),
        reverse("accounts:role_detail", args=["auditor"]),
        reverse("accounts:role_edit", args=["auditor"]),
        reverse("accounts:role_edit", args=[TEAM_MANAGER]),
        reverse("accounts:role_delete", args=["auditor"]),
        reverse("accounts:role_binding_list"),
        reverse("accounts:role_binding_create"),
        reverse("accounts:role_binding_edit", args=["auditors"]),
        reverse("accounts:role_binding_delete", args=["auditors"]),
        reverse("accounts:pat_list"),
        reverse("accounts:pat_list") + "?all=1",
        reverse("accounts:pat_create"),
        reverse("accounts:pat_revoke", args=[world["token"].pk]),
        reverse("accounts:audit_list"),
        reverse("accounts:audit_detail", args=[world["event"].pk]),
        reverse("teams:team_list"),
        reverse("teams:team_create"),
        reverse("teams:team_detail", args=[world["team"].pk]),
        reverse("teams:team_detail", args=[Team.objects.get(name="everyone").pk]),
        reverse("teams:team_delete", args=[world["team"].pk]),
    ]


def test_every_page_renders_for_a_tenant_admin(admin_client, world, member):
    statuses = {url: admin_client.get(url).status_code for url in page_urls(world, member)}

    assert statuses == dict.fromkeys(statuses, 200)


def test_admin_navigation_lists_every_section_with_unbuilt_pages_disabled(admin_client):
    html = admin_client.get(reverse("teams:team_list")).content.decode()

    for label in (
        "Users",
        "Teams",
        "Roles",
        "Personal Access Tokens",
        "Audit log",
        "Models",
        "MCP Servers",
        "Apply YAML",
        "Settings (SSO)",
    ):
        assert f"<span>{label}</span>" in html
    for label in (
        "Virtual Account Tokens",
        "Controls (Data Access)",
        "Monitor",
        "Requests",
        "Metrics",
    ):
        assert f"<span>{label}</span>" in html
    assert 'aria-disabled="true"' not in html  # every page of the console is built
    assert '<a class="nav-item" href="/monitor/metrics/">' in html
    assert '<a class="nav-item" href="/settings/sso/">' in html
    assert '<a class="nav-item" href="/models/">' in html
    assert '<a class="nav-item" href="/mcp-servers/">' in html
    assert 'href="/teams/" aria-current="page"' in html


def test_member_navigation_hides_what_they_may_not_use(member_client):
    html = member_client.get(reverse("teams:team_list")).content.decode()

    for label in ("Teams", "Personal Access Tokens", "Apply YAML", "Monitor"):
        assert f"<span>{label}</span>" in html
    for label in (
        "Users",
        "Roles",
        "Audit log",
        "Settings (SSO)",
        "Virtual Account Tokens",
        "Models",
        "MCP Servers",
        "Controls (Data Access)",
    ):
        assert f"<span>{label}</span>" not in html
    assert 'href="/users/"' not in html


def test_list_permission_shows_the_users_entry(client):
    make_role("user-reader", ["user:ListUsers"])
    client.force_login(factories.UserFactory(tenant_role_id="user-reader"))

    html = client.get(reverse("teams:team_list")).content.decode()

    assert '<a class="nav-item" href="/users/">' in html
    assert "<span>Roles</span>" not in html


@pytest.mark.parametrize(
    "url",
    [
        "/users/",
        "/users/invite/",
        "/roles/",
        "/roles/-/new/",
        "/role-bindings/",
        "/role-bindings/-/new/",
        "/audit/",
        "/teams/new/",
    ],
)
def test_member_is_refused_admin_pages(member_client, url):
    response = member_client.get(url)

    assert response.status_code == 403
    assert b"You don't have permission to do this" in response.content


def test_member_may_see_their_own_profile_but_not_others(member_client, member, admin):
    assert member_client.get(reverse("accounts:user_detail", args=[member.pk])).status_code == 200
    assert member_client.get(reverse("accounts:user_detail", args=[admin.pk])).status_code == 404


# --- users and invitations ---------------------------------------------------------------


def test_invite_shows_the_link_once_and_accepting_sets_the_password(admin_client, client):
    response = admin_client.post(
        reverse("accounts:user_invite"),
        {"email": "New.Person@Example.com", "display_name": "New Person", "tenant_role": "member"},
    )

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    link = response.context["result"].link
    assert link.startswith("http://127.0.0.1:8000/invite/")
    assert link.encode() in response.content
    invited = User.objects.get(email="new.person@example.com")
    assert invited.display_name == "New Person"
    assert invited.has_usable_password() is False
    user_page = admin_client.get(reverse("accounts:user_detail", args=[invited.pk]))
    assert link.encode() not in user_page.content
    assert b"Resend invitation" in user_page.content

    path = urlsplit(link).path
    client.logout()
    form_page = client.get(path)
    assert form_page.status_code == 200
    assert b"new.person@example.com" in form_page.content

    mismatch = client.post(path, {"password1": "a-long-passphrase-1", "password2": "other"})
    assert mismatch.status_code == 400
    assert b"The two passwords do not match." in mismatch.content

    weak = client.post(path, {"password1": "12345678", "password2": "12345678"})
    assert weak.status_code == 400
    assert b"This password is too short" in weak.content

    done = client.post(
        path, {"password1": "a-long-passphrase-1", "password2": "a-long-passphrase-1"}
    )
    assert done.status_code == 302
    assert done["Location"] == "/"
    assert client.session["_auth_user_id"] == str(invited.pk)
    invited.refresh_from_db()
    assert invited.check_password("a-long-passphrase-1") is True
    assert client.get(path).status_code == 404


def test_invite_says_the_link_was_emailed_when_mail_is_configured(admin_client, settings):
    settings.EMAIL_HOST = "smtp.example.com"

    response = admin_client.post(
        reverse("accounts:user_invite"),
        {"email": "mailed@example.com", "display_name": "", "tenant_role": "member"},
    )

    assert response.status_code == 200
    assert b"We emailed an invitation link to" in response.content
    assert b"/invite/" not in response.content


def test_invite_of_an_existing_email_is_a_form_error(admin_client, member):
    response = admin_client.post(
        reverse("accounts:user_invite"),
        {"email": "member@example.com", "display_name": "", "tenant_role": "member"},
    )

    assert response.status_code == 400
    assert response.context["form"].non_field_errors() == [
        "a user with email member@example.com already exists"
    ]


def test_invite_form_offers_only_assignable_roles(client):
    make_role("user-admin", ["user:ManageUsers", "user:ListUsers"])
    client.force_login(factories.UserFactory(tenant_role_id="user-admin"))

    response = client.get(reverse("accounts:user_invite"))

    choices = [value for value, _ in response.context["form"].fields["tenant_role"].choices]
    assert choices == ["member", "user-admin"]


def test_user_list_searches_sorts_and_paginates(admin_client, admin):
    for n in range(30):
        factories.UserFactory(email=f"person{n:02d}@example.com", display_name=f"P {n:02d}")

    first = admin_client.get(reverse("accounts:user_list"))
    second = admin_client.get(reverse("accounts:user_list") + "?page=2")
    search = admin_client.get(reverse("accounts:user_list") + "?q=person0")
    reverse_sorted = admin_client.get(reverse("accounts:user_list") + "?sort=-email")
    bogus = admin_client.get(reverse("accounts:user_list") + "?sort=password")

    assert len(first.context["page"]) == 25
    assert first.context["page"].paginator.count == 31
    assert [u.email for u in second.context["page"]][-1] == "person29@example.com"
    assert [u.email for u in search.context["page"]] == [
        f"person0{n}@example.com" for n in range(10)
    ]
    assert reverse_sorted.context["page"][0].email == "person29@example.com"
    assert bogus.context["sort"] == "email"
    assert bogus.context["page"][0].email == "admin@example.com"


def test_user_list_shows_role_and_status(admin_client, member):
    User.objects.create_user("invited@example.com")
    User.objects.filter(pk=member.pk).update(is_active=False)

    html = admin_client.get(reverse("accounts:user_list")).content.decode()

    assert '<span class="badge badge-indigo">Tenant Admin</span>' in html
    assert '<span class="badge badge-amber">Invited</span>' in html
    assert '<span class="badge badge-red">Deactivated</span>' in html
    assert '<span class="badge badge-green">Active</span>' in html


def test_user_list_uses_a_bounded_number_of_queries(admin_client, django_assert_max_num_queries):
    for _ in range(35):
        factories.UserFactory()

    with django_assert_max_num_queries(10):
        response = admin_client.get(reverse("accounts:user_list"))

    assert len(response.context["page"]) == 25


def test_user_detail_shows_teams_and_token_count(admin_client, member):
    team = factories.TeamFactory(name="research")
    TeamMembership.objects.create(team=team, user=member, role="manager")
    make_pat(member, "one")
    make_pat(member, "two")
    revoked = make_pat(member, "three")
    PersonalAccessToken.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())

    response = admin_client.get(reverse("accounts:user_detail", args=[member.pk]))

    html = response.content.decode()
    assert f'<a href="/teams/{team.pk}/">research</a>' in html
    assert 'data-testid="pat-count">2 active' in html


def test_admin_changes_a_users_role(admin_client, member):
    make_role("auditor", ["settings:ListSettings"])

    response = admin_client.post(
        reverse("accounts:user_update", args=[member.pk]),
        {"display_name": "Mia M.", "tenant_role": "auditor"},
    )

    assert response.status_code == 302
    member.refresh_from_db()
    assert (member.display_name, member.tenant_role_id) == ("Mia M.", "auditor")
    assert AuditEvent.objects.filter(action="user.updated", target_id=str(member.pk)).count() == 1


def test_member_can_rename_themselves_but_not_change_their_role(member_client, member):
    response = member_client.post(
        reverse("accounts:user_update", args=[member.pk]),
        {"display_name": "Mia", "tenant_role": "tenant-admin"},
    )

    assert response.status_code == 302
    member.refresh_from_db()
    assert (member.display_name, member.tenant_role_id) == ("Mia", "member")


def test_role_assigner_without_user_management_changes_only_the_role(client, member):
    make_role("assigner", ["tenant:AssignRole", "user:ListUsers"])
    make_role("reader", ["user:ListUsers"])
    client.force_login(factories.UserFactory(tenant_role_id="assigner"))

    page = client.get(reverse("accounts:user_detail", args=[member.pk]))
    response = client.post(
        reverse("accounts:user_update", args=[member.pk]),
        {"display_name": "Renamed", "tenant_role": "reader"},
    )

    assert list(page.context["form"].fields) == ["tenant_role"]
    assert response.status_code == 302
    member.refresh_from_db()
    assert (member.display_name, member.tenant_role_id) == ("Mia Member", "reader")


def test_admin_deactivates_and_reactivates_a_user(admin_client, member):
    url = reverse("accounts:user_set_active", args=[member.pk])

    off = admin_client.post(url, {"active": "0"})
    member.refresh_from_db()
    assert (off.status_code, member.is_active) == (302, False)

    on = admin_client.post(url, {"active": "1"})
    member.refresh_from_db()
    assert (on.status_code, member.is_active) == (302, True)


def test_admin_cannot_deactivate_themselves(admin_client, admin):
    response = admin_client.post(
        reverse("accounts:user_set_active", args=[admin.pk]), {"active": "0"}, follow=True
    )

    admin.refresh_from_db()
    assert admin.is_active is True
    assert [str(m) for m in response.context["messages"]] == ["you cannot deactivate yourself"]


def test_member_cannot_deactivate_anyone(member_client, admin):
    response = member_client.post(
        reverse("accounts:user_set_active", args=[admin.pk]), {"active": "0"}
    )

    admin.refresh_from_db()
    assert response.status_code == 403
    assert admin.is_active is True


def test_resend_invitation_shows_a_new_link(admin_client):
    invited = User.objects.create_user("pending@example.com")

    response = admin_client.post(reverse("accounts:user_invitation_resend", args=[invited.pk]))

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    assert response.context["result"].link.encode() in response.content


def test_resend_invitation_is_refused_once_a_password_is_set(admin_client, member):
    response = admin_client.post(
        reverse("accounts:user_invitation_resend", args=[member.pk]), follow=True
    )

    assert [str(m) for m in response.context["messages"]] == [
        "this user has already set a password"
    ]


def test_unknown_invitation_link_is_a_404_page(client):
    response = client.get(reverse("accounts:invitation_accept", args=["nope"]))

    assert response.status_code == 404
    assert b"This invitation link cannot be used" in response.content


# --- roles -------------------------------------------------------------------------------


def test_role_list_shows_builtin_and_custom_roles_with_permissions(admin_client):
    make_role("auditor", ["settings:ListSettings"])

    response = admin_client.get(reverse("accounts:role_list"))

    html = response.content.decode()
    assert [r.slug for r in response.context["roles"]] == [
        "member",
        "team-manager",
        "tenant-admin",
        "auditor",
    ]
    assert '<span class="chip mono" title="List settings">settings:ListSettings</span>' in html
    assert '<span class="badge badge-indigo">All permissions</span>' in html


def test_team_manager_role_edit_offers_only_team_scoped_permissions(admin_client):
    response = admin_client.get(reverse("accounts:role_edit", args=[TEAM_MANAGER]))

    offered = {o.value for g in response.context["form"].permission_groups() for o in g.options}
    assert offered == {p.value for p in TEAM_SCOPED_PERMISSIONS}


def test_admin_edits_the_team_manager_role(admin_client):
    response = admin_client.post(
        reverse("accounts:role_edit", args=[TEAM_MANAGER]),
        {
            "display_name": "Team Manager",
            "description": "Runs a team.",
            "permissions": ["team:ReadTeam", "team:ManageTeam"],
        },
    )

    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:role_detail", args=[TEAM_MANAGER])
    role = Role.objects.get(slug=TEAM_MANAGER)
    assert role.permissions == ["team:ManageTeam", "team:ReadTeam"]
    assert role.description == "Runs a team."


def test_team_manager_role_refuses_tenant_permissions(admin_client):
    before = Role.objects.get(slug=TEAM_MANAGER).permissions

    response = admin_client.post(
        reverse("accounts:role_edit", args=[TEAM_MANAGER]),
        {"display_name": "Team Manager", "description": "", "permissions": ["user:ManageUsers"]},
    )

    assert response.status_code == 400
    assert response.context["form"].errors["permissions"] == [
        "Select a valid choice. user:ManageUsers is not one of the available choices."
    ]
    assert Role.objects.get(slug=TEAM_MANAGER).permissions == before


def test_fixed_roles_are_read_only(admin_client):
    response = admin_client.get(reverse("accounts:role_edit", args=["tenant-admin"]), follow=True)

    assert response.redirect_chain == [
        (reverse("accounts:role_detail", args=["tenant-admin"]), 302)
    ]
    assert [str(m) for m in response.context["messages"]] == [
        "The built-in role Tenant Admin cannot be edited."
    ]
    assert b"Edit</a>" not in response.content


def test_admin_creates_a_custom_role(admin_client):
    response = admin_client.post(
        reverse("accounts:role_create"),
        {
            "slug": "billing-auditor",
            "display_name": "Billing auditor",
            "description": "",
            "resource_type": "tenant",
            "permissions": ["settings:ListSettings", "user:ListUsers"],
        },
    )

    assert response.status_code == 302
    role = Role.objects.get(slug="billing-auditor")
    assert (role.builtin, role.permissions) == (False, ["settings:ListSettings", "user:ListUsers"])


def test_role_create_maps_service_errors_to_fields(admin_client):
    response = admin_client.post(
        reverse("accounts:role_create"),
        {
            "slug": "Bad Name",
            "display_name": "",
            "description": "",
            "resource_type": "tenant",
            "permissions": [],
        },
    )

    assert response.status_code == 400
    assert response.context["form"].errors == {
        "slug": ["3-64 lower-case letters, digits and '-', starting with a letter"]
    }


def test_custom_role_creation_refused_without_the_permissions_it_would_grant(client):
    make_role("role-admin", ["role:ManageRoles", "role:ListRoles"])
    client.force_login(factories.UserFactory(tenant_role_id="role-admin"))
    before = set(Role.objects.values_list("slug", flat=True))

    response = client.post(
        reverse("accounts:role_create"),
        {
            "slug": "sneaky",
            "display_name": "",
            "description": "",
            "resource_type": "tenant",
            "permissions": ["role:ListRoles", "user:ManageUsers"],
        },
    )

    assert response.status_code == 403
    assert set(Role.objects.values_list("slug", flat=True)) == before
    assert not AuditEvent.objects.filter(action="role.created").exists()


def test_role_delete_removes_an_unused_custom_role(admin_client):
    make_role("temp-role", [])

    response = admin_client.post(reverse("accounts:role_delete", args=["temp-role"]))

    assert response.status_code == 302
    assert not Role.objects.filter(slug="temp-role").exists()


def test_role_delete_refuses_a_role_in_use(admin_client):
    make_role("in-use", [])
    factories.UserFactory(tenant_role_id="in-use")

    response = admin_client.post(reverse("accounts:role_delete", args=["in-use"]), follow=True)

    assert Role.objects.filter(slug="in-use").exists()
    assert [str(m) for m in response.context["messages"]] == [
        "role 'in-use' is still assigned; unassign it first"
    ]


def test_role_binding_create_edit_and_delete(admin_client, member):
    make_role("auditor", ["settings:ListSettings"])
    team = factories.TeamFactory(name="platform")
    make_role("team-reader", ["team:ReadTeam"], resource_type="team")

    created = admin_client.post(
        reverse("accounts:role_binding_create"),
        {
            "name": "auditors",
            "description": "",
            "subjects": "user:member@example.com\nteam:platform",
            "grants": "tenant:org:auditor\nteam:platform:team-reader",
        },
    )
    assert created.status_code == 302
    binding = RoleBinding.objects.get(name="auditors")
    assert sorted(s.subject for s in binding.subjects.all()) == [
        "team:platform",
        "user:member@example.com",
    ]
    assert sorted(
        (g.resource_type, g.resource_fqn, g.role.slug, g.team_id) for g in binding.grants.all()
    ) == [("team", "platform", "team-reader", team.pk), ("tenant", "org", "auditor", None)]

    edit_page = admin_client.get(reverse("accounts:role_binding_edit", args=["auditors"]))
    initial = edit_page.context["form"].initial
    assert initial["subjects"] == "team:platform\nuser:member@example.com"
    assert initial["grants"] == "team:platform:team-reader\ntenant:org:auditor"

    edited = admin_client.post(
        reverse("accounts:role_binding_edit", args=["auditors"]),
        {
            "name": "ignored",
            "description": "",
            "subjects": "team:platform",
            "grants": "tenant:x:auditor",
        },
    )
    assert edited.status_code == 302
    assert [s.subject for s in binding.subjects.all()] == ["team:platform"]
    assert [(g.resource_fqn, g.role.slug) for g in binding.grants.all()] == [("x", "auditor")]

    deleted = admin_client.post(reverse("accounts:role_binding_delete", args=["auditors"]))
    assert deleted.status_code == 302
    assert not RoleBinding.objects.filter(name="auditors").exists()


def test_role_binding_errors_land_on_their_fields(admin_client):
    response = admin_client.post(
        reverse("accounts:role_binding_create"),
        {
            "name": "nobody",
            "description": "",
            "subjects": "user:ghost@example.com",
            "grants": "tenant:org:member",
        },
    )
    syntax = admin_client.post(
        reverse("accounts:role_binding_create"),
        {"name": "bad", "description": "", "subjects": "alice", "grants": "member"},
    )

    assert response.status_code == 400
    assert response.context["form"].errors == {"subjects": ["no user 'ghost@example.com'"]}
    assert syntax.context["form"].errors == {
        "subjects": ["'alice' is not user:<email> or team:<name>."],
        "grants": ["'member' is not tenant:<anything>:<role> or team:<team>:<role>."],
    }
    assert not RoleBinding.objects.exists()


def test_role_binding_create_does_not_replace_an_existing_binding(admin_client, member):
    RoleBinding.objects.create(name="taken")

    response = admin_client.post(
        reverse("accounts:role_binding_create"),
        {
            "name": "taken",
            "description": "",
            "subjects": "user:member@example.com",
            "grants": "tenant:org:member",
        },
    )

    assert response.status_code == 400
    assert response.context["form"].errors == {
        "name": ["A role binding named 'taken' already exists."]
    }
    assert not RoleBinding.objects.get(name="taken").subjects.exists()


# --- personal access tokens --------------------------------------------------------------


def test_pat_create_shows_the_token_once(member_client, member):
    response = member_client.post(
        reverse("accounts:pat_create"), {"name": "laptop", "expiry": "30"}
    )

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    raw = response.context["raw_token"]
    assert raw.startswith("gw_pat_")
    assert raw.encode() in response.content
    token = PersonalAccessToken.objects.get(user=member, name="laptop")
    assert token.digest == keyed_digest(raw)
    assert token.expires_at is not None
    assert 29 <= (token.expires_at - timezone.now()).days <= 30
    assert raw not in member_client.session.values()

    listing = member_client.get(reverse("accounts:pat_list"))
    assert raw.encode() not in listing.content
    assert f"<code>{token.prefix}…</code>".encode() in listing.content


def test_pat_create_without_expiry(member_client, member):
    member_client.post(reverse("accounts:pat_create"), {"name": "forever", "expiry": "never"})

    assert PersonalAccessToken.objects.get(user=member, name="forever").expires_at is None


def test_pat_create_with_a_taken_name_is_a_form_error(member_client, member):
    make_pat(member, "laptop")

    response = member_client.post(reverse("accounts:pat_create"), {"name": "laptop", "expiry": "7"})

    assert response.status_code == 400
    assert response.context["form"].non_field_errors() == [
        "you already have an active token named 'laptop'"
    ]
    assert PersonalAccessToken.objects.filter(user=member).count() == 1


def test_pat_revoke_asks_then_revokes(member_client, member):
    token = make_pat(member, "laptop")
    url = reverse("accounts:pat_revoke", args=[token.pk])

    confirm = member_client.get(url)
    token.refresh_from_db()
    assert (confirm.status_code, token.revoked_at) == (200, None)

    response = member_client.post(url)
    token.refresh_from_db()
    assert response.status_code == 302
    assert token.revoked_at is not None


def test_member_cannot_revoke_someone_elses_token(member_client, admin):
    token = make_pat(admin)

    response = member_client.post(reverse("accounts:pat_revoke", args=[token.pk]))

    token.refresh_from_db()
    assert response.status_code == 404
    assert token.revoked_at is None


def test_user_managers_see_and_revoke_every_users_tokens(admin_client, member):
    token = make_pat(member, "theirs")

    mine = admin_client.get(reverse("accounts:pat_list"))
    everyone = admin_client.get(reverse("accounts:pat_list") + "?all=1")
    revoked = admin_client.post(reverse("accounts:pat_revoke", args=[token.pk]))

    assert list(mine.context["page"]) == []
    assert [t.name for t in everyone.context["page"]] == ["theirs"]
    assert revoked["Location"] == reverse("accounts:pat_list") + "?all=1"
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_members_all_toggle_shows_only_their_own_tokens(member_client, member, admin):
    make_pat(admin, "admins")
    make_pat(member, "mine")

    response = member_client.get(reverse("accounts:pat_list") + "?all=1")

    assert [t.name for t in response.context["page"]] == ["mine"]
    assert b"All users" not in response.content


def test_pat_list_uses_a_bounded_number_of_queries(
    admin_client, admin, django_assert_max_num_queries
):
    users = [factories.UserFactory() for _ in range(5)]
    for n in range(35):
        make_pat(users[n % 5], f"token-{n}")

    with django_assert_max_num_queries(10):
        response = admin_client.get(reverse("accounts:pat_list") + "?all=1")

    assert len(response.context["page"]) == 25


# --- audit log ---------------------------------------------------------------------------


def test_audit_log_filter_finds_team_created(admin_client):
    admin_client.post(
        reverse("teams:team_create"),
        {"name": "research", "description": "", "members": "", "managers": ""},
    )
    admin_client.post(reverse("accounts:pat_create"), {"name": "noise", "expiry": "7"})

    response = admin_client.get(reverse("accounts:audit_list") + "?action=team.created")

    events = list(response.context["page"])
    assert [(e.action, e.target, e.actor, e.source) for e in events] == [
        ("team.created", "research", "user:admin@example.com", "console")
    ]
    detail = admin_client.get(reverse("accounts:audit_detail", args=[events[0].pk]))
    assert b"&quot;name&quot;: &quot;research&quot;" in detail.content


def test_audit_log_filters_combine(admin_client):
    for action, source in (("team.created", "api"), ("team.created", "console"), ("x", "api")):
        AuditEvent.objects.create(
            actor="system",
            action=action,
            target_type="team",
            target_id="1",
            target="t",
            source=source,
        )

    response = admin_client.get(reverse("accounts:audit_list") + "?action=team&source=api")

    assert [(e.action, e.source) for e in response.context["page"]] == [("team.created", "api")]


def test_audit_detail_is_hidden_from_members(member_client):
    event = AuditEvent.objects.create(
        actor="system", action="x", target_type="team", target_id="1", target="t", source="api"
    )

    assert member_client.get(reverse("accounts:audit_detail", args=[event.pk])).status_code == 403


def test_audit_list_is_newest_first_and_bounded_in_queries(
    admin_client, django_assert_max_num_queries
):
    for n in range(60):
        AuditEvent.objects.create(
            actor="system",
            action=f"a.{n}",
            target_type="team",
            target_id="1",
            target="t",
            source="system",
        )

    with django_assert_max_num_queries(10):
        response = admin_client.get(reverse("accounts:audit_list"))

    actions = [e.action for e in response.context["page"]]
    assert (len(actions), actions[0], actions[-1]) == (50, "a.59", "a.10")


def test_role_lists_use_a_bounded_number_of_queries(
    admin_client, member, django_assert_max_num_queries
):
    for n in range(32):
        role = make_role(f"role-{n:02d}", ["team:ReadTeam"])
        binding = RoleBinding.objects.create(name=f"binding-{n:02d}")
        binding.subjects.create(user=member)
        binding.grants.create(role=role, resource_type="tenant", resource_fqn="org")

    with django_assert_max_num_queries(9):
        roles = admin_client.get(reverse("accounts:role_list"))
    with django_assert_max_num_queries(14):
        bindings = admin_client.get(reverse("accounts:role_binding_list"))

    assert len(roles.context["roles"]) == 35
    assert len(bindings.context["page"]) == 25
