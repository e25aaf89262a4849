"""Shared fixtures for process-level fault tests: each test owns its database, Redis and gateways.

- `pg_template` (session, per xdist worker): a private PostgreSQL cluster (initdb into a temp
  dir, trust auth, its own port and socket dir), migrated once and seeded once (see
  `seed_database`: teams, users, PATs, a virtual account, provider accounts pointing at the
  session's fake provider). Building it costs ~5 s; every test then gets a copy.
- `pg_cluster` (function): a running copy of the template that the test may stop, restart,
  exhaust or lock (`PgCluster`); stopped (`-m immediate`) and deleted afterwards.
- `redis_server` (function): a private `redis-server --save ''` on a free port that the test
  may pause (SIGSTOP), resume or stop (`RedisServer`).
- `gateways` (function): starts gateway web processes (`GatewayLauncher.start`): uvicorn
  serving `gateway_project.asgi:application` with exactly the arguments `gateway serve` uses,
  against a given database URL and its own var dir; every process is killed afterwards.
- `Load`: a few client threads calling the proxy at a steady pace, recording each call.

Everything binds fresh ports and temp dirs, so these tests run beside others under
`pytest -n auto`. PostgreSQL refuses to run as root: as root, its commands run as `postgres`.
"""

from __future__ import annotations

import contextlib
import glob
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gateway_project.cli import _die_with_parent, _web_argv
from tests.fakes.fixtures import (  # noqa: F401 - fixtures for the fault tests
    FakeProvider,
    FakeProviderServer,
    fake_provider,
    fake_provider_server,
)
from tests.processes import TEST_RUN_SETTINGS, env_without, free_port, http_get, wait_until

REPO = Path(__file__).resolve().parents[2]
MODEL = "openai-main/gpt-4o"
SIDE_MODEL = "openai-side/gpt-4o"
STARTUP_TIMEOUT = 60.0
PROVIDERS = """\
type: provider-account/openai
name: openai-main
auth_data: {{type: api-key, api_key: {key}}}
base_url: {url}/v1
collaborators: [{{subject: team:ml, role_id: provider-account-access}}]
integrations:
  - {{type: integration/model/openai, name: gpt-4o, model_id: gpt-4o-2024-08-06}}
---
{side}
"""
SIDE_ACCOUNT = """\
type: provider-account/openai
name: openai-side
auth_data: {{type: api-key, api_key: {key}}}
base_url: {url}/v1
collaborators: {collaborators}
integrations:
  - {{type: integration/model/openai, name: gpt-4o, model_id: gpt-4o-2024-08-06}}
"""


def side_account_manifest(fake_url: str, *, with_grant: bool) -> str:
    """The `openai-side` account, used by team `side` only while `with_grant`."""
    grant = "[{subject: team:side, role_id: provider-account-access}]" if with_grant else "[]"
    return SIDE_ACCOUNT.format(key=FakeProvider.OPENAI_KEY, url=fake_url, collaborators=grant)


# --- seeding (runs in a subprocess against the template cluster) ------------------------------


