"""GitOps: manifests, apply (CLI and API), dry run, diff, sync, export round trip."""

from __future__ import annotations

import json
import subprocess
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from accounts.models import AuditEvent, Role, RoleBinding, User
from accounts.selectors import principal_for_user
from gateway_project import manifests
from gateway_project.manifest_io import ManifestError, parse_yaml
from teams.models import Team, TeamMembership
from tests import factories
from tests.conftest import bearer

pytestmark = pytest.mark.django_db

TEAM_YAML = """\
type: team
name: backend
managers: [alice@example.com]
members: [bob@example.com, carol@example.com]
"""

ROLE_YAML = """\
type: role
name: auditor
displayName: Auditor
description: Reads users and teams
resourceType: tenant
permissions: [user:ListUsers, team:ReadTeam]
"""

BINDING_YAML = """\
type: role-binding
name: backend-auditors
subjects:
  - {type: team, name: backend}
permissions:
  - {resourceType: tenant, resourceFqn: tenant, role: auditor}
"""


@pytest.fixture
def people(db):
    for name in ("alice", "bob", "carol", "dave"):
        factories.UserFactory(email=f"{name}@example.com")


def run_apply(*args: str) -> str:
    out = StringIO()
    call_command("apply", *args, stdout=out)
    return out.getvalue()


def state() -> tuple[object, ...]:
    return (
        sorted(Team.objects.values_list("name", "description", "tags")),
        sorted(TeamMembership.objects.values_list("team__name", "user__email", "role")),
        sorted((r.slug, tuple(r.permissions)) for r in Role.objects.all()),
        sorted(RoleBinding.objects.values_list("name", flat=True)),
        sorted(User.objects.values_list("email", flat=True)),
    )


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_apply_creates_in_dependency_order_and_is_idempotent(people, tmp_path):
    # The binding comes first in the file but names the team and role defined after it.
    path = write(tmp_path, "all.yaml", "---\n".join([BINDING_YAML, TEAM_YAML, ROLE_YAML]))

    first = run_apply("-f", str(path))
    events = AuditEvent.objects.count()
    second = run_apply("-f", str(path))

    assert first.splitlines() == [
        "team/backend: created",
        "role/auditor: created",
        "role-binding/backend-auditors: created",
        "3 object(s), 3 change(s)",
    ]
    assert second.splitlines()[-1] == "3 object(s), nothing to change"
    assert AuditEvent.objects.count() == events
    team = Team.objects.get(name="backend")
    assert team.created_via == "apply"
    assert sorted(team.memberships.values_list("user__email", "role")) == [
        ("alice@example.com", "manager"),
        ("bob@example.com", "member"),
        ("carol@example.com", "member"),
    ]
    bob = principal_for_user(User.objects.get(email="bob@example.com"))
    assert bob.tenant_permissions == {"user:ListUsers", "team:ReadTeam"}
    assert set(
        AuditEvent.objects.filter(action="team.created").values_list("source", flat=True)
    ) == {"apply"}


def test_update_changes_membership_to_exactly_the_manifest(people, tmp_path):
    run_apply("-f", str(write(tmp_path, "t.yaml", TEAM_YAML)))
    changed = TEAM_YAML.replace(
        "[bob@example.com, carol@example.com]", "[carol@example.com, dave@example.com]"
    )

    output = run_apply("-f", str(write(tmp_path, "t.yaml", changed)), "--show-diff")

    assert "team/backend: updated" in output
    assert "-- bob@example.com" in output
    assert "+- dave@example.com" in output
    members = Team.objects.get(name="backend").memberships.filter(role="member")
    assert sorted(members.values_list("user__email", flat=True)) == [
        "carol@example.com",
        "dave@example.com",
    ]


def test_dry_run_changes_nothing_and_shows_the_diff(people, tmp_path):
    before = state()
    output = run_apply("-f", str(write(tmp_path, "t.yaml", TEAM_YAML)), "--dry-run", "--show-diff")
    assert "team/backend: created (dry run)" in output
    assert "+++ b/team/backend" in output
    assert "+name: backend" in output
    assert state() == before


