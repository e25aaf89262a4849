"""The teams console: list, create, members and managers, the everyone and SCIM teams."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import AuditEvent
from teams.models import Team, TeamMembership
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    client.force_login(
        factories.UserFactory(email="admin@example.com", tenant_role_id="tenant-admin")
    )
    return client


@pytest.fixture
def team(db):
    return factories.TeamFactory(name="platform", description="Runs the platform.")


def memberships(team: Team) -> set[tuple[str, str]]:
    return set(team.memberships.values_list("user__email", "role"))


def add(client, team: Team, email: str, role: str = "member"):
    return client.post(
        reverse("teams:team_member_add", args=[team.pk]), {"email": email, "role": role}
    )


def remove(client, team: Team, user, role: str = "member"):
    return client.post(
        reverse("teams:team_member_remove", args=[team.pk]), {"user": user.pk, "role": role}
    )


# --- list --------------------------------------------------------------------------------


def test_team_list_shows_counts_and_the_everyone_team(admin_client, team):
    factories.team_member_of(team)
    factories.team_member_of(team)
    factories.team_manager_of(team)

    response = admin_client.get(reverse("teams:team_list"))

    rows = {t.name: (t.member_count, t.manager_count) for t in response.context["page"]}
    assert rows == {"everyone": (0, 0), "platform": (2, 1)}
    assert b'<span class="muted">every user</span>' in response.content


def test_team_list_searches_sorts_and_paginates(admin_client):
    for n in range(30):
        factories.TeamFactory(name=f"squad-{n:02d}")
    busy = Team.objects.get(name="squad-07")
    factories.team_member_of(busy)

    page_two = admin_client.get(reverse("teams:team_list") + "?page=2")
    search = admin_client.get(reverse("teams:team_list") + "?q=squad-1")
    by_members = admin_client.get(reverse("teams:team_list") + "?sort=-members")
    descending = admin_client.get(reverse("teams:team_list") + "?sort=-name")

    assert [t.name for t in page_two.context["page"]] == [f"squad-{n}" for n in range(24, 30)]
    assert [t.name for t in search.context["page"]] == [f"squad-1{n}" for n in range(10)]
    assert by_members.context["page"][0].name == "squad-07"
    assert descending.context["page"][0].name == "squad-29"
    assert b'aria-sort="descending"' in descending.content


def test_member_sees_only_their_teams_and_everyone(client, team):
    factories.TeamFactory(name="hidden")
    user = factories.team_member_of(team)
    client.force_login(user)

    response = client.get(reverse("teams:team_list"))

    assert [t.name for t in response.context["page"]] == ["everyone", "platform"]
    assert b"New team" not in response.content


def test_team_list_uses_a_bounded_number_of_queries(admin_client, django_assert_max_num_queries):
    users = [factories.UserFactory() for _ in range(3)]
    for n in range(35):
        team = factories.TeamFactory(name=f"team-x{n:02d}")
        for user in users:
            TeamMembership.objects.create(team=team, user=user, role="member")

    with django_assert_max_num_queries(10):
        response = admin_client.get(reverse("teams:team_list"))

    assert len(response.context["page"]) == 25


# --- create, update, delete --------------------------------------------------------------


def test_admin_creates_a_team_with_members_and_managers(admin_client):
    factories.UserFactory(email="a@example.com")
    factories.UserFactory(email="b@example.com")
    factories.UserFactory(email="c@example.com")

    response = admin_client.post(
        reverse("teams:team_create"),
        {
            "name": "research",
            "description": "Research team",
            "members": "A@example.com, b@example.com\n",
            "managers": "c@example.com",
        },
    )

    team = Team.objects.get(name="research")
    assert response.status_code == 302
    assert response["Location"] == reverse("teams:team_detail", args=[team.pk])
    assert team.description == "Research team"
    assert memberships(team) == {
        ("a@example.com", "member"),
        ("b@example.com", "member"),
        ("c@example.com", "manager"),
    }


def test_team_create_with_an_unknown_email_is_a_field_error(admin_client):
    response = admin_client.post(
        reverse("teams:team_create"),
        {"name": "research", "description": "", "members": "ghost@example.com", "managers": ""},
    )

    assert response.status_code == 400
    assert response.context["form"].errors == {
        "members": ["no user with email 'ghost@example.com'"]
    }
    assert not Team.objects.filter(name="research").exists()


def test_team_create_with_a_taken_name_is_a_form_error(admin_client, team):
    response = admin_client.post(
        reverse("teams:team_create"),
        {"name": "Platform", "description": "", "members": "", "managers": ""},
    )

    assert response.status_code == 400
    assert response.context["form"].non_field_errors() == ["a team named 'Platform' already exists"]


def test_team_create_with_a_bad_name_is_a_field_error(admin_client):
    response = admin_client.post(
        reverse("teams:team_create"),
        {"name": "9lives", "description": "", "members": "", "managers": ""},
    )

    assert response.status_code == 400
    assert list(response.context["form"].errors) == ["name"]


def test_admin_updates_the_description(admin_client, team):
    response = admin_client.post(
        reverse("teams:team_update", args=[team.pk]), {"description": "New words."}
    )

    team.refresh_from_db()
    assert response.status_code == 302
    assert team.description == "New words."


def test_admin_deletes_a_team(admin_client, team):
    confirm = admin_client.get(reverse("teams:team_delete", args=[team.pk]))
    response = admin_client.post(reverse("teams:team_delete", args=[team.pk]))

    assert confirm.status_code == 200
    assert response.status_code == 302
    assert response["Location"] == reverse("teams:team_list")
    assert not Team.objects.filter(pk=team.pk).exists()
    assert AuditEvent.objects.filter(action="team.deleted", target="platform").count() == 1


def test_manager_cannot_delete_their_team(client, team):
    client.force_login(factories.team_manager_of(team))

    response = client.post(reverse("teams:team_delete", args=[team.pk]))

    assert response.status_code == 403
    assert Team.objects.filter(pk=team.pk).exists()


# --- members and managers ----------------------------------------------------------------


def test_admin_adds_and_removes_members_and_managers(admin_client, team):
    alice = factories.UserFactory(email="alice@example.com")
    bob = factories.UserFactory(email="bob@example.com")

    assert add(admin_client, team, "Alice@Example.com").status_code == 302
    assert add(admin_client, team, "bob@example.com", "manager").status_code == 302
    assert memberships(team) == {("alice@example.com", "member"), ("bob@example.com", "manager")}

    page = admin_client.get(reverse("teams:team_detail", args=[team.pk]))
    assert [m.user.email for m in page.context["members"]] == ["alice@example.com"]
    assert [m.user.email for m in page.context["managers"]] == ["bob@example.com"]

    assert remove(admin_client, team, alice).status_code == 302
    assert remove(admin_client, team, bob, "manager").status_code == 302
    assert memberships(team) == set()
    assert list(
        AuditEvent.objects.filter(target="platform").order_by("id").values_list("action", flat=True)
    ) == ["team.member_added", "team.manager_added", "team.member_removed", "team.manager_removed"]


def test_adding_an_existing_member_says_so(admin_client, team):
    user = factories.team_member_of(team)

    response = add(admin_client, team, user.email)
    follow = admin_client.get(response["Location"])

    assert [str(m) for m in follow.context["messages"]] == [f"{user.email} is already a member."]


def test_adding_an_unknown_email_shows_the_error_beside_the_field(admin_client, team):
    response = add(admin_client, team, "ghost@example.com")

    assert response.status_code == 400
    assert response.context["member_form"].errors == {
        "email": ["no user with email 'ghost@example.com'"]
    }
    assert memberships(team) == set()


def test_manager_adds_a_member_to_their_own_team(client, team):
    manager = factories.team_manager_of(team)
    factories.UserFactory(email="new@example.com")
    client.force_login(manager)

    response = add(client, team, "new@example.com")

    assert response.status_code == 302
    assert ("new@example.com", "member") in memberships(team)


def test_manager_cannot_add_members_to_another_team(client, team):
    other = factories.TeamFactory(name="other")
    factories.UserFactory(email="new@example.com")
    client.force_login(factories.team_manager_of(team))

    response = add(client, other, "new@example.com")

    assert response.status_code == 404
    assert memberships(other) == set()


def test_manager_cannot_add_themselves(client, team):
    manager = factories.team_manager_of(team)
    client.force_login(manager)

    response = add(client, team, manager.email)

    assert response.status_code == 403
    assert memberships(team) == {(manager.email, "manager")}


def test_manager_cannot_appoint_managers(client, team):
    factories.UserFactory(email="new@example.com")
    manager = factories.team_manager_of(team)
    client.force_login(manager)

    response = add(client, team, "new@example.com", "manager")

    assert response.status_code == 403
    assert memberships(team) == {(manager.email, "manager")}


def test_manager_sees_member_controls_but_not_manager_controls(client, team):
    client.force_login(factories.team_manager_of(team))

    response = client.get(reverse("teams:team_detail", args=[team.pk]))

    assert response.context["can_edit_members"] is True
    assert response.context["can_edit_managers"] is False
    assert response.context["can_delete"] is False
    assert b"Add member</button>" in response.content
    assert b"Add manager</button>" not in response.content


def test_member_cannot_probe_emails_or_add_anyone(client, team):
    client.force_login(factories.team_member_of(team))

    response = add(client, team, "ghost@example.com")

    assert response.status_code == 403
    assert b"ghost@example.com" not in response.content


def test_member_sees_a_read_only_team_page(client, team):
    client.force_login(factories.team_member_of(team))

    response = client.get(reverse("teams:team_detail", args=[team.pk]))

    assert response.status_code == 200
    assert b"Remove</button>" not in response.content
    assert b"Save description" not in response.content


def test_everyone_team_shows_every_user_and_no_edit_controls(admin_client):
    everyone = Team.objects.get(name="everyone")

    response = admin_client.get(reverse("teams:team_detail", args=[everyone.pk]))

    html = response.content.decode()
    assert response.status_code == 200
    assert '<p class="muted">Every user.</p>' in html
    assert "Add member" not in html
    assert "Save description" not in html
    assert "Delete team" not in html
    assert add(admin_client, everyone, "admin@example.com").status_code == 400


def test_scim_team_explains_that_membership_is_idp_managed(admin_client):
    scim = factories.TeamFactory(name="scim-team", source=Team.Source.SCIM)
    user = factories.team_member_of(scim)

    response = admin_client.get(reverse("teams:team_detail", args=[scim.pk]))

    assert b"provisioned by your identity provider over SCIM" in response.content
    assert b"Add member</button>" not in response.content
    assert remove(admin_client, scim, user).status_code == 302
    assert memberships(scim) == {(user.email, "member")}
