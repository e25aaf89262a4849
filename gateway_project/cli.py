"""The `gateway` command. `gateway serve` runs the web server and a Celery worker with beat."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType

from gateway_project import remote

SETTINGS_MODULE = "gateway_project.settings"
ASGI_APP = "gateway_project.asgi:application"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STOP_GRACE_SECONDS = 15.0  # time to finish in-flight work, then SIGKILL
POLL_SECONDS = 0.2
_PR_SET_PDEATHSIG = 1


def _positive_int(value: str) -> int:
    """argparse type: an integer >= 1."""
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def build_parser() -> argparse.ArgumentParser:
    """The `gateway` argument parser; every subcommand sets its `handler`."""
    parser = argparse.ArgumentParser(
        prog="gateway", description="Gateway, a self-hosted AI gateway."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="migrate, make sure an admin exists, then run the web server and a worker",
        description="Apply migrations, make sure a tenant admin exists, then serve the ASGI app "
        "with uvicorn and (unless --no-worker) a Celery worker with embedded beat.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="bind port (default 8000)")
    serve.add_argument(
        "--workers", type=_positive_int, default=1, help="uvicorn worker processes (default 1)"
    )
    serve.add_argument(
        "--no-worker",
        action="store_true",
        help="run no Celery worker/beat here (production: run them as separate services)",
    )
    serve.set_defaults(handler=serve_command)
    remote.add_subcommands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gateway` console script."""
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


# --- serve -------------------------------------------------------------------------------


def serve_command(args: argparse.Namespace) -> int:
    """`gateway serve`: prepare the database, then supervise the web server and the worker."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS_MODULE)
    try:
        admin_email = _prepare()
    except KeyboardInterrupt:
        _say("Interrupted before the server started.", err=True)
        return 130
    except _SetupError as exc:
        _say(f"gateway serve: {exc}", err=True)
        return 2
    _say(f"Gateway: {_url(args.host, args.port)}  (admin: {admin_email})")

    supervisor = Supervisor()
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:  # e.g. SIGHUP under nohup
            signal.signal(signum, supervisor.request_stop)
    supervisor.spawn("web", _web_argv(args.host, args.port, args.workers))
    if not args.no_worker:
        supervisor.spawn("worker", _worker_argv())
    return supervisor.run()


class _SetupError(Exception):
    """Preparation failed in a way the operator can fix (the message says how)."""


def _prepare() -> str:
    """Migrate, make sure a tenant admin exists, print a generated password once; the email."""
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connections

    from accounts.services import tenant_admin_ensure
    from gateway_project.errors import ValidationFailed

    call_command("migrate", interactive=False, verbosity=1)
    try:
        admin, generated = tenant_admin_ensure(
            email=settings.GATEWAY_ADMIN_EMAIL, password=settings.GATEWAY_ADMIN_PASSWORD
        )
    except ValidationFailed as exc:
        raise _SetupError(f"GATEWAY_ADMIN_EMAIL: {exc.message}") from exc
    if generated is not None:
        # stdout only, never a logger: the operator sees it once and it is stored nowhere else.
        _say(f"Created tenant admin {admin.email} with password: {generated}")
        _say("This password is shown only once; change it after signing in.")
    connections.close_all()  # the children open their own connections
    return admin.email


def _say(message: str, *, err: bool = False) -> None:
    """A line for the operator on stdout (stderr for problems), flushed at once."""
    stream = sys.stderr if err else sys.stdout
    stream.write(message + "\n")
    stream.flush()


def _url(host: str, port: int) -> str:
    """The address to print; IPv6 literals need brackets."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def _web_argv(host: str, port: int, workers: int) -> list[str]:
    """uvicorn serving the ASGI app; lifespan on, so its startup and shutdown (log flush) run.

    uvloop and httptools for speed; no access log: every proxied call has its request-log row,
    and a log line per request costs the hot path more CPU than the proxying itself.
    """
    return [
        sys.executable, "-m", "uvicorn", ASGI_APP,
        "--host", host, "--port", str(port), "--workers", str(workers), "--lifespan", "on",
        "--loop", "uvloop", "--http", "httptools", "--no-access-log",
    ]  # fmt: skip


def _worker_argv() -> list[str]:
    """A Celery worker with embedded beat, on whatever broker the settings name."""
    return [sys.executable, "-m", "celery", "-A", "gateway_project", "worker", "-B", "-l", "INFO"]


@dataclass
class Child:
    """One supervised process."""

    name: str
    process: subprocess.Popen[bytes]


class Supervisor:
    """Runs child processes until a stop signal arrives or one of them exits.

    Each child leads its own process group, so a terminal's Ctrl-C reaches only this process,
    which then stops every child once with SIGTERM (a Ctrl-C reaching Celery twice would make
    it cold-stop). A second signal while stopping kills them at once. Leftovers in a child's
    group (pool processes, embedded beat) are killed at the end.
    """

    def __init__(self) -> None:
        self.children: list[Child] = []
        self.stop_requests = 0

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        """Signal handler: only counts the request; the run loop acts on it."""
        self.stop_requests += 1

    def spawn(self, name: str, argv: list[str]) -> None:
        """Start a child in its own process group; it gets SIGTERM if this process dies."""
        if self.stop_requests:
            return
        process = subprocess.Popen(argv, process_group=0, preexec_fn=_die_with_parent)  # noqa: S603
        self.children.append(Child(name, process))

    def run(self) -> int:
        """Wait; 0 after a requested stop, 1 if a child exited on its own."""
        while not self.stop_requests:
            exited = next((c for c in self.children if c.process.poll() is not None), None)
            if exited is not None:
                code = exited.process.returncode
                _say(f"gateway serve: {exited.name} exited with code {code}; stopping.", err=True)
                self.stop()
                return 1
            time.sleep(POLL_SECONDS)
        _say("Stopping (finishing running tasks; Ctrl-C again to stop at once)…", err=True)
        self.stop()
        return 0

    def stop(self) -> None:
        """SIGTERM every child; SIGKILL what is left after the grace period or a new signal."""
        requests = self.stop_requests
        for child in self._alive():
            child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while self._alive() and self.stop_requests == requests:
            if time.monotonic() >= deadline:
                names = ", ".join(c.name for c in self._alive())
                _say(f"gateway serve: {names} did not stop in time; killing.", err=True)
                break
            time.sleep(POLL_SECONDS / 2)
        for child in self.children:
            _kill_group(child.process.pid)
            child.process.wait()

    def _alive(self) -> list[Child]:
        """Children that have not exited yet."""
        return [c for c in self.children if c.process.poll() is None]


def _kill_group(pgid: int) -> None:
    """SIGKILL whatever is left in a process group (pool processes of a killed worker)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _load_prctl() -> Callable[..., int] | None:
    """libc's prctl on Linux, else None. Loaded before forking: only called in the child."""
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    prctl: Callable[..., int] = ctypes.CDLL(name, use_errno=True).prctl
    return prctl


_prctl = _load_prctl()


def _die_with_parent() -> None:
    """In the forked child: ask the kernel for SIGTERM when the parent dies (even by SIGKILL)."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