def test_unknown_member_is_invited_and_the_output_says_so(people, tmp_path):
    text = TEAM_YAML.replace("carol@example.com", "newcomer@example.com")
    output = run_apply("-f", str(write(tmp_path, "t.yaml", text)))
    assert "note: invited newcomer@example.com (invitation link: http" in output
    user = User.objects.get(email="newcomer@example.com")
    assert not user.has_usable_password()
    assert Team.objects.get(name="backend").memberships.filter(user=user).exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("type: team\nname: [unclosed\n", "t.yaml: invalid YAML"),
        ("type: gadget\nname: x\n", "t.yaml#1: type: unknown type 'gadget'"),
        (TEAM_YAML + "colour: blue\n", "t.yaml#1: colour: unknown field"),
        (
            TEAM_YAML.replace("carol@example.com", "not-an-email"),
            "t.yaml#1: members[1]: 'not-an-email' is not a valid email",
        ),
        ("type: team\nname: x\nmembers: []\n", "t.yaml#1: name: String should match pattern"),
        ("type: team\nname: backend\n", "t.yaml#1: members: Field required"),
        (
            BINDING_YAML.replace("name: backend}", "name: ghosts}"),
            "t.yaml#1: subjects[0].name: no team 'ghosts'",
        ),
        (
            TEAM_YAML + "---\n" + TEAM_YAML,
            "t.yaml#2: name: duplicate team 'backend' (also in t.yaml#1)",
        ),
        ("- just\n- a list\n", "t.yaml#1: a manifest must be a mapping"),
    ],
    ids=[
        "invalid-yaml",
        "unknown-type",
        "unknown-field",
        "bad-email",
        "bad-name",
        "missing-field",
        "missing-reference",
        "duplicate",
        "not-a-mapping",
    ],
)
def test_bad_input_is_refused_with_its_place_and_changes_nothing(people, tmp_path, text, expected):
    path = write(tmp_path, "t.yaml", text)
    before = state()
    with pytest.raises(CommandError) as info:
        run_apply("-f", str(path))
    assert expected in str(info.value).replace(str(tmp_path) + "/", "")
    assert state() == before


def test_a_failing_document_rolls_back_the_whole_set(people, tmp_path):
    bad_binding = BINDING_YAML.replace("role: auditor", "role: no-such-role")
    path = write(tmp_path, "set.yaml", "---\n".join([TEAM_YAML, ROLE_YAML, bad_binding]))
    before = state()
    with pytest.raises(CommandError) as info:
        run_apply("-f", str(path))
    assert "set.yaml#3: permissions[0].role: no role 'no-such-role'" in str(info.value)
    assert state() == before


def test_sync_deletes_only_apply_created_objects_absent_from_the_set(people, tmp_path):
    admin = principal_for_user(factories.tenant_admin())
    from teams.services import team_create

    team_create(actor=admin, name="console-made")
    write(tmp_path, "teams/backend.yaml", TEAM_YAML)
    write(tmp_path, "teams/frontend.yaml", TEAM_YAML.replace("backend", "frontend"))
    run_apply("--dir", str(tmp_path))
    (tmp_path / "teams/frontend.yaml").unlink()

    output = run_apply("--dir", str(tmp_path), "--sync")

    assert "team/frontend: deleted" in output
    assert set(Team.objects.values_list("name", flat=True)) == {
        "everyone",
        "backend",
        "console-made",
    }
    run_apply("--dir", str(tmp_path), "--sync", "--sync-console-objects")
    assert set(Team.objects.values_list("name", flat=True)) == {"everyone", "backend"}


def test_export_wipe_apply_export_round_trip(people, tmp_path):
    admin = principal_for_user(factories.tenant_admin())
    write(tmp_path / "src", "a.yaml", "---\n".join([TEAM_YAML, ROLE_YAML, BINDING_YAML]))
    run_apply("--dir", str(tmp_path / "src"))
    from accounts.services import role_update
    from teams.services import team_create

    role_update(
        actor=admin,
        role=Role.objects.get(slug="team-manager"),
        permissions=["team:ReadTeam", "team:ManageTeam"],
    )
    team_create(actor=admin, name="ops", description="On call", members=["dave@example.com"])
    Team.objects.filter(name="ops").update(tags={"cost-center": "42"})
    call_command("export", "--dir", str(tmp_path / "one"), stdout=StringIO())

    RoleBinding.objects.all().delete()
    Team.objects.exclude(name="everyone").delete()
    Role.objects.filter(builtin=False).delete()
    Role.objects.filter(slug="team-manager").update(permissions=[])
    run_apply("--dir", str(tmp_path / "one"))
    call_command("export", "--dir", str(tmp_path / "two"), stdout=StringIO())

    one = {
        p.relative_to(tmp_path / "one"): p.read_text() for p in (tmp_path / "one").rglob("*.yaml")
    }
    two = {
        p.relative_to(tmp_path / "two"): p.read_text() for p in (tmp_path / "two").rglob("*.yaml")
    }
    assert sorted(str(p) for p in one) == [
        "controls/data-access.yaml",
        "role-bindings/backend-auditors.yaml",
        "roles/auditor.yaml",
        "roles/team-manager.yaml",
        "teams/backend.yaml",
        "teams/ops.yaml",
    ]
    assert one == two
    assert "cost-center: '42'" in one[Path("teams/ops.yaml")]


def test_export_to_stdout_is_a_yaml_stream_that_applies(people, tmp_path):
    run_apply("-f", str(write(tmp_path, "t.yaml", TEAM_YAML)))
    out = StringIO()
    call_command("export", "--type", "team", stdout=out)
    docs = parse_yaml(out.getvalue())
    assert [d.data["name"] for d in docs] == ["backend"]
    assert docs[0].data == {
        "type": "team",
        "name": "backend",
        "managers": ["alice@example.com"],
        "members": ["bob@example.com", "carol@example.com"],
    }


