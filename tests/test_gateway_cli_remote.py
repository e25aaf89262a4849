"""`gateway apply` / `gateway export` against a live gateway, as a GitOps pipeline runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from teams.models import Team
from tests import factories

GATEWAY = str(Path(sys.executable).with_name("gateway"))
TEAM = """\
type: team
name: backend
managers: [lead@example.com]
members: [dev@example.com]
"""


def run(
    live_url: str, token: str, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GATEWAY_URL": live_url, "GATEWAY_API_KEY": token}
    return subprocess.run(
        [GATEWAY, *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def admin_token(transactional_db: None) -> str:
    factories.UserFactory(email="lead@example.com")
    factories.UserFactory(email="dev@example.com")
    return factories.pat_for(factories.tenant_admin())


def test_remote_apply_dry_run_apply_export(live_server, admin_token, tmp_path):
    repo = tmp_path / "repo"
    (repo / "teams").mkdir(parents=True)
    (repo / "teams" / "backend.yaml").write_text(TEAM)

    dry = run(live_server.url, admin_token, "apply", "--dir", str(repo), "--dry-run", "--show-diff")
    assert dry.returncode == 0, dry.stderr
    assert "team/backend: created (dry run)" in dry.stdout
    assert "+name: backend" in dry.stdout
    assert not Team.objects.filter(name="backend").exists()

    applied = run(live_server.url, admin_token, "apply", "-f", "-", stdin=TEAM)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.splitlines() == ["team/backend: created", "1 object(s), 1 change(s)"]

    exported = run(
        live_server.url, admin_token, "export", "--type", "team", "--dir", str(tmp_path / "out")
    )
    assert exported.returncode == 0, exported.stderr
    assert (tmp_path / "out" / "teams" / "backend.yaml").read_text() == TEAM.replace(
        "managers: [lead@example.com]\nmembers: [dev@example.com]\n",
        "managers:\n- lead@example.com\nmembers:\n- dev@example.com\n",
    )


def test_remote_errors_name_the_file_and_exit_non_zero(live_server, admin_token, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TEAM.replace("dev@example.com", "not-an-email"))
    result = run(live_server.url, admin_token, "apply", "-f", str(bad))
    assert result.returncode == 1
    assert f"{bad}#1: members[0]: 'not-an-email' is not a valid email" in result.stderr
    assert not Team.objects.filter(name="backend").exists()


def test_remote_apply_refuses_a_bad_token(live_server, admin_token):
    result = run(live_server.url, "gw_pat_wrong", "apply", "-f", "-", stdin=TEAM)
    assert result.returncode == 1
    assert "Invalid or expired token." in result.stderr
    assert "gw_pat_wrong" not in result.stderr
