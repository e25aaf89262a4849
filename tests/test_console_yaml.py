"""Apply using YAML in the console: view an object's manifest, preview, apply, errors, rights."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.console_yaml import DiffLine, ProblemRow, starters
from accounts.models import AuditEvent
from accounts.selectors import principal_for_user
from gateway_project import manifests
from gateway_project.manifest_io import parse_yaml
from providers.models import ProviderAccount
from teams.models import Team, TeamMembership
from tests import factories

pytestmark = pytest.mark.django_db

CANARY_KEY = "sk-canary-console-yaml-5d1c8"
TEAM_YAML = """\
type: team
name: platform
description: Runs the platform.
managers:
- bob@example.com
members:
- alice@example.com
"""
WITH_CAROL = TEAM_YAML + "- carol@example.com\n"
DENIED = "You do not have permission to do this."


@pytest.fixture
def people(db):
    return {
        "admin": factories.UserFactory(email="admin@example.com", tenant_role_id="tenant-admin"),
        "alice": factories.UserFactory(email="alice@example.com"),
        "bob": factories.UserFactory(email="bob@example.com"),
        "carol": factories.UserFactory(email="carol@example.com"),
    }


@pytest.fixture
def team(people):
    team = factories.TeamFactory(name="platform", description="Runs the platform.")
    TeamMembership.objects.create(team=team, user=people["alice"], role="member")
    TeamMembership.objects.create(team=team, user=people["bob"], role="manager")
    return team


@pytest.fixture
def admin_client(client, people):
    client.force_login(people["admin"])
    return client


def members(team: Team) -> set[tuple[str, str]]:
    return set(team.memberships.values_list("user__email", "role"))


def yaml_url(team: Team) -> str:
    return reverse("teams:team_yaml", args=[team.pk])


def test_team_yaml_page_shows_the_manifest_in_the_editor(admin_client, team):
    response = admin_client.get(yaml_url(team))

    assert response.status_code == 200
    assert response.context["text"] == TEAM_YAML
    assert list(response.context["line_numbers"]) == list(range(1, 9))
    assert response.context["can_change"] is True
    html = response.content.decode()
    assert 'data-testid="yaml-editor">\ntype: team\nname: platform\n' in html
    assert '<button type="submit" name="action" value="apply" class="btn btn-primary">' in html
    assert response["Cache-Control"].startswith("no-store")


def test_team_page_links_to_its_yaml(admin_client, team):
    html = admin_client.get(reverse("teams:team_detail", args=[team.pk])).content.decode()

    assert f'<a class="btn" href="/teams/{team.pk}/yaml/">Apply using YAML</a>' in html


def test_preview_shows_the_diff_and_changes_nothing(admin_client, team):
    events = AuditEvent.objects.count()

    response = admin_client.post(yaml_url(team), {"manifest": WITH_CAROL, "action": "preview"})

    assert response.status_code == 200
    outcome = response.context["outcome"]
    assert [(r.type, r.name, r.action) for r in outcome.results] == [
        ("team", "platform", "updated")
    ]
    assert outcome.results[0].diff == [
        DiffLine("diff-file", "--- a/team/platform"),
        DiffLine("diff-file", "+++ b/team/platform"),
        DiffLine("diff-hunk", "@@ -5,3 +5,4 @@"),
        DiffLine("diff-ctx", " - bob@example.com"),
        DiffLine("diff-ctx", " members:"),
        DiffLine("diff-ctx", " - alice@example.com"),
        DiffLine("diff-add", "+- carol@example.com"),
    ]
    html = response.content.decode()
    assert '<span class="diff-add">+- carol@example.com</span>' in html
    assert "would be updated" in html
    assert response.context["text"] == WITH_CAROL
    assert members(team) == {("alice@example.com", "member"), ("bob@example.com", "manager")}
    assert AuditEvent.objects.count() == events


def test_apply_changes_the_team_and_audits_it_as_apply(admin_client, team):
    response = admin_client.post(yaml_url(team), {"manifest": WITH_CAROL, "action": "apply"})

    assert response.status_code == 302
    assert response["Location"] == reverse("teams:team_detail", args=[team.pk])
    assert members(team) == {
        ("alice@example.com", "member"),
        ("bob@example.com", "manager"),
        ("carol@example.com", "member"),
    }
    event = AuditEvent.objects.get(action="team.member_added")
    assert (event.actor, event.target, event.source) == (
        "user:admin@example.com",
        "platform",
        "apply",
    )
    page = admin_client.get(response["Location"]).content.decode()
    assert "Applied team platform: updated." in page


def test_invalid_yaml_shows_the_problem_and_highlights_its_line(admin_client, team):
    broken = "type: team\nname: platform\nmembers:\n  - alice@example.com\n bad: x\n"

    response = admin_client.post(yaml_url(team), {"manifest": broken, "action": "preview"})

    assert response.status_code == 400
    assert response.context["outcome"].problems == [
        ProblemRow(
            "YAML",
            "",
            "invalid YAML (line 5, column 2): expected <block end>, "
            "but found '<block mapping start>'",
            5,
        )
    ]
    assert response.context["error_lines"] == [5]
    html = response.content.decode()
    assert '<li class="is-error">5</li>' in html
    assert 'data-testid="error-line-5"' in html
    assert '<a href="#id_manifest" data-goto-line="5">Go to line 5</a>' in html
    assert response.context["text"] == broken


def test_schema_problems_name_the_document_and_the_field(admin_client, team):
    text = WITH_CAROL + "---\ntype: team\nname: second\nmembers: []\ncolour: blue\n"

    response = admin_client.post(yaml_url(team), {"manifest": text, "action": "apply"})

    assert response.status_code == 400
    assert response.context["outcome"].problems == [
        ProblemRow("document 2", "colour", "unknown field", None)
    ]
    assert "<code>colour</code> <span>unknown field</span>" in response.content.decode()
    assert not Team.objects.filter(name="second").exists()
    assert ("carol@example.com", "member") not in members(team)


def test_service_problem_points_at_the_field(admin_client, team):
    text = TEAM_YAML.replace("- alice@example.com", "- alice@example.com\n- nobody@")

    response = admin_client.post(yaml_url(team), {"manifest": text, "action": "preview"})

    assert response.status_code == 400
    assert response.context["outcome"].problems == [
        ProblemRow("document 1", "members[1]", "'nobody@' is not a valid email", None)
    ]


@pytest.mark.parametrize("action", ["preview", "apply"])
def test_member_without_rights_gets_403_and_nothing_changes(client, team, people, action):
    client.force_login(people["alice"])
    events = AuditEvent.objects.count()

    view = client.get(yaml_url(team))
    response = client.post(yaml_url(team), {"manifest": WITH_CAROL, "action": action})

    assert view.status_code == 200
    assert view.context["can_change"] is False
    assert 'value="apply"' not in view.content.decode()
    assert response.status_code == 403
    assert response.context["outcome"].denied is True
    assert DENIED in response.content.decode()
    assert members(team) == {("alice@example.com", "member"), ("bob@example.com", "manager")}
    assert AuditEvent.objects.count() == events


def test_team_manager_may_preview_and_apply_their_team(client, team, people):
    client.force_login(people["bob"])
    text = TEAM_YAML.replace("- alice@example.com", "- carol@example.com")

    preview = client.post(yaml_url(team), {"manifest": text, "action": "preview"})
    applied = client.post(yaml_url(team), {"manifest": text, "action": "apply"})

    assert preview.status_code == 200
    assert applied.status_code == 302
    assert members(team) == {("carol@example.com", "member"), ("bob@example.com", "manager")}


def test_hidden_team_yaml_is_404(client, team):
    client.force_login(factories.member())

    assert client.get(yaml_url(team)).status_code == 404
    assert client.post(yaml_url(team), {"manifest": WITH_CAROL}).status_code == 404


def test_role_and_binding_pages_have_yaml(admin_client):
    manifests.apply(
        parse_yaml(
            "type: role\nname: auditor\npermissions: [settings:ListSettings]\n---\n"
            "type: role-binding\nname: auditors\n"
            "subjects: [{type: user, name: admin@example.com}]\n"
            "permissions: [{resourceType: tenant, resourceFqn: tenant, role: auditor}]\n"
        ),
        actor=principal_for_user(factories.tenant_admin()),
    )

    role = admin_client.get(reverse("accounts:role_yaml", args=["auditor"]))
    binding = admin_client.get(reverse("accounts:role_binding_yaml", args=["auditors"]))

    assert role.context["text"] == (
        "type: role\nname: auditor\ndisplayName: auditor\nresourceType: tenant\n"
        "permissions:\n- settings:ListSettings\n"
    )
    assert binding.context["text"].startswith("type: role-binding\nname: auditors\n")
    assert 'href="/roles/auditor/yaml/">Apply using YAML</a>' in (
        admin_client.get(reverse("accounts:role_detail", args=["auditor"])).content.decode()
    )


def test_new_from_yaml_prefills_a_starter_of_the_type(admin_client):
    response = admin_client.get(reverse("accounts:manifest_apply") + "?type=team")

    assert response.status_code == 200
    assert response.context["text"] == (
        "# A team. Members use what the team is granted; managers add and remove members.\n"
        "type: team\nname: my-team\ndescription: What this team works on.\nmanagers: []\n"
        "members:\n  - admin@example.com\n"
    )
    teams_page = admin_client.get(reverse("teams:team_list")).content.decode()
    assert '<a class="btn" href="/apply/?type=team">New from YAML</a>' in teams_page


def test_global_apply_applies_several_documents_at_once(admin_client, people):
    text = (
        "type: team\nname: infra\nmembers: [alice@example.com]\n---\n"
        "type: role\nname: auditor\npermissions: [settings:ListSettings]\n"
    )

    response = admin_client.post(
        reverse("accounts:manifest_apply"), {"manifest": text, "action": "apply"}
    )

    assert response.status_code == 200
    rows = [(r.type, r.name, r.action) for r in response.context["outcome"].results]
    assert rows == [("team", "infra", "created"), ("role", "auditor", "created")]
    assert "Applied 2 objects: 2 changed." in response.content.decode()
    assert Team.objects.get(name="infra").memberships.count() == 1


def test_global_apply_of_one_object_redirects_to_it(admin_client, people):
    text = "type: team\nname: infra\nmembers: [alice@example.com]\n"

    response = admin_client.post(
        reverse("accounts:manifest_apply"), {"manifest": text, "action": "apply"}
    )

    team = Team.objects.get(name="infra")
    assert response.status_code == 302
    assert response["Location"] == reverse("teams:team_detail", args=[team.pk])


def test_global_apply_reports_an_empty_editor(admin_client):
    response = admin_client.post(reverse("accounts:manifest_apply"), {"manifest": "  \n"})

    assert response.status_code == 400
    assert response.context["outcome"].problems == [
        ProblemRow("YAML", "", "no manifest: the editor is empty", None)
    ]


def test_global_preview_without_rights_is_403(client, people):
    client.force_login(people["alice"])

    response = client.post(
        reverse("accounts:manifest_apply"),
        {"manifest": "type: team\nname: infra\nmembers: []\n", "action": "preview"},
    )

    assert response.status_code == 403
    assert response.context["outcome"].problems == [
        ProblemRow("document 1", "", "permission denied: team:CreateTeam", None)
    ]
    assert not Team.objects.filter(name="infra").exists()


def test_provider_account_yaml_shows_a_secret_reference_never_the_secret(admin_client, people):
    manifests.apply(
        parse_yaml(
            "type: provider-account/openai\nname: openai-main\n"
            f"auth_data: {{type: api-key, api_key: {CANARY_KEY}}}\n"
            "collaborators: []\nintegrations: []\n"
        ),
        actor=principal_for_user(people["admin"]),
    )
    url = reverse("providers:provider_account_yaml", args=["openai-main"])

    response = admin_client.get(url)
    preview = admin_client.post(url, {"manifest": response.context["text"], "action": "preview"})

    html = response.content.decode()
    assert "api_key: gw-secret://provider-account/openai/openai-main/api_key?v=" in html
    assert [r.action for r in preview.context["outcome"].results] == ["unchanged"]
    for body in (html, preview.content.decode()):
        assert CANARY_KEY not in body
        assert CANARY_KEY[:12] not in body
    assert ProviderAccount.objects.get(name="openai-main").auth_secret


def test_apply_that_invites_shows_the_link_in_place_instead_of_redirecting(admin_client, team):
    text = TEAM_YAML + "- dora@example.com\n"

    response = admin_client.post(yaml_url(team), {"manifest": text, "action": "apply"})

    assert response.status_code == 200
    [result] = response.context["outcome"].results
    assert result.action == "updated"
    assert [n.split(" (")[0] for n in result.notes] == ["invited dora@example.com"]
    html = response.content.decode()
    assert "Applied team platform: updated." in html
    assert result.notes[0] in html
    assert response["Cache-Control"].startswith("no-store")
    assert ("dora@example.com", "member") in members(team)


def test_every_starter_manifest_passes_schema_validation(admin_client, people):
    principal = principal_for_user(people["admin"])
    response = admin_client.get(reverse("accounts:manifest_apply"))

    types = [s.manifest_type for s in starters()]
    assert types == [
        "integration/secret-store/hashicorp/vault",
        "mcp-server/remote",
        "provider-account/openai",
        "role",
        "role-binding",
        "team",
        "virtual-account",
    ]
    for starter in starters():
        [item] = manifests.validate_all(parse_yaml(starter.render(principal)))
        assert item.kind.manifest_type == starter.manifest_type
        assert f'href="?type={starter.manifest_type}"' in response.content.decode()