def seed_database(fake_url: str) -> dict[str, Any]:
    """Create the people, tokens and accounts every fault test starts from; returns the secrets.

    Team `ml` may use `openai-main`, team `side` may use `openai-side`. Tokens: `operator`
    (tenant admin, drives the API), `admin` (another tenant admin), members of `ml`
    (`member`, `pat_victim`, `deactivated`, `cold`), `side` (member of `side`) and `va` (the
    virtual account `fault-bot` of team `ml`).
    """
    from accounts import virtual_accounts as va
    from accounts.models import PersonalAccessToken
    from accounts.selectors import principal_for_user
    from gateway_project import manifests
    from gateway_project.manifest_io import parse_yaml
    from tests import factories

    ml = factories.TeamFactory(name="ml")
    side = factories.TeamFactory(name="side")
    users = {
        "operator": factories.tenant_admin(),
        "admin": factories.tenant_admin(),
        **{name: factories.team_member_of(ml) for name in ("member", "pat_victim", "cold")},
        "deactivated": factories.team_member_of(ml),
        "side": factories.team_member_of(side),
    }
    operator = principal_for_user(users["operator"])
    text = PROVIDERS.format(
        key=FakeProvider.OPENAI_KEY,
        url=fake_url,
        side=side_account_manifest(fake_url, with_grant=True),
    )
    manifests.apply(parse_yaml(text), actor=operator)
    tokens = {name: factories.pat_for(user) for name, user in users.items()}
    _account, tokens["va"] = va.va_create(
        actor=operator,
        spec=va.VirtualAccountSpec(
            name="fault-bot",
            owner_team=ml.name,
            permissions=[
                va.PermissionSpec("provider-account-access", "provider-account", "openai-main")
            ],
        ),
    )
    pats = PersonalAccessToken.objects.filter(user__in=users.values())
    return {
        "tokens": tokens,
        "pat_ids": {name: pats.get(user=user).pk for name, user in users.items()},
        "user_ids": {name: user.pk for name, user in users.items()},
    }


# --- PostgreSQL ------------------------------------------------------------------------------


def _pg_bin() -> Path:
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if not found:
        pytest.fail("PostgreSQL server binaries missing (/usr/lib/postgresql/*/bin): make services")
    newest = max(found, key=lambda p: int(Path(p).parent.parent.name.split(".")[0]))
    return Path(newest).parent


