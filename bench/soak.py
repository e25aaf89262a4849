#!/usr/bin/env python3
"""Soak the proxy: a steady mixed load for a long time; are its resources flat after warm-up?

Starts the fake provider and `gateway serve --no-worker` (as bench/proxy_bench.py does, on a
PostgreSQL database by default), then sends requests at a fixed rate (open loop: the schedule
does not wait for answers), alternating streaming and non-streaming chat completions, for
`--minutes`. Every `--sample-seconds` it records, for the gateway's serving processes: RSS,
open file descriptors and asyncio tasks (from the GATEWAY_STATS_DIR files the workers write,
see proxy/stats.py), the database's connections from the gateway (pg_stat_activity), queued
log records, and the window's request count, errors and latency percentiles. It prints the
samples as a markdown table and a verdict per resource: flat when, after the warm-up, the
last third's median is within the tolerance of the first third's median.

    .venv/bin/python bench/soak.py                       # 30 minutes at 100 req/s
    .venv/bin/python bench/soak.py --minutes 2 --rate 50 # a short check

Only loopback addresses are used; it stops by itself and stops every process it started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import proxy_bench as pb

DEFAULT_DATABASE = "postgres://postgres@127.0.0.1:5432/gateway_soak"
# Allowed growth from the early to the late part of the run, per resource.
TOLERANCE = {"rss_mib": 0.10, "fds": 0.10, "tasks": 0.10, "db_connections": 0.0}
SLACK = {"rss_mib": 8.0, "fds": 4.0, "tasks": 4.0, "db_connections": 1.0}


@dataclass
class Window:
    """Outcomes since the last sample."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0

    def take(self) -> Window:
        taken = Window(self.latencies_ms, self.errors)
        self.latencies_ms, self.errors = [], 0
        return taken


@dataclass
class Sample:
    at_s: float
    rss_mib: float
    fds: int
    tasks: int
    db_connections: int
    queued_logs: int
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def one_call(client: httpx.AsyncClient, url: str, stream: bool, window: Window) -> None:
    started = time.perf_counter()
    try:
        if stream:
            async with client.stream("POST", url, json=pb.request_body(True)) as response:
                async for _ in response.aiter_bytes():
                    pass
                ok = response.status_code == 200
        else:
            response = await client.post(url, json=pb.request_body(False))
            ok = response.status_code == 200
    except httpx.HTTPError:
        ok = False
    if ok:
        window.latencies_ms.append((time.perf_counter() - started) * 1000)
    else:
        window.errors += 1


async def drive(url: str, token: str, rate: float, seconds: float, window: Window) -> None:
    """Open-loop load: one call every 1/rate s, alternating stream and non-stream."""
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=30, trust_env=False) as c:
        pending: set[asyncio.Task[None]] = set()
        start = time.monotonic()
        sent = 0
        while (now := time.monotonic() - start) < seconds:
            due = int(now * rate)
            while sent < due:
                task = asyncio.create_task(one_call(c, url, sent % 2 == 1, window))
                pending.add(task)
                task.add_done_callback(pending.discard)
                sent += 1
            await asyncio.sleep(0.005)
        await asyncio.gather(*pending, return_exceptions=True)


def worker_stats(stats_dir: Path, pids: Sequence[int]) -> tuple[int, int, int]:
    """Summed (tasks, fds, queued logs) of the live workers' latest stats files."""
    tasks = fds = queued = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError):
            data = json.loads((stats_dir / f"{pid}.json").read_text())
            tasks += int(data["tasks"])
            fds += int(data["fds"])
            queued += int(data["queued_logs"])
    return tasks, fds, queued


def db_connections(database_url: str) -> int:
    """Connections to the gateway's database other than this one (-1 when not PostgreSQL)."""
    if not database_url.startswith("postgres"):
        return -1
    name = database_url.rsplit("/", 1)[1]
    query = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(query, (name,)).fetchone()
    return int(row[0]) if row else 0


def take_sample(
    at_s: float, target: pb.Target, stats_dir: Path, database_url: str, window: Window
) -> Sample:
    pids = target.pids()
    tasks, fds, queued = worker_stats(stats_dir, pids)
    done = window.take()
    return Sample(
        at_s=at_s,
        rss_mib=sum(pb.rss_kib(pid) for pid in pids) / 1024,
        fds=fds,
        tasks=tasks,
        db_connections=db_connections(database_url),
        queued_logs=queued,
        requests=len(done.latencies_ms) + done.errors,
        errors=done.errors,
        p50_ms=percentile(done.latencies_ms, 0.5),
        p99_ms=percentile(done.latencies_ms, 0.99),
    )


async def sample_until(
    stop: asyncio.Event,
    every: float,
    target: pb.Target,
    stats_dir: Path,
    database_url: str,
    window: Window,
) -> list[Sample]:
    samples: list[Sample] = []
    start = time.monotonic()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every)
        at_s = time.monotonic() - start
        sample = await asyncio.to_thread(take_sample, at_s, target, stats_dir, database_url, window)
        samples.append(sample)
        pb._log(
            f"  {at_s:6.0f}s rss {sample.rss_mib:6.1f} MiB fds {sample.fds:4} tasks "
            f"{sample.tasks:4} db {sample.db_connections:3} req {sample.requests:6} "
            f"err {sample.errors} p99 {sample.p99_ms:.1f} ms"
        )
    return samples