def test_gitops_flow_in_a_git_repository(people, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)

    git("init", "-q")
    git("config", "user.email", "ci@example.com")
    git("config", "user.name", "CI")
    write(repo, "access/teams/backend.yaml", TEAM_YAML)
    write(repo, "access/teams/frontend.yaml", TEAM_YAML.replace("backend", "frontend"))
    write(repo, "access/roles/auditor.yaml", ROLE_YAML)
    git("add", "-A")
    git("commit", "-qm", "initial access")
    run_apply("--dir", str(repo))

    write(
        repo,
        "access/teams/backend.yaml",
        TEAM_YAML.replace("carol@example.com", "dave@example.com"),
    )
    git("commit", "-qam", "swap carol for dave")
    preview = run_apply("--dir", str(repo), "--dry-run", "--show-diff")
    assert "team/backend: updated (dry run)" in preview
    assert "-- carol@example.com" in preview
    assert "+- dave@example.com" in preview
    assert (
        Team.objects.get(name="backend")
        .memberships.filter(user__email="carol@example.com")
        .exists()
    )

    run_apply("--dir", str(repo))
    assert (
        not Team.objects.get(name="backend")
        .memberships.filter(user__email="carol@example.com")
        .exists()
    )

    git("rm", "-q", "access/teams/frontend.yaml")
    git("commit", "-qm", "retire frontend")
    synced = run_apply("--dir", str(repo), "--sync")
    assert "team/frontend: deleted" in synced
    assert not Team.objects.filter(name="frontend").exists()
    assert Role.objects.filter(slug="auditor").exists()


def test_apply_api_answers_per_object_results(people, api_client, admin_user):
    bearer(api_client, admin_user)
    body = {"manifest": [parse_yaml(TEAM_YAML)[0].data], "show_diff": True}
    response = api_client.put("/api/v1/apply", body, format="json")
    assert response.status_code == 200
    result = response.json()["results"][0]
    assert (result["type"], result["name"], result["action"]) == ("team", "backend", "created")
    again = api_client.put(
        "/api/v1/apply", {"manifest": parse_yaml(TEAM_YAML)[0].data}, format="json"
    )
    assert again.json() == {
        "dry_run": False,
        "results": [{"type": "team", "name": "backend", "action": "unchanged"}],
    }
    assert AuditEvent.objects.filter(action="team.created", source="apply").count() == 1


def test_apply_api_errors_name_the_document_and_field(people, api_client, admin_user):
    bearer(api_client, admin_user)
    doc = parse_yaml(TEAM_YAML)[0].data | {"members": ["bob@example.com", "x"]}
    response = api_client.put(
        "/api/v1/apply",
        {"manifest": [doc], "sources": [{"file": "teams/backend.yaml", "index": 0}]},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["error"]["problems"] == [
        {
            "document": "teams/backend.yaml#1",
            "path": "members[1]",
            "message": "'x' is not a valid email",
        }
    ]


def test_apply_respects_the_callers_permissions(people, api_client, tmp_path):
    run_apply("-f", str(write(tmp_path, "t.yaml", TEAM_YAML)))
    alice = User.objects.get(email="alice@example.com")  # manager of backend
    bearer(api_client, alice)
    doc = parse_yaml(TEAM_YAML)[0].data
    as_manager = api_client.put(
        "/api/v1/apply",
        {
            "manifest": doc
            | {"members": ["bob@example.com", "carol@example.com", "dave@example.com"]}
        },
        format="json",
    )
    assert as_manager.status_code == 200, as_manager.content
    before = state()
    grab = api_client.put(
        "/api/v1/apply",
        {"manifest": doc | {"managers": ["alice@example.com", "bob@example.com"]}},
        format="json",
    )
    new_team = api_client.put(
        "/api/v1/apply", {"manifest": doc | {"name": "shadow"}}, format="json"
    )
    assert (grab.status_code, new_team.status_code) == (403, 403)
    assert state() == before


def test_export_api_needs_read_permissions(people, api_client, admin_user):
    bearer(api_client, factories.member())
    assert api_client.get("/api/v1/export").status_code == 403
    bearer(api_client, admin_user)
    items = api_client.get("/api/v1/export?type=role").json()["items"]
    assert [(i["directory"], i["name"]) for i in items] == [("roles", "team-manager")]


def test_validate_all_reports_every_problem_at_once():
    docs = parse_yaml("type: team\nname: x\n---\ntype: nope\n", "f.yaml")
    with pytest.raises(ManifestError) as info:
        manifests.validate_all(docs)
    assert [str(p) for p in info.value.problems] == [
        "f.yaml#1: name: String should match pattern '^[a-zA-Z][a-zA-Z0-9_-]{1,34}[a-zA-Z0-9]$'",
        "f.yaml#1: members: Field required",
        f"f.yaml#2: type: unknown type 'nope' (known: {', '.join(sorted(manifests.kinds()))})",
    ]
    assert {"team", "role", "role-binding"} <= set(manifests.kinds())


def test_json_output_for_scripts(people, tmp_path):
    output = run_apply("-f", str(write(tmp_path, "t.yaml", TEAM_YAML)), "--output", "json")
    assert json.loads(output) == {
        "dry_run": False,
        "results": [{"type": "team", "name": "backend", "action": "created"}],
    }
