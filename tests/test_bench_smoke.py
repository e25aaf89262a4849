"""The proxy benchmark runs end to end (direct to the fake) and its wrk parser reads wrk."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "proxy_bench.py"

WRK_OUTPUT = """\
Running 1s test @ http://127.0.0.1:9000/v1/chat/completions
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.09ms    1.53ms  26.08ms   86.72%
    Req/Sec     8.46k     2.45k   11.56k    50.00%
  Latency Distribution
     50%  850.00us
     75%    2.22ms
     90%    1.20s
     99%    1.50m
  42183 requests in 5.02s, 19.73MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:   8403.57
Transfer/sec:      3.93MB
"""


def _bench_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("proxy_bench", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["proxy_bench"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_parse_wrk_reads_percentiles_in_every_unit_and_counts_errors():
    result = _bench_module().parse_wrk(WRK_OUTPUT)

    assert (result.p50_ms, result.p90_ms, result.p99_ms) == (0.85, 1200.0, 90_000.0)
    assert (result.requests, result.seconds, result.rps) == (42183, 5.02, 8403.57)
    assert result.errors == 12


@pytest.mark.slow
def test_quick_direct_only_run_prints_a_table_with_rows():
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (`make test` and `make bench` install it)")

    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--direct-only"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| ")]
    assert [c.strip() for c in rows[0][:4]] == ["target", "mode", "upstream ms", "conns"]
    body = [[c.strip() for c in row] for row in rows[1:]]
    assert [row[:4] for row in body] == [
        ["direct", "json", "0", "1"],
        ["direct", "json", "0", "16"],
        ["direct", "stream", "0", "1"],
        ["direct", "stream", "0", "16"],
    ]
    assert all(float(row[4]) > 0 for row in body)  # requests/s
    # No request failed; other notes (a busy machine, e.g. tests running in parallel) are
    # information about the measurement, not failures of it.
    assert not [row[-1] for row in body if "errors" in row[-1] or "unavailable" in row[-1]]