async def soak(target: pb.Target, args: argparse.Namespace, stats_dir: Path) -> list[Sample]:
    window = Window()
    stop = asyncio.Event()
    sampler = asyncio.create_task(
        sample_until(stop, args.sample_seconds, target, stats_dir, args.database_url, window)
    )
    token = target.headers["Authorization"].removeprefix("Bearer ")
    await drive(target.url, token, args.rate, args.minutes * 60, window)
    stop.set()
    return await sampler


def verdicts(samples: list[Sample], warmup_s: float) -> dict[str, str]:
    """Per resource: flat, or how much it grew between the early and the late third."""
    steady = [s for s in samples if s.at_s >= warmup_s]
    if len(steady) < 3:
        return dict.fromkeys(TOLERANCE, "too few samples")
    third = max(1, len(steady) // 3)
    results = {}
    for name, tolerance in TOLERANCE.items():
        early = statistics.median(float(getattr(s, name)) for s in steady[:third])
        late = statistics.median(float(getattr(s, name)) for s in steady[-third:])
        allowed = early * tolerance + SLACK[name]
        grew = late - early
        state = "flat" if grew <= allowed else "GROWING"
        results[name] = f"{state} ({early:.1f} -> {late:.1f}, allowed +{allowed:.1f})"
    return results


def markdown(samples: list[Sample], results: dict[str, str], args: argparse.Namespace) -> str:
    head = (
        f"Soak: {args.minutes:g} min at {args.rate:g} req/s (half streaming), upstream "
        f"{args.latency_ms} ms, {args.workers} worker(s), {pb.machine()}\n\n"
        "| t (s) | RSS MiB | fds | tasks | DB conns | queued logs | requests | errors "
        "| p50 ms | p99 ms |\n|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = "".join(
        f"| {s.at_s:.0f} | {s.rss_mib:.1f} | {s.fds} | {s.tasks} | {s.db_connections} "
        f"| {s.queued_logs} | {s.requests} | {s.errors} | {s.p50_ms:.1f} | {s.p99_ms:.1f} |\n"
        for s in samples
    )
    total = sum(s.requests for s in samples)
    errors = sum(s.errors for s in samples)
    verdict = "".join(f"- {name}: {text}\n" for name, text in results.items())
    return f"{head}{rows}\n{total} requests, {errors} errors. After warm-up:\n{verdict}"


def run(args: argparse.Namespace, work: Path) -> str:
    stats_dir = work / "stats"
    plan = pb.Plan(
        duration=0, warmup=0, connections=[1], latencies=[args.latency_ms], streams=[False],
        direct_only=False, workers=args.workers, database_url=args.database_url,
    )  # fmt: skip
    fake_port = pb.free_port()
    fake_url = f"http://{pb.HOST}:{fake_port}"
    fake_argv = [
        sys.executable, "-m", "tests.fakes.providers", "--host", pb.HOST, "--port",
        str(fake_port), "--chunks", str(pb.STREAM_CHUNKS), "--record", "0",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "GATEWAY_STATS_DIR": str(stats_dir)}
    os.environ["GATEWAY_STATS_DIR"] = str(stats_dir)  # gateway_env copies os.environ
    with pb.started("fake provider", fake_argv, env, work / "fake.log") as fake:
        pb.wait_for(f"{fake_url}/_fake/stats", fake, work / "fake.log", 30)
        pb.http("POST", f"{fake_url}/_fake/config", {"latency_ms": args.latency_ms})
        with contextlib.ExitStack() as stack:
            target = pb.start_gateway(plan, work, fake_url, stack)
            if target.unavailable:
                raise pb.BenchError(f"the gateway does not serve: {target.unavailable}")
            pb._log(f"soaking {args.minutes:g} min at {args.rate:g} req/s ...")
            samples = asyncio.run(soak(target, args, stats_dir))
    return markdown(samples, verdicts(samples, args.warmup_seconds), args)


def reset_database(database_url: str) -> None:
    """A fresh, empty PostgreSQL database for the run (dropped and recreated)."""
    if not database_url.startswith("postgres"):
        return
    server, name = database_url.rsplit("/", 1)
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--rate", type=float, default=100, help="requests per second")
    parser.add_argument("--latency-ms", type=int, default=20, help="the fake's latency")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--sample-seconds", type=float, default=30)
    parser.add_argument("--warmup-seconds", type=float, default=120)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE)
    return parser


def exit_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so the processes started are stopped too."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    exit_on_sigterm()
    reset_database(args.database_url)
    with tempfile.TemporaryDirectory(prefix="gateway-soak-") as tmp:
        sys.stdout.write(run(args, Path(tmp)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
