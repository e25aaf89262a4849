#!/usr/bin/env python3
"""Soak the proxy: a steady mixed load for a long time; are its resources flat after warm-up?

Starts the fake provider and `gateway serve --no-worker` (as bench/proxy_bench.py does, on a
PostgreSQL database by default), then sends requests at a fixed rate (open loop: the schedule
does not wait for answers), alternating streaming and non-streaming chat completions, for
`--minutes`, from a fixed pool of keep-alive client connections on threads (latency counts
from each call's scheduled time; past a backlog of MAX_BACKLOG waiting calls new ones are shed
and counted, so a stalled gateway shows up instead of stalling the generator). Every
`--sample-seconds` it records, for the gateway's serving processes: RSS,
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
import contextlib
import http.client
import json
import os
import queue
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import proxy_bench as pb

DEFAULT_DATABASE = "postgres://postgres@127.0.0.1:5432/gateway_soak"
# Allowed growth from the early to the late part of the run, per resource.
TOLERANCE = {"rss_mib": 0.10, "fds": 0.10, "tasks": 0.10, "db_connections": 0.0}
MAX_BACKLOG = 1000  # scheduled calls waiting for a free client connection, at most
HOST = pb.HOST
SLACK = {"rss_mib": 8.0, "fds": 4.0, "tasks": 4.0, "db_connections": 1.0}


@dataclass
class Window:
    """Outcomes since the last sample (written by the client threads, under `lock`)."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    shed: int = 0  # calls never sent: the backlog was full (the gateway fell behind)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, latency_ms: float | None) -> None:
        with self.lock:
            if latency_ms is None:
                self.errors += 1
            else:
                self.latencies_ms.append(latency_ms)

    def take(self) -> tuple[list[float], int, int]:
        with self.lock:
            taken = (self.latencies_ms, self.errors, self.shed)
            self.latencies_ms, self.errors, self.shed = [], 0, 0
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
    shed: int
    p50_ms: float
    p99_ms: float


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Client:
    """One keep-alive HTTP/1.1 connection to the gateway (http.client: cheap, no event loop)."""

    def __init__(self, url: str, token: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host, self.port, self.path = parts.hostname or HOST, parts.port or 80, parts.path
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.bodies = {s: json.dumps(pb.request_body(s)).encode() for s in (False, True)}
        self.conn: http.client.HTTPConnection | None = None

    def call(self, stream: bool) -> bool:
        """One chat completion, read to the end; False on any failure (then reconnect)."""
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            self.conn.request("POST", self.path, self.bodies[stream], self.headers)
            response = self.conn.getresponse()
            response.read()
            return response.status == 200
        except (OSError, http.client.HTTPException):
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            return False


def client_loop(client: Client, due: queue.Queue[tuple[float, bool] | None], w: Window) -> None:
    """Take scheduled calls until None; latency counts from the scheduled time (so a gateway
    that falls behind shows it, instead of the load slowing down with it)."""
    while (item := due.get()) is not None:
        scheduled, stream = item
        wait = scheduled - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        ok = client.call(stream)
        w.add((time.monotonic() - scheduled) * 1000 if ok else None)


def drive(url: str, token: str, args: argparse.Namespace, window: Window) -> None:
    """Open-loop load at `args.rate`, alternating stream and non-stream, for `args.minutes`.

    A fixed pool of `args.connections` client threads takes calls off a schedule; when more than
    `MAX_BACKLOG` calls wait, new ones are shed (counted), so the generator never spirals.
    """
    due: queue.Queue[tuple[float, bool] | None] = queue.Queue()
    threads = [
        threading.Thread(target=client_loop, args=(Client(url, token), due, window), daemon=True)
        for _ in range(args.connections)
    ]
    for thread in threads:
        thread.start()
    start = time.monotonic()
    interval = 1 / args.rate
    sent = 0
    while (scheduled := start + sent * interval) < start + args.minutes * 60:
        time.sleep(max(0.0, scheduled - time.monotonic()))
        if due.qsize() < MAX_BACKLOG:
            due.put((scheduled, sent % 2 == 1))
        else:
            with window.lock:
                window.shed += 1
        sent += 1
    for _ in threads:
        due.put(None)
    for thread in threads:
        thread.join(timeout=60)


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
    latencies, errors, shed = window.take()
    return Sample(
        at_s=at_s,
        rss_mib=sum(pb.rss_kib(pid) for pid in pids) / 1024,
        fds=fds,
        tasks=tasks,
        db_connections=db_connections(database_url),
        queued_logs=queued,
        requests=len(latencies) + errors,
        errors=errors,
        shed=shed,
        p50_ms=percentile(latencies, 0.5),
        p99_ms=percentile(latencies, 0.99),
    )


def sample_until(
    stop: threading.Event,
    args: argparse.Namespace,
    target: pb.Target,
    stats_dir: Path,
    window: Window,
    samples: list[Sample],
) -> None:
    start = time.monotonic()
    while True:
        finished = stop.wait(args.sample_seconds)
        sample = take_sample(time.monotonic() - start, target, stats_dir, args.database_url, window)
        samples.append(sample)
        pb._log(
            f"  {sample.at_s:6.0f}s rss {sample.rss_mib:6.1f} MiB fds {sample.fds:4} tasks "
            f"{sample.tasks:4} db {sample.db_connections:3} req {sample.requests:6} "
            f"err {sample.errors} shed {sample.shed} p99 {sample.p99_ms:.1f} ms"
        )
        if finished:  # the last, partial window is sampled too: every call is counted
            return


def soak(target: pb.Target, args: argparse.Namespace, stats_dir: Path) -> list[Sample]:
    window = Window()
    stop = threading.Event()
    samples: list[Sample] = []
    sampler = threading.Thread(
        target=sample_until, args=(stop, args, target, stats_dir, window, samples), daemon=True
    )
    sampler.start()
    token = target.headers["Authorization"].removeprefix("Bearer ")
    try:
        drive(target.url, token, args, window)
    finally:
        stop.set()
        sampler.join(timeout=60)
    return samples


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
        "| t (s) | RSS MiB | fds | tasks | DB conns | queued logs | requests | errors | shed "
        "| p50 ms | p99 ms |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = "".join(
        f"| {s.at_s:.0f} | {s.rss_mib:.1f} | {s.fds} | {s.tasks} | {s.db_connections} "
        f"| {s.queued_logs} | {s.requests} | {s.errors} | {s.shed} | {s.p50_ms:.1f} "
        f"| {s.p99_ms:.1f} |\n"
        for s in samples
    )
    total = sum(s.requests for s in samples)
    errors = sum(s.errors for s in samples)
    shed = sum(s.shed for s in samples)
    verdict = "".join(f"- {name}: {text}\n" for name, text in results.items())
    return (
        f"{head}{rows}\n{total} requests, {errors} errors, {shed} shed. After warm-up:\n{verdict}"
    )


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
            samples = soak(target, args, stats_dir)
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
    parser.add_argument("--connections", type=int, default=32, help="client connections")
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