def _as_postgres(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its commands as the `postgres` user then."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _private_dir(prefix: str) -> Path:
    """A temp dir the PostgreSQL user owns (pytest's tmp dirs are private to root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")
    return path


def _run(argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 60) -> str:
    result = subprocess.run(
        argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"{argv[:4]} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result.stdout


@dataclass
class PgCluster:
    """A private PostgreSQL cluster: `root/data`, its log and socket in `root`, one port."""

    root: Path
    port: int = 0
    max_connections: int = 40

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/gateway"

    def _pg_ctl(self, *args: str, timeout: float = 60) -> str:
        argv = [str(_pg_bin() / "pg_ctl"), "-D", str(self.data), *args]
        return _run(_as_postgres(argv), timeout=timeout)

    def start(self) -> None:
        """Start on `port`; returns once it accepts. The first start picks a free port, and
        another if a parallel test took that one meanwhile."""
        if self.port:
            self._start()
            return
        for attempt in range(3):
            self.port = free_port()
            try:
                self._start()
                return
            except AssertionError:
                if attempt == 2 or "in use" not in self.log():
                    raise

    def log(self) -> str:
        path = self.root / "postgres.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _start(self) -> None:
        # fsync off is safe: tests crash the server, never the machine. Commits stay synchronous
        # (an immediate stop must not lose an acknowledged write: tests count rows).
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            f"-c max_connections={self.max_connections} -c fsync=off -c full_page_writes=off"
        )
        log = str(self.root / "postgres.log")
        self._pg_ctl("-l", log, "-o", options, "-w", "-t", "30", "start")

    def stop(self, mode: str = "immediate") -> None:
        """`pg_ctl stop -m <mode>`: `immediate` is a crash, as far as clients can tell."""
        self._pg_ctl("-m", mode, "-w", "-t", "30", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def connect(self, *, autocommit: bool = True) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user="postgres",
            dbname="gateway",
            autocommit=autocommit,
            connect_timeout=5,
        )

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement on a fresh connection; its rows ([] for commands)."""
        with self.connect() as conn, conn.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def destroy(self) -> None:
        """Stop (if running) and delete everything, for finalizers: never raises."""
        if self.running():
            with contextlib.suppress(Exception):
                self.stop("immediate")
        if self.running():  # pg_ctl failed: kill the postmaster by its pid file
            with contextlib.suppress(Exception):
                pid = int((self.data / "postmaster.pid").read_text().split()[0])
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class PgTemplate:
    """A stopped, migrated and seeded cluster to copy, and the seed's secrets."""

    cluster: PgCluster
    seed: dict[str, Any]
    fake_url: str

    def token(self, name: str) -> str:
        return str(self.seed["tokens"][name])


def gateway_env(database_url: str, var_dir: Path, **overrides: str) -> dict[str, str]:
    """The environment of a gateway process (production settings) or of a manage.py command."""
    values = {
        "DJANGO_SETTINGS_MODULE": "gateway_project.settings",
        "DATABASE_URL": database_url,
        "GATEWAY_VAR_DIR": str(var_dir),
        # The same keys as this test run: token digests and encrypted secrets must match.
        "GATEWAY_SECRET_KEY": os.environ["GATEWAY_SECRET_KEY"],
        "GATEWAY_ENCRYPTION_KEY": os.environ["GATEWAY_ENCRYPTION_KEY"],
        "GATEWAY_UPSTREAM_ALLOWLIST": "127.0.0.1",  # the fake provider
    }
    return env_without(*TEST_RUN_SETTINGS, **{**values, **overrides})


def _build_template(fake_url: str) -> PgTemplate:
    cluster = PgCluster(_private_dir("gw-fault-pg-template-"))
    var_dir = Path(tempfile.mkdtemp(prefix="gw-fault-seed-var-"))
    try:
        initdb = [str(_pg_bin() / "initdb"), "-D", str(cluster.data), "-A", "trust"]
        _run(_as_postgres([*initdb, "-U", "postgres", "-E", "UTF8", "--no-sync"]))
        cluster.start()
        with psycopg.connect(
            host="127.0.0.1", port=cluster.port, user="postgres", autocommit=True
        ) as conn:
            conn.execute("CREATE DATABASE gateway")
        # One process migrates and seeds (Django starts once); test settings: a fast hasher.
        env = gateway_env(
            cluster.url, var_dir, DJANGO_SETTINGS_MODULE="gateway_project.settings_test"
        )
        seed_code = (
            "import django, json, sys; django.setup()\n"
            "from django.core.management import call_command\n"
            "call_command('migrate', verbosity=0)\n"
            "from tests.faults.conftest import seed_database\n"
            "print(json.dumps(seed_database(sys.argv[1])))\n"
        )
        out = _run([sys.executable, "-c", seed_code, fake_url], env=env, timeout=120)
        seed = json.loads(out.strip().splitlines()[-1])
        cluster.stop("fast")
    except BaseException:
        cluster.destroy()
        raise
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)
    return PgTemplate(cluster, seed, fake_url)


@pytest.fixture(scope="session")
def pg_template(
    fake_provider_server: FakeProviderServer,  # noqa: F811
) -> Iterator[PgTemplate]:
    """One migrated, seeded template cluster per test session (per xdist worker)."""
    template = _build_template(fake_provider_server.url)
    try:
        yield template
    finally:
        template.cluster.destroy()


def copy_cluster(template: PgTemplate, *, max_connections: int = 40) -> PgCluster:
    """A stopped copy of the template's data dir, with its own root dir."""
    cluster = PgCluster(_private_dir("gw-fault-pg-"), max_connections=max_connections)
    _run(_as_postgres(["cp", "-a", str(template.cluster.data), str(cluster.data)]))
    return cluster


@pytest.fixture
def pg_cluster(
    pg_template: PgTemplate,
    fake_provider: FakeProvider,  # noqa: F811 - reset: default knobs
) -> Iterator[PgCluster]:
    """A running private copy of the template for this test; destroyed afterwards."""
    cluster = copy_cluster(pg_template)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


# --- Redis ----------------------------------------------------------------------------------


