#!/usr/bin/env python3
"""Benchmark the LLM proxy against the fake provider with wrk; print a markdown table.

Two targets per case: (a) the fake provider directly, (b) the gateway at
/api/llm/v1/chat/completions with model `<account>/<model>` routed to that fake. The gateway's
added latency is (b) minus (a) at the same percentile. Cases: non-streaming and streaming
(5 chunks), provider latency 0 and 50 ms, 1/16/64 connections.

The fake runs as its own uvicorn process (so it shares no GIL with the gateway); the gateway
runs as `gateway serve --no-worker --workers N` on a fresh embedded SQLite var dir (or
--database-url), set up with `manage.py apply` (a provider account pointing at the fake) and
`manage.py create_pat`. CPU time per request is the utime+stime delta of the server's
processes (/proc/<pid>/stat) over the run, and until they are idle again after it (work
still queued when wrk stops, such as request logs, counts), divided by the requests served.
The gateway's processes are its worker(s) and each worker's request-log writer process. RSS
is the peak of the summed VmRSS of those processes, sampled every 0.2 s; "largest" is the peak
of the largest single one (the per-worker figure).

    .venv/bin/python bench/proxy_bench.py                 # the full matrix, 10 s per case
    .venv/bin/python bench/proxy_bench.py --quick          # a smoke run (seconds)
    .venv/bin/python bench/proxy_bench.py --direct-only    # only the fake (no gateway)
    .venv/bin/python bench/proxy_bench.py --compare-django # + a trivial async Django view

`--compare-django` also serves bench/django_view_asgi.py (one async Django view that parses the
JSON body and answers small JSON, behind Django's ASGI handler, with the project's middleware
and with none) with the same uvicorn options, and measures it non-streaming at 16 connections:
the measured reason the proxy is a lean ASGI app rather than a Django view.

Only loopback addresses are used; every process it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
ACCOUNT = "bench-openai"
MODEL = "gpt-4o-mini"
STREAM_CHUNKS = 5
ADMIN_EMAIL = "bench@example.com"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = 1024

sys.path.insert(0, str(ROOT))  # for tests.fakes.providers' key constants
from tests.fakes.providers import OPENAI_KEY  # noqa: E402


def _log(message: str) -> None:
    """Progress and problems on stderr; the table alone goes to stdout."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


class BenchError(Exception):
    """Setup failed; the message says what to fix."""


# --- cases and results ---------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    target: str  # "direct" or "gateway"
    stream: bool
    latency_ms: int
    connections: int

    @property
    def peer(self) -> Case:
        """The same case against the fake directly."""
        return Case("direct", self.stream, self.latency_ms, self.connections)


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int  # non-2xx/3xx responses + socket errors


@dataclass
class Row:
    case: Case
    result: WrkResult | None = None
    cpu_ms_per_request: float | None = None
    rss_mib: float | None = None
    largest_mib: float | None = None  # peak RSS of the largest single process
    note: str = ""


# --- wrk -----------------------------------------------------------------------------------

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_DURATION = re.compile(r"^([\d.]+)(us|ms|s|m|h)$")


