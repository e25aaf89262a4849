"""Supply chain: every installed distribution is pinned, no unexpected .pth files, audit summary.

`.pth` files run code at every interpreter start (the vector of several PyPI compromises), so
the virtualenv may hold only the two we know: setuptools' distutils shim and the editable
install of the gateway itself, each owned by its distribution.
"""

from __future__ import annotations

import importlib.util
import re
import site
import sys
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "requirements" / "constraints.txt"

# .pth file name pattern -> the distribution that must own it (listed in its RECORD).
EXPECTED_PTH = {
    re.compile(r"distutils-precedence\.pth"): "setuptools",
    re.compile(r"__editable__\.gateway-[\d.]+\.pth"): "gateway",
}
# Installed by venv/ensurepip, not by the project: not in the constraints file.
BOOTSTRAP = {"pip", "setuptools", "wheel", "gateway"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_versions() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[canonical(name)] = version.strip()
    return pins


def pth_owner(path: Path) -> str | None:
    """The distribution whose RECORD lists this .pth file."""
    for dist in metadata.distributions():
        if any(Path(str(f)).name == path.name for f in dist.files or ()):
            return canonical(dist.metadata["Name"])
    return None


def site_dirs() -> list[Path]:
    return [Path(p) for p in site.getsitepackages() if Path(p).is_dir()]


def test_the_tests_run_in_the_project_virtualenv() -> None:
    assert sys.prefix != sys.base_prefix, "run the tests from .venv (make test)"


def test_every_installed_distribution_is_pinned_at_its_installed_version() -> None:
    pins = pinned_versions()
    drift = []
    for dist in metadata.distributions():
        name = canonical(dist.metadata["Name"])
        if name in BOOTSTRAP:
            continue
        if pins.get(name) != dist.version:
            drift.append(f"{name} {dist.version} (pinned: {pins.get(name, 'not pinned')})")
    assert not drift, f"installed but not pinned as installed: {drift}; run make constraints"


def test_only_the_expected_pth_files_exist_and_their_owners_installed_them() -> None:
    found = [p for d in site_dirs() for p in d.glob("*.pth")]
    assert found, "no .pth at all: the editable install is missing, so this check is blind"
    for path in found:
        owners = [owner for pattern, owner in EXPECTED_PTH.items() if pattern.fullmatch(path.name)]
        assert owners, f"unexpected .pth file {path}: it runs code at every interpreter start"
        assert pth_owner(path) == owners[0], f"{path.name} is not from {owners[0]}'s RECORD"


def load_audit_summary() -> ModuleType:
    spec = importlib.util.spec_from_file_location("audit_summary", ROOT / "tools/audit_summary.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dep(name: str, *vulns: str) -> dict[str, object]:
    return {
        "name": name,
        "version": "1.0",
        "vulns": [{"id": v, "fix_versions": ["1.1"]} for v in vulns],
    }


@pytest.mark.parametrize(
    ("deps", "strict", "status"),
    [
        ([dep("a"), dep("b")], False, 0),
        ([dep("a"), dep("b", "PYSEC-2099-1")], False, 1),
        ([dep("a"), {"name": "b", "skip_reason": "not found"}], True, 0),
        ([{"name": "a", "skip_reason": "not found"}], False, 0),
        ([{"name": "a", "skip_reason": "not found"}], True, 1),
    ],
    ids=["clean", "vulnerable", "partly-audited", "inconclusive", "inconclusive-strict"],
)
def test_audit_summary_fails_on_vulnerabilities_and_flags_an_inconclusive_audit(
    deps: list[dict[str, object]], strict: bool, status: int, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = load_audit_summary()
    assert summary.summarise({"dependencies": deps, "fixes": []}, strict=strict) == status
    out = capsys.readouterr().out
    assert ("VULNERABLE b 1.0: PYSEC-2099-1" in out) == (status == 1 and not strict)
