"""Helpers for tests that run real processes: free ports, HTTP probes, process trees."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
# What a test run configures for itself (its database, broker, eager tasks, keys, var dir and
# bootstrap admin), which must not leak into a gateway process a test starts: each test sets
# explicitly what that process needs.
TEST_RUN_SETTINGS = (
    "DJANGO_SETTINGS_MODULE",
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "CELERY_TASK_ALWAYS_EAGER",
    "GATEWAY_SECRET_KEY",
    "GATEWAY_ENCRYPTION_KEY",
    "GATEWAY_VAR_DIR",
    "GATEWAY_ADMIN_EMAIL",
    "GATEWAY_ADMIN_PASSWORD",
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET http://127.0.0.1:<port><path> without proxies: (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, interval: float = 0.25
) -> None:
    """Poll `check` until it is true; AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _parent_map() -> dict[int, int]:
    """pid -> parent pid for every process, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            # The command name is parenthesised and may contain spaces: split after it.
            fields = stat[stat.rindex(")") + 2 :].split()
            parents[int(entry.name)] = int(fields[1])
    return parents


def descendants(pid: int) -> dict[int, str]:
    """Every live process below `pid`: pid -> command line."""
    parents = _parent_map()
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        for child, parent in parents.items():
            if parent == current and child not in found:
                found[child] = cmdline(child)
                frontier.append(child)
    return found


def cmdline(pid: int) -> str:
    """A process's command line, or "" when it is gone."""
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def is_running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def stop(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Best-effort clean-up: SIGTERM, then SIGKILL; for fixtures' finally blocks."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def env_without(*names: str, **overrides: str) -> dict[str, str]:
    """A copy of this process's environment without `names`, plus `overrides`."""
    env = {k: v for k, v in os.environ.items() if k not in names}
    env.update(overrides)
    return env


def manage(env: dict[str, str], *args: str, stdin: str = "") -> str:
    """`manage.py ARGS` in a subprocess with `env`: its stripped stdout (asserts it succeeded)."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        input=stdin,
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"manage.py {args[0]}: {done.stdout}{done.stderr}"
    return done.stdout.strip()


def current_database_url() -> str:
    """A URL for the database this test runs against (pytest-django's test database), for the
    processes a test starts."""
    from django.db import connection

    db = connection.settings_dict
    credentials = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"], safe="")
    host = db["HOST"] or "127.0.0.1"
    return f"postgres://{credentials}@{host}:{db['PORT'] or 5432}/{db['NAME']}"