def redis_ping(port: int, timeout: float = 1.0) -> bool:
    """True when a Redis server answers PING on `port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisServer:
    """A private redis-server that a test may pause (SIGSTOP), resume or stop."""

    process: subprocess.Popen[bytes]
    port: int
    paused: bool = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)
        self.paused = False

    def stop(self) -> None:
        if self.paused:
            self.resume()
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private Redis for this test (nothing persisted); killed afterwards."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server missing: make services")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    with (tmp_path / "redis.log").open("wb") as sink:
        process = subprocess.Popen(
            [*argv, "--dir", str(tmp_path)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
    server = RedisServer(process, port)
    try:
        wait_until(lambda: redis_ping(port), 15, "redis-server to answer PING", interval=0.05)
        yield server
    finally:
        server.stop()


# --- gateway processes ----------------------------------------------------------------------


@dataclass
class GatewayProcess:
    """One gateway web process (uvicorn as `gateway serve` runs it) and its output."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path
    var_dir: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def healthy(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the gateway exited early:\n{self.output()[-4000:]}")
        try:
            return http_get(self.port, "/healthz", timeout=2)[0] == 200
        except OSError:
            return False

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM (a graceful stop: in-flight calls finish, logs flush); the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL to the web process: no shutdown code runs (its log writer lives on)."""
        self.process.kill()
        self.process.wait(timeout=10)

    def kill_all(self) -> None:
        """SIGKILL to every process of the gateway: the web process and its log writer."""
        os.killpg(self.process.pid, signal.SIGKILL)  # its own session: the group is its own
        self.process.wait(timeout=10)


@dataclass
class GatewayLauncher:
    """Starts gateway processes for one test and kills whatever is left at its end."""

    tmp_path: Path
    started: list[GatewayProcess] = field(default_factory=list)

    def start(
        self, database_url: str, *, var_dir: Path | None = None, redis_url: str = "", **env: str
    ) -> GatewayProcess:
        """Start one process (fresh port; own var dir unless given), not waiting for it."""
        index = len(self.started)
        var_dir = var_dir or self.tmp_path / f"var{index}"
        var_dir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        log = self.tmp_path / f"gateway{index}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                _web_argv("127.0.0.1", port, 1),
                env=gateway_env(database_url, var_dir, REDIS_URL=redis_url, **env),
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # SIGTERM if this test run dies
            )
        gateway = GatewayProcess(process, port, log, var_dir)
        self.started.append(gateway)
        return gateway

    def start_ready(self, database_url: str, **options: Any) -> GatewayProcess:
        """Start one process and wait for /healthz (on another port if its port was taken)."""
        for attempt in range(3):
            gateway = self.start(database_url, **options)
            try:
                wait_ready(gateway)
                return gateway
            except AssertionError:
                if attempt == 2 or "address already in use" not in gateway.output():
                    raise
        raise AssertionError("unreachable")

    def start_many_ready(
        self, count: int, database_url: str, **options: Any
    ) -> list[GatewayProcess]:
        """Start `count` processes side by side (faster than one after the other), then wait."""
        started = [self.start(database_url, **options) for _ in range(count)]
        ready = []
        for gateway in started:
            try:
                wait_ready(gateway)
            except AssertionError:
                if "address already in use" not in gateway.output():
                    raise
                gateway = self.start_ready(database_url, **options)
            ready.append(gateway)
        return ready

    def cleanup(self) -> None:
        for gateway in self.started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(gateway.process.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                gateway.process.wait(timeout=10)


def wait_ready(*gateways: GatewayProcess) -> None:
    """Wait until every process answers /healthz."""
    for gateway in gateways:
        wait_until(gateway.healthy, STARTUP_TIMEOUT, f"gateway :{gateway.port} /healthz")


@pytest.fixture
def gateways(tmp_path: Path) -> Iterator[GatewayLauncher]:
    launcher = GatewayLauncher(tmp_path)
    try:
        yield launcher
    finally:
        launcher.cleanup()


# --- calling the proxy ----------------------------------------------------------------------


def chat_body(model: str = MODEL) -> bytes:
    return json.dumps(
        {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    ).encode()


def chat_headers(token: str, tag: str = "") -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if tag:  # lands in the request-log row's metadata: rows are matched to calls by it
        headers["x-gateway-metadata"] = json.dumps({"fault_tag": tag})
    return headers


def chat(port: int, token: str, *, model: str = MODEL, tag: str = "", timeout: float = 10.0) -> int:
    """One non-streaming chat completion through the gateway; its status (0: no answer)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(
            "POST", "/api/llm/v1/chat/completions", chat_body(model), chat_headers(token, tag)
        )
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        conn.close()


def api(
    port: int, token: str, method: str, path: str, body: Any = None, timeout: float = 60.0
) -> tuple[int, Any]:
    """One REST API call with a bearer token: (status, decoded JSON or None)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        conn.request(method, path, payload, headers)
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw.strip() else None
    finally:
        conn.close()


@dataclass(frozen=True)
class Call:
    """One call made by `Load`: its tag (in the log row's metadata), status and timing."""

    tag: str
    status: int
    started: float
    finished: float

    @property
    def seconds(self) -> float:
        return self.finished - self.started


class Load:
    """`clients` threads calling the proxy at a steady pace over keep-alive connections.

    Each call carries a unique tag (see `chat_headers`); `calls` records every one, with
    status 0 when no answer came (refused, reset, timed out).
    """

    def __init__(
        self,
        port: int,
        token: str,
        *,
        clients: int = 3,
        pause: float = 0.05,
        model: str = MODEL,
        timeout: float = 10.0,
    ) -> None:
        self.port, self.token, self.model = port, token, model
        self.pause, self.timeout = pause, timeout
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, name=f"load-{i}", daemon=True)
            for i in range(clients)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> list[Call]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout + 5)
        return self.snapshot()

    def snapshot(self) -> list[Call]:
        with self._lock:
            return list(self.calls)

    def wait_for_calls(self, count: int, timeout: float = 20.0) -> None:
        wait_until(lambda: len(self.snapshot()) >= count, timeout, f"{count} calls", 0.05)

    def _client(self) -> None:
        conn: http.client.HTTPConnection | None = None
        body = chat_body(self.model)
        while not self._stop.is_set():
            tag = uuid.uuid4().hex
            started = time.monotonic()
            status = 0
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
                conn.request(
                    "POST", "/api/llm/v1/chat/completions", body, chat_headers(self.token, tag)
                )
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                if conn is not None:
                    conn.close()
                conn = None
            with self._lock:
                self.calls.append(Call(tag, status, started, time.monotonic()))
            self._stop.wait(self.pause)
        if conn is not None:
            conn.close()


def statuses(calls: list[Call]) -> dict[int, int]:
    """status -> how many calls got it."""
    counts: dict[int, int] = {}
    for call in calls:
        counts[call.status] = counts.get(call.status, 0) + 1
    return counts


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of `values` lie (nearest rank)."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def logged_tags(cluster: PgCluster) -> set[str]:
    """The tags of every request-log row in the cluster."""
    rows = cluster.query(
        "SELECT metadata->>'fault_tag' FROM proxy_requestlog WHERE metadata ? 'fault_tag'"
    )
    return {str(row[0]) for row in rows}


def wait_for_rows(
    cluster: PgCluster, tags: set[str], *gateways: GatewayProcess, timeout: float = 20.0
) -> None:
    """Wait until every one of `tags` has a request-log row; on failure show the gateways' logs."""
    try:
        wait_until(lambda: tags <= logged_tags(cluster), timeout, "a log row for every call")
    except AssertionError as exc:
        missing = len(tags - logged_tags(cluster))
        logs = "\n".join(f"--- gateway :{gw.port}\n{gw.output()[-4000:]}" for gw in gateways)
        raise AssertionError(f"{exc}: {missing} of {len(tags)} missing\n{logs}") from None
