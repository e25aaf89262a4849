"""Summarise a `pip-audit -f json` report: fail on any known vulnerability.

Usage: audit_summary.py REPORT.json

Exit status 1 when a pinned dependency has a known vulnerability. Dependencies the vulnerability
service could not look up are listed; when none at all could be looked up (the service is out
of reach, as on a network that only serves the package index), the audit is reported as
inconclusive and fails only with AUDIT_STRICT=1, so a sandboxed CI run says so loudly instead
of pretending to have audited.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any


def say(line: str) -> None:
    sys.stdout.write(line + "\n")


def vulnerable(deps: list[dict[str, Any]]) -> list[str]:
    """One line per (dependency, advisory) with the fixed versions."""
    lines = []
    for dep in deps:
        for vuln in dep.get("vulns", []):
            fixed = ", ".join(vuln.get("fix_versions", [])) or "no fix yet"
            lines.append(f"{dep['name']} {dep['version']}: {vuln['id']} (fixed in {fixed})")
    return lines


def summarise(report: dict[str, Any], *, strict: bool) -> int:
    deps: list[dict[str, Any]] = report["dependencies"]
    skipped = [d["name"] for d in deps if "skip_reason" in d]
    audited = len(deps) - len(skipped)
    found = vulnerable(deps)
    say(f"pip-audit: {audited} of {len(deps)} pinned dependencies audited")
    for line in found:
        say(f"  VULNERABLE {line}")
    if skipped and audited:
        say(f"  not audited: {', '.join(skipped)}")
    if found:
        return 1
    if not audited:
        say(
            "  AUDIT INCONCLUSIVE: the vulnerability service answered for none of them "
            "(out of reach from this network); AUDIT_STRICT=1 makes this an error"
        )
        return 1 if strict else 0
    return 0


def main() -> int:
    report = json.loads(Path(sys.argv[1]).read_text())
    return summarise(report, strict=os.environ.get("AUDIT_STRICT") == "1")


if __name__ == "__main__":
    sys.exit(main())
