"""`gateway serve` in embedded mode: SQLite, filesystem broker, web server plus worker."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.urls import reverse

from tests.processes import (
    TEST_RUN_SETTINGS,
    descendants,
    env_without,
    free_port,
    http_get,
    is_running,
    stop,
    wait_until,
)

pytestmark = pytest.mark.slow

BIN_DIR = Path(sys.executable).parent
GATEWAY = BIN_DIR / "gateway"
MANAGE = Path(__file__).resolve().parent.parent / "manage.py"
ADMIN_EMAIL = "owner@example.com"
STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


@dataclass
class Served:
    """A running `gateway serve` and where its output goes."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def embedded_env(var_dir: Path, **overrides: str) -> dict[str, str]:
    return env_without(*TEST_RUN_SETTINGS, GATEWAY_VAR_DIR=str(var_dir), **overrides)


def start_serve(env: dict[str, str], log: Path, *extra: str) -> Served:
    assert GATEWAY.is_file(), f"{GATEWAY} missing: run `make install`"
    port = free_port()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(GATEWAY), "serve", "--port", str(port), *extra],
            env=env,
            cwd=log.parent,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    return Served(process, port, log)


def healthy(served: Served) -> bool:
    if served.process.poll() is not None:
        raise AssertionError(f"gateway serve exited early:\n{served.output()}")
    try:
        return http_get(served.port, "/healthz", timeout=2)[0] == 200
    except OSError:
        return False


def stop_with(served: Served, signum: signal.Signals) -> int:
    served.process.send_signal(signum)
    return served.process.wait(timeout=STOP_TIMEOUT)


@pytest.fixture
def var_dir(tmp_path: Path) -> Path:
    return tmp_path / "var"


@pytest.fixture
def served(var_dir: Path, tmp_path: Path) -> Iterator[Served]:
    env = embedded_env(var_dir, GATEWAY_ADMIN_EMAIL=ADMIN_EMAIL, GATEWAY_ADMIN_PASSWORD="x" * 16)
    running = start_serve(env, tmp_path / "serve.log")
    try:
        wait_until(lambda: healthy(running), STARTUP_TIMEOUT, "/healthz to answer 200")
        yield running
    finally:
        stop(running.process)


def test_serve_runs_web_and_worker_on_sqlite_and_stops_cleanly_on_sigint(
    served: Served, var_dir: Path
) -> None:
    status, body = http_get(served.port, "/readyz")
    assert (status, json.loads(body)) == (
        200,
        {"status": "ok", "checks": {"database": True, "broker": True}},
    )
    assert http_get(served.port, reverse("accounts:login"))[0] == 200
    assert (var_dir / "gateway.sqlite3").is_file()
    wait_until(
        lambda: re.search(r"celery@\S+ ready\.", served.output()) is not None,
        STARTUP_TIMEOUT,
        "the Celery worker to log 'ready'",
    )
    children = descendants(served.process.pid)
    assert any(" -m celery " in cmd and " worker " in cmd for cmd in children.values()), children
    assert any(" -m uvicorn " in cmd for cmd in children.values()), children
    assert f"(admin: {ADMIN_EMAIL})" in served.output()
    assert "password" not in served.output().lower()  # it was given, so nothing is printed

    assert stop_with(served, signal.SIGINT) == 0

    leftovers = {pid: cmd for pid, cmd in children.items() if is_running(pid)}
    assert leftovers == {}


def test_serve_prints_a_generated_admin_password_once_and_it_logs_in(
    var_dir: Path, tmp_path: Path
) -> None:
    env = embedded_env(var_dir, GATEWAY_ADMIN_EMAIL=ADMIN_EMAIL)

    first = start_serve(env, tmp_path / "first.log", "--no-worker")
    try:
        wait_until(lambda: healthy(first), STARTUP_TIMEOUT, "/healthz to answer 200")
        assert stop_with(first, signal.SIGTERM) == 0
    finally:
        stop(first.process)
    printed = re.findall(
        rf"^Created tenant admin {re.escape(ADMIN_EMAIL)} with password: (\S+)$",
        first.output(),
        flags=re.MULTILINE,
    )
    assert len(printed) == 1
    password = printed[0]
    assert first.output().count(password) == 1

    second = start_serve(env, tmp_path / "second.log", "--no-worker")
    try:
        wait_until(lambda: healthy(second), STARTUP_TIMEOUT, "/healthz to answer 200")
        assert stop_with(second, signal.SIGTERM) == 0
    finally:
        stop(second.process)
    assert "password" not in second.output().lower()
    assert f"(admin: {ADMIN_EMAIL})" in second.output()

    check = (
        "import os, sys\n"
        "from django.contrib.auth import authenticate\n"
        "user = authenticate(username=os.environ['ADMIN_EMAIL'], password=os.environ['ADMIN_PW'])\n"
        "sys.exit(0 if user is not None and user.is_tenant_admin else 3)\n"
    )
    result = subprocess.run(
        [sys.executable, str(MANAGE), "shell", "-c", check],
        env={**env, "ADMIN_EMAIL": ADMIN_EMAIL, "ADMIN_PW": password},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