def _to_ms(text: str) -> float:
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(f"unparsable wrk duration {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(output: str) -> WrkResult:
    """The numbers of `wrk --latency` output."""
    percentiles = {
        int(p): _to_ms(v) for p, v in re.findall(r"^\s+(50|90|99)%\s+(\S+)\s*$", output, re.M)
    }
    total = re.search(r"^\s*(\d+) requests in ([\d.]+\w+),", output, re.M)
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    if total is None or rps is None or set(percentiles) != {50, 90, 99}:
        raise ValueError(f"unexpected wrk output:\n{output}")
    errors = 0
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if non_2xx:
        errors += int(non_2xx.group(1))
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return WrkResult(
        requests=int(total.group(1)),
        seconds=_to_ms(total.group(2)) / 1000,
        rps=float(rps.group(1)),
        p50_ms=percentiles[50],
        p90_ms=percentiles[90],
        p99_ms=percentiles[99],
        errors=errors,
    )


def lua_script(path: Path, body: dict[str, Any], headers: dict[str, str]) -> Path:
    """A wrk script that POSTs `body` as JSON with `headers`."""
    lines = ['wrk.method = "POST"', f"wrk.body = {_lua_string(json.dumps(body))}"]
    lines += [f"wrk.headers[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in headers.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


def run_wrk(url: str, script: Path, connections: int, seconds: float) -> str:
    argv = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(seconds, 1):g}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    done = subprocess.run(  # noqa: S603 - fixed argv, no shell
        argv, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


# --- processes -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                parent = int(stat[stat.rindex(")") + 2 :].split()[1])
                tree.setdefault(parent, []).append(int(entry.name))
    return tree


def process_tree(pid: int) -> list[int]:
    """`pid` and every process below it."""
    tree = _children()
    found = [pid]
    for current in found:
        found.extend(tree.get(current, []))
    return found


def cpu_ticks(pid: int) -> int:
    """utime + stime of one process in clock ticks (0 when it is gone)."""
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return 0
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def rss_kib(pid: int) -> int:
    try:
        status = (Path("/proc") / str(pid) / "status").read_text()
    except OSError:
        return 0
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    return int(match.group(1)) if match else 0


class Meter:
    """CPU ticks and peak RSS of a set of processes over one measured run."""

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = list(pids)
        self.peak_kib = 0
        self.largest_kib = 0
        self._stop = threading.Event()
        self.cpu_seconds = 0.0
        self.wall_seconds = 0.0
        self._start = {pid: cpu_ticks(pid) for pid in self.pids}
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> Meter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.wall_seconds = time.monotonic() - self._started
        self.cpu_seconds = (
            sum(cpu_ticks(pid) - self._start.get(pid, 0) for pid in self.pids) / CLK_TCK
        )

    def _sample(self) -> None:
        while True:
            self._take_rss()
            if self._stop.wait(0.2):
                self._take_rss()
                return

    def _take_rss(self) -> None:
        each = [rss_kib(pid) for pid in self.pids]
        self.peak_kib = max(self.peak_kib, sum(each))
        self.largest_kib = max([self.largest_kib, *each])


@contextlib.contextmanager
def started(
    name: str, argv: list[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `argv` in its own process group; SIGTERM (then SIGKILL) that group at the end."""
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603
            argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, process_group=0
        )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            _log(f"{name} did not stop; killing it")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def http(
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, bytes]:
    """One request without proxies: (status, body); status 0 when nothing answered."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})  # noqa: S310
    if data is not None:
        request.add_header("Content-Type", "application/json")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def wait_for(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"{url} exited early; log:\n{log.read_text()[-3000:]}")
        if http("GET", url, timeout=2)[0] == 200:
            return
        time.sleep(0.2)
    raise BenchError(f"{url} did not answer within {timeout:.0f}s; log:\n{log.read_text()[-3000:]}")


# --- the gateway ---------------------------------------------------------------------------


def gateway_env(var_dir: Path, database_url: str) -> dict[str, str]:
    drop = {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "GATEWAY_UPSTREAM_ALLOWLIST"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(
        GATEWAY_VAR_DIR=str(var_dir),
        DJANGO_SETTINGS_MODULE="gateway_project.settings",
        GATEWAY_ADMIN_EMAIL=ADMIN_EMAIL,
        GATEWAY_ADMIN_PASSWORD=secrets.token_urlsafe(18),
        GATEWAY_LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


def manage(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(  # noqa: S603
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"manage.py {args[0]} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def provider_manifest(fake_url: str) -> str:
    """A provider account pointing at the fake (JSON is valid YAML)."""
    return json.dumps(
        {
            "type": "provider-account/openai",
            "name": ACCOUNT,
            "auth_data": {"type": "api-key", "api_key": OPENAI_KEY},
            "base_url": f"{fake_url}/v1",
            "integrations": [
                {"type": "integration/model/openai", "name": MODEL, "model_id": MODEL}
            ],
        }
    )


def gateway_command(port: int, workers: int) -> list[str]:
    script = Path(sys.executable).with_name("gateway")
    head = [str(script)] if script.exists() else [sys.executable, "-m", "gateway_project.cli"]
    serve = ["serve", "--no-worker", "--host", HOST, "--port", str(port)]
    return [*head, *serve, "--workers", str(workers)]


def probe(url: str, token: str, stream: bool) -> str:
    """'' when one call works (200, the fake's echo); else why not."""
    body = request_body(stream)
    status, raw = http("POST", url, body, {"Authorization": f"Bearer {token}"})
    if status != 200:
        return f"HTTP {status}: {raw[:160].decode('utf-8', 'replace')}" if status else "no answer"
    text = raw.decode("utf-8", "replace")
    streamed = "".join(re.findall(r'"content":"([^"]*)"', text))  # the pieces of a stream
    if "echo: hello bench" not in text and "echo: hello bench" not in streamed:
        return f"unexpected answer: {text[:160]}"
    return ""


# --- the run -------------------------------------------------------------------------------


def request_body(stream: bool, model: str = f"{ACCOUNT}/{MODEL}") -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": "hello bench"}],
    }
    if stream:
        body["stream"] = True
    return body


@dataclass
class Plan:
    duration: float
    warmup: float
    connections: list[int]
    latencies: list[int]
    streams: list[bool]
    direct_only: bool
    workers: int
    database_url: str
    compare_django: bool = False
    idle: float = 3.0  # seconds of idle CPU measurement per target
    targets: list[Target] = field(default_factory=list)


@dataclass
class Target:
    """One server under test."""

    name: str  # "direct" or "gateway"
    url: str
    headers: dict[str, str]
    root: int  # the process started for it
    skip_root: bool  # the root only supervises (gateway serve): not a serving process
    unavailable: str = ""  # why it cannot be measured, or ""
    idle_cpu: float = 0.0  # CPU seconds per second it burns with no load (timers, polling)

    def pids(self) -> list[int]:
        """The serving processes now (uvicorn may start workers late or replace them)."""
        tree = process_tree(self.root)
        if not self.skip_root:
            return tree
        return [pid for pid in tree if pid != self.root] or tree


def measure_idle(target: Target, seconds: float) -> None:
    """Background CPU with no load, subtracted from the per-request CPU figures."""
    if seconds <= 0 or target.unavailable:
        return
    settle(target, timeout=5)
    with Meter(target.pids()) as meter:
        time.sleep(seconds)
    target.idle_cpu = meter.cpu_seconds / meter.wall_seconds


def settle(target: Target, timeout: float = 20.0) -> bool:
    """Wait until the server's CPU use is back near idle; False if it never is.

    When wrk stops, a saturated server still works through what it had accepted; that work
    must not be charged to the next case.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with Meter(target.pids()) as meter:
            time.sleep(0.5)
        if meter.cpu_seconds / meter.wall_seconds <= target.idle_cpu + 0.05:
            return True
    return False


def machine_busy_seconds() -> float:
    """CPU seconds all processes of the machine have used (/proc/stat, every core)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def children_cpu_seconds() -> float:
    """CPU seconds of this process's waited-for children (the wrk runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(case: Case, target: Target, script: Path, duration: float, ours: list[int]) -> Row:
    """One wrk run. `ours`: every process of the bench (fake, gateway), to tell other load."""
    quiet = settle(target)
    before = machine_busy_seconds(), children_cpu_seconds()
    with Meter(target.pids()) as meter, Meter(ours) as everything:
        output = run_wrk(target.url, script, case.connections, duration)
        # Work the server still does for this case's requests (log records) is charged to it.
        drained = settle(target)
    result = parse_wrk(output)
    busy = max(meter.cpu_seconds - target.idle_cpu * meter.wall_seconds, 0.0)
    # CPU that neither the servers under test nor wrk used: other work on the machine, which
    # competes for the same cores and shows up as latency (reported, never subtracted).
    other = (
        machine_busy_seconds()
        - before[0]
        - (children_cpu_seconds() - before[1])
        - everything.cpu_seconds
    ) / max(everything.wall_seconds, 1e-9)
    return Row(
        case=case,
        result=result,
        cpu_ms_per_request=busy * 1000 / max(result.requests, 1),
        rss_mib=meter.peak_kib / 1024,
        largest_mib=meter.largest_kib / 1024,
        note="; ".join(
            ([f"{result.errors} errors"] if result.errors else [])
            + ([] if quiet else ["server still busy from the previous case"])
            + ([] if drained else ["server still busy 20 s after the case"])
            + ([f"other load {other * 100:.0f}% of a core"] if other > 0.1 else [])
        ),
    )


def run(plan: Plan, work: Path) -> list[Row]:
    fake_port = free_port()
    fake_url = f"http://{HOST}:{fake_port}"
    fake_argv = [
        sys.executable, "-m", "tests.fakes.providers", "--host", HOST, "--port", str(fake_port),
        "--chunks", str(STREAM_CHUNKS), "--record", "0",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with started("fake provider", fake_argv, env, work / "fake.log") as fake:
        wait_for(f"{fake_url}/_fake/stats", fake, work / "fake.log", 30)
        targets = [
            Target(
                "direct",
                f"{fake_url}/v1/chat/completions",
                {"Authorization": f"Bearer {OPENAI_KEY}"},
                fake.pid,
                skip_root=False,
            )
        ]
        with contextlib.ExitStack() as stack:
            if not plan.direct_only:
                targets.append(start_gateway(plan, work, fake_url, stack))
            if plan.compare_django:
                targets += start_django_views(plan, work, stack)
            for target in targets:
                measure_idle(target, plan.idle)
            plan.targets = targets
            return run_cases(plan, work, fake_url)


def start_gateway(plan: Plan, work: Path, fake_url: str, stack: contextlib.ExitStack) -> Target:
    """Start and provision the gateway."""
    env = gateway_env(work / "var", plan.database_url)
    port = free_port()
    base = f"http://{HOST}:{port}"
    log = work / "gateway.log"
    _log(f"starting the gateway ({plan.workers} worker(s)) on {base} ...")
    gateway = stack.enter_context(started("gateway", gateway_command(port, plan.workers), env, log))
    wait_for(f"{base}/healthz", gateway, log, 120)
    manage(env, "apply", "-f", "-", stdin=provider_manifest(fake_url))
    token = manage(env, "create_pat", "--user", ADMIN_EMAIL, "--name", "bench").strip()
    url = f"{base}/api/llm/v1/chat/completions"
    why = ""
    deadline = time.monotonic() + 10  # the auth cache may need a poll interval to see the PAT
    while time.monotonic() < deadline:
        why = probe(url, token, stream=False) or probe(url, token, stream=True)
        if not why:
            break
        time.sleep(0.5)
    if why:
        _log(f"gateway proxy unavailable, skipping its rows: {why}")
    # The serving processes are those below the supervisor (uvicorn and its workers).
    headers = {"Authorization": f"Bearer {token}"}
    return Target("gateway", url, headers, gateway.pid, skip_root=True, unavailable=why)


DJANGO_VIEWS = {"django-view": "project", "django-view-bare": "none"}  # target -> middleware
DJANGO_CASE = (False, 0, 16)  # the one case they run: non-streaming, 0 ms, 16 connections


def start_django_views(plan: Plan, work: Path, stack: contextlib.ExitStack) -> list[Target]:
    """uvicorn on bench/django_view_asgi.py, as `gateway serve` runs the gateway's app."""
    env = gateway_env(work / "var", plan.database_url)
    targets = []
    for name, middleware in DJANGO_VIEWS.items():
        port = free_port()
        argv = [
            sys.executable, "-m", "uvicorn", "django_view_asgi:application",
            "--app-dir", str(ROOT / "bench"), "--host", HOST, "--port", str(port),
            "--lifespan", "off", "--loop", "uvloop", "--http", "httptools", "--no-access-log",
        ]  # fmt: skip
        log = work / f"{name}.log"
        view_env = {**env, "BENCH_DJANGO_MIDDLEWARE": middleware, "PYTHONPATH": str(ROOT)}
        process = stack.enter_context(started(name, argv, view_env, log))
        url = f"http://{HOST}:{port}/v1/chat/completions"
        deadline = time.monotonic() + 60
        why = "did not start"
        while time.monotonic() < deadline:
            if process.poll() is not None:
                why = f"exited: {log.read_text()[-300:]}"
                break
            status, _ = http("POST", url, request_body(False))
            if status == 200:
                why = ""
                break
            why = f"HTTP {status}" if status else "no answer"
            time.sleep(0.3)
        if why:
            _log(f"{name} unavailable: {why}")
        targets.append(Target(name, url, {}, process.pid, skip_root=False, unavailable=why))
    return targets


def run_cases(plan: Plan, work: Path, fake_url: str) -> list[Row]:
    rows: list[Row] = []
    for stream in plan.streams:
        for latency in plan.latencies:
            status, raw = http("POST", f"{fake_url}/_fake/config", {"latency_ms": latency})
            if status != 200:
                raise BenchError(f"could not configure the fake: {status} {raw!r}")
            for target in plan.targets:
                if target.name in DJANGO_VIEWS and (stream, latency) != DJANGO_CASE[:2]:
                    continue
                model = MODEL if target.name == "direct" else f"{ACCOUNT}/{MODEL}"
                headers = {**target.headers, "Content-Type": "application/json"}
                script = lua_script(
                    work / f"{target.name}-{stream}.lua", request_body(stream, model), headers
                )
                if plan.warmup and not target.unavailable:
                    run_wrk(target.url, script, min(max(plan.connections), 16), plan.warmup)
                for connections in plan.connections:
                    if target.name in DJANGO_VIEWS and connections != DJANGO_CASE[2]:
                        continue
                    case = Case(target.name, stream, latency, connections)
                    if target.unavailable:
                        rows.append(Row(case, note=f"unavailable: {target.unavailable[:60]}"))
                        continue
                    _log(f"  {_describe(case)} ...")
                    ours = [pid for t in plan.targets for pid in process_tree(t.root)]
                    rows.append(measure(case, target, script, plan.duration, ours))
    return rows


def _describe(case: Case) -> str:
    mode = "stream" if case.stream else "json"
    return f"{case.target:7} {mode:6} upstream {case.latency_ms:>3} ms, c={case.connections}"


# --- report --------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _added(row: Row, direct: Row | None, attr: str) -> str:
    if row.case.target == "direct" or row.result is None or direct is None:
        return "—"
    if direct.result is None:
        return "—"
    mine: float = getattr(row.result, attr)
    theirs: float = getattr(direct.result, attr)
    return f"{mine - theirs:+.2f}"


def markdown(rows: list[Row]) -> str:
    by_case = {row.case: row for row in rows}
    header = (
        "| target | mode | upstream ms | conns | req/s | p50 ms | p90 ms | p99 ms "
        "| added p50 | added p90 | added p99 | CPU ms/req | RSS MiB | largest MiB | notes |"
    )
    lines = [header, "|" + "---|" * 15]
    for row in rows:
        case, result = row.case, row.result
        direct = by_case.get(case.peer)
        lines.append(
            "| "
            + " | ".join(
                [
                    case.target,
                    "stream" if case.stream else "json",
                    str(case.latency_ms),
                    str(case.connections),
                    _num(result.rps if result else None, 0),
                    _num(result.p50_ms if result else None),
                    _num(result.p90_ms if result else None),
                    _num(result.p99_ms if result else None),
                    _added(row, direct, "p50_ms"),
                    _added(row, direct, "p90_ms"),
                    _added(row, direct, "p99_ms"),
                    _num(row.cpu_ms_per_request, 3),
                    _num(row.rss_mib, 0),
                    _num(row.largest_mib, 0),
                    row.note.replace("|", "/"),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def machine() -> str:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        f"{os.cpu_count()} CPUs ({cpu or platform.processor()}), Python {platform.python_version()}"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per case (10)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 s cases, c=1,16, 0 ms")
    parser.add_argument("--direct-only", action="store_true", help="only the fake, no gateway")
    parser.add_argument("--workers", type=int, default=1, help="gateway worker processes (1)")
    parser.add_argument("--connections", default="1,16,64", help="comma-separated (1,16,64)")
    parser.add_argument("--latencies", default="0,50", help="provider latencies in ms (0,50)")
    parser.add_argument(
        "--database-url", default="", help="gateway database (default: embedded SQLite)"
    )
    parser.add_argument(
        "--compare-django",
        action="store_true",
        help="also measure a trivial async Django view (json, 0 ms, 16 connections)",
    )
    parser.add_argument("--output", type=Path, help="also write the table to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, var/)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if shutil.which("wrk") is None:
        _log("wrk is missing: apt-get install wrk (`make bench` does it)")
        return 2
    plan = Plan(
        duration=args.duration,
        warmup=1.0,
        connections=[int(c) for c in args.connections.split(",")],
        latencies=[int(ms) for ms in args.latencies.split(",")],
        streams=[False, True],
        direct_only=args.direct_only,
        workers=args.workers,
        database_url=args.database_url,
        compare_django=args.compare_django,
    )
    if args.quick:
        plan.duration, plan.warmup, plan.connections, plan.latencies = 1.0, 0.0, [1, 16], [0]
        plan.idle = 1.0
    work = Path(tempfile.mkdtemp(prefix="proxy-bench-"))
    try:
        rows = run(plan, work)
    except BenchError as exc:
        _log(f"proxy_bench: {exc}")
        return 1
    finally:
        if args.keep:
            _log(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    target = "the fake directly" if plan.direct_only else "the fake directly and via the gateway"
    report = "\n".join(
        [
            f"Proxy benchmark: {target}; {plan.duration:g} s per case, wrk 1 thread; "
            f"gateway workers: {plan.workers}; {machine()}.",
            "Streams carry 5 content chunks. Added = gateway minus direct at that percentile.",
            "CPU and RSS are the server's (the fake's on direct rows, the gateway's otherwise: "
            "its workers and their log writer processes; largest = the largest one); CPU/req "
            "counts until the server is idle after the run and excludes the idle CPU measured "
            "before the runs ("
            + ", ".join(f"{t.name} {t.idle_cpu * 100:.1f}%" for t in plan.targets)
            + " of a core).",
            "",
            markdown(rows),
        ]
    )
    sys.stdout.write(report + "\n")
    if args.output:
        args.output.write_text(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
