"""The observability benchmark runs end to end on a small data set and prints its table."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVER = "postgres://postgres@127.0.0.1:5432"


@pytest.mark.slow
def test_benchmark_seeds_measures_and_prints_a_table():
    name = f"gw_bench_smoke_{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "gateway_project.settings"}
    env.pop("DATABASE_URL", None)
    try:
        result = subprocess.run(
            [
                sys.executable,
                str(ROOT / "bench" / "observability_bench.py"),
                "--database-url",
                f"{SERVER}/{name}",
                "--rows",
                "3000",
                "--days",
                "3",
                "--runs",
                "1",
                "--budget-ms",
                "60000",  # a smoke test on a busy machine: the table, not the timings
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=300,
            check=False,
        )
    finally:
        with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Machine: ")
    assert "| admin | metrics selectors, 30d |" in result.stdout
    assert "| team member | request log, first page |" in result.stdout
    assert "3,000 requests" in result.stdout
    assert "compacted" in result.stderr
