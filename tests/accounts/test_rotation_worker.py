"""Token rotation end to end: a real Celery worker on Redis, a running gateway, real stores.

(a) An application keeps calling the gateway with the old token (OpenAI SDK) while the worker
    rotates it into AWS Secrets Manager (moto): no call fails, the store ends up holding the
    new token, and the new token works.
(b) Crash and resume: step 1 of the rotation runs in this process (as if the worker died right
    after it), then a worker is SIGKILLed while it is blocked writing the token to Vault
    (OpenBao, behind a TCP relay that holds the connection), then a fresh worker finishes the
    job when the scan runs again. Exactly one current secret remains, the store holds it, the
    old token works for its grace period, and no token that was handed out is lost.

The worker runs `gateway_project.settings` against this test's database, like
tests/test_celery_worker.py, with its own queue as the default queue so that the tasks it
sends itself (scan -> rotate -> notify) stay in this test.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import hvac
import openai
import pytest
import redis
from django.db import transaction
from django.utils import timezone
from kombu import Connection, Queue

from accounts import secret_store_services as store_services
from accounts import virtual_accounts as va
from accounts.models import SecretStore, TokenSecret, VirtualAccount
from accounts.secret_stores import secret_store_get
from accounts.selectors import principal_for_user
from accounts.tasks import va_rotation_scan_task
from gateway_project import manifests
from gateway_project.celery import app as celery_app
from gateway_project.crypto import keyed_digest
from gateway_project.manifest_io import parse_yaml
from proxy.auth import grant_for_token
from tests import factories
from tests.accounts.test_secret_stores import Moto, moto, openbao  # noqa: F401 - fixtures
from tests.fakes.fixtures import (  # noqa: F401 - fixtures
    FakeProvider,
    fake_provider,
    fake_provider_server,
)
from tests.processes import current_database_url, env_without, stop, wait_until
from tests.servers import serve_in_thread

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("transactional_db")]

REDIS_URL = "redis://127.0.0.1:6379/11"
WORKER_READY_TIMEOUT = 60.0
ROTATION_TIMEOUT = 60.0
HOLD_TIMEOUT = 30.0
MODEL = "openai-main/gpt-4o"
GRACE_DAYS = 1

# Start a worker whose default queue (where it sends tasks itself) is argv[1].
WORKER_BOOT = (
    "import sys\n"
    "from gateway_project.celery import app\n"
    "app.conf.task_default_queue = sys.argv[1]\n"
    "app.worker_main(sys.argv[2:])\n"
)

PROVIDER = """\
type: provider-account/openai
name: openai-main
auth_data: {{type: api-key, api_key: {key}}}
base_url: {url}/v1
integrations:
  - {{type: integration/model/openai, name: gpt-4o, model_id: gpt-4o}}
"""


# --- a Celery worker in a subprocess -----------------------------------------------------------


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self) -> None:
        def ready() -> bool:
            assert self.process.poll() is None, self.output()
            return re.search(r"@\S+ ready\.", self.output()) is not None

        wait_until(ready, WORKER_READY_TIMEOUT, "the worker to log 'ready'")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no acknowledgement, nothing cleaned up."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@dataclass
class Workers:
    """Starts workers on one private queue; every one is stopped when the test ends."""

    queue: str
    tmp_path: Path
    started: list[Worker] = field(default_factory=list)

    def start(self) -> Worker:
        log = self.tmp_path / f"worker-{len(self.started)}.log"
        env = env_without(
            "CELERY_BROKER_URL",
            DJANGO_SETTINGS_MODULE="gateway_project.settings",
            DATABASE_URL=current_database_url(),
            REDIS_URL=REDIS_URL,
            CELERY_TASK_ALWAYS_EAGER="false",
            GATEWAY_VAR_DIR=str(self.tmp_path / "var"),
            GATEWAY_SECRET_STORE_TIMEOUT_SECONDS="5",
        )
        argv = [
            sys.executable, "-c", WORKER_BOOT, self.queue,
            "worker", "--pool", "solo", "--queues", self.queue,
            "--hostname", f"{self.queue}-{len(self.started)}@%h", "--loglevel", "INFO",
            "--without-mingle", "--without-gossip", "--without-heartbeat",
        ]  # fmt: skip
        with log.open("wb") as sink:
            process = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT
            )
        worker = Worker(process, log)
        self.started.append(worker)
        worker.wait_ready()
        return worker

    def scan(self) -> None:
        """What beat does every minute: queue the rotation scan."""
        with Connection(REDIS_URL) as broker:
            va_rotation_scan_task.apply_async(queue=self.queue, producer=broker.Producer())

    def logs(self) -> str:
        return "\n".join(w.output() for w in self.started)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    previous = celery_app.conf.task_always_eager
    pool = Workers(f"test-rotation-{uuid.uuid4().hex}", tmp_path)
    try:
        yield pool
    finally:
        celery_app.conf.task_always_eager = previous
        for worker in pool.started:
            stop(worker.process, timeout=10)
        forget_queue(pool.queue)


def forget_queue(queue: str) -> None:
    """Leave nothing of this test in the shared Redis: the queue, its binding, and the
    messages a killed worker left unacknowledged (kombu's Redis layout)."""
    with contextlib.suppress(Exception), Connection(REDIS_URL) as broker:
        Queue(queue).bind(broker.default_channel).delete()
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.delete(f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
        for tag, raw in client.hgetall("unacked").items():
            _message, exchange, routing_key = json.loads(raw)
            if queue in (exchange, routing_key):
                client.hdel("unacked", tag)
                client.zrem("unacked_index", tag)
    finally:
        client.close()


@contextlib.contextmanager
def publishing_for_real() -> Iterator[None]:
    """The test settings run tasks eagerly; the scan must reach the worker."""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = False
    try:
        yield
    finally:
        celery_app.conf.task_always_eager = previous


# --- a TCP relay that can hold connections (a store that hangs) --------------------------------


class Relay:
    """Forwards 127.0.0.1:<port> to a server; while `holding`, accepts and never answers."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.holding = False
        self.held: list[socket.socket] = []
        self.held_event = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.holding:
                self.held.append(client)
                self.held_event.set()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def release(self) -> None:
        self.holding = False
        for sock in self.held:
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        self._stopped.set()
        self.release()
        self._listener.close()


# --- the world ---------------------------------------------------------------------------------


def seed(fake: FakeProvider) -> Any:
    """A tenant admin, a team and a provider account on the fake provider."""
    admin = principal_for_user(factories.tenant_admin())
    factories.TeamFactory(name="apps")
    manifests.apply(parse_yaml(PROVIDER.format(key=fake.OPENAI_KEY, url=fake.url)), actor=admin)
    return admin


def rotating_account(admin: Any, store: SecretStore, path: str) -> tuple[VirtualAccount, str]:
    """An account that rotates, with a store; created the way the console does it.

    Tasks are eager here, so the creation's store write happens in this process.
    """
    account, raw = va.va_create(
        actor=admin,
        spec=va.VirtualAccountSpec(
            name="rotating-app",
            owner_team="apps",
            permissions=[
                va.PermissionSpec("provider-account-access", "provider-account", "openai-main")
            ],
            rotation=va.RotationSpec(interval_days=30, grace_days=GRACE_DAYS),
            secret_store=store.name,
            secret_path=path,
        ),
    )
    return account, raw


def make_due(account: VirtualAccount) -> None:
    VirtualAccount.objects.filter(pk=account.pk).update(
        rotation_due_at=timezone.now() - timedelta(seconds=1)
    )


def secrets_of(account: VirtualAccount) -> dict[str, str]:
    """digest -> state."""
    return dict(TokenSecret.objects.filter(token__account=account).values_list("digest", "state"))


def wait_promoted(account: VirtualAccount, workers: Workers) -> None:
    def promoted() -> bool:
        for worker in workers.started:
            assert worker.process.poll() is None or worker.process.returncode == -9, worker.output()
        if "raised unexpected" in workers.logs():  # a bug, not a slow worker: stop waiting
            raise AssertionError("a task failed")
        states = sorted(secrets_of(account).values())
        return states == ["current", "previous"]

    try:
        wait_until(promoted, ROTATION_TIMEOUT, "the rotation to be promoted", interval=0.1)
    except AssertionError:
        raise AssertionError(f"{secrets_of(account)}\n{workers.logs()}") from None


@dataclass
class Call:
    at: float
    ok: bool
    error: str = ""


@dataclass
class Caller:
    """A thread calling the gateway with one token until stopped; every outcome recorded."""

    base_url: str
    token: str
    calls: list[Call] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        client = openai.OpenAI(
            base_url=self.base_url, api_key=self.token, max_retries=0, timeout=10
        )
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                reply = client.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": "ping"}]
                )
                ok = reply.choices[0].message.content == "echo: ping"
                self.calls.append(Call(started, ok, "" if ok else "unexpected reply"))
            except openai.OpenAIError as exc:
                self.calls.append(Call(started, False, f"{type(exc).__name__}: {exc}"))
            time.sleep(0.02)

    def stop(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=15)

    def count(self, when: Callable[[float], bool]) -> int:
        return sum(1 for c in self.calls if when(c.at))


# --- (a) no failed call while the worker rotates -----------------------------------------------


def test_the_worker_rotates_into_aws_while_the_old_token_keeps_working(
    workers: Workers,
    moto: Moto,  # noqa: F811
    fake_provider: FakeProvider,  # noqa: F811
) -> None:
    admin = seed(fake_provider)
    store = store_services.secret_store_put_config(
        actor=admin,
        name="aws-main",
        kind="aws/secrets-manager",
        config={"region": "eu-west-1", "endpoint_url": moto.endpoint},
        credentials={
            "access_key_id": moto.access_key_id,
            "secret_access_key": moto.secret_access_key,
        },
    )
    path = f"/gateway/rotating-app-{uuid.uuid4().hex[:8]}"
    account, old = rotating_account(admin, store, path)
    assert secret_store_get(store, path) == old  # delivered at creation
    make_due(account)
    from gateway_project.asgi import application

    caller: Caller | None = None
    try:
        with serve_in_thread(application) as url:
            base_url = f"{url}/api/llm/v1"
            caller = Caller(base_url, old)
            caller.start()
            wait_until(lambda: len(caller.calls) >= 5, 30, "the client's first calls")
            with publishing_for_real():
                workers.start()
                workers.scan()
            wait_promoted(account, workers)
            promoted_at = time.monotonic()
            # Past several auth-cache polls: the gateway has reloaded the old token as
            # `previous` (with its grace expiry) and still accepts it.
            wait_until(
                lambda: caller.count(lambda at: at > promoted_at + 1.5) >= 5,
                30,
                "calls after the rotation",
            )
            caller.stop()
            new = secret_store_get(store, path)
            with_new = openai.OpenAI(base_url=base_url, api_key=new, max_retries=0, timeout=10)
            reply = with_new.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "new"}]
            )
    finally:
        if caller is not None:
            caller.stop()
        from proxy import db

        db.shutdown()

    assert [c for c in caller.calls if not c.ok] == []
    assert caller.count(lambda at: at < promoted_at) >= 5
    assert caller.count(lambda at: at > promoted_at) >= 5
    assert reply.choices[0].message.content == "echo: new"
    assert new != old
    assert secrets_of(account) == {keyed_digest(new): "current", keyed_digest(old): "previous"}
    aws = boto3.client(
        "secretsmanager",
        region_name="eu-west-1",
        endpoint_url=moto.endpoint,
        aws_access_key_id=moto.access_key_id,
        aws_secret_access_key=moto.secret_access_key,
    )
    assert aws.get_secret_value(SecretId=path, VersionStage="AWSPREVIOUS")["SecretString"] == old
    assert aws.get_secret_value(SecretId=path, VersionStage="AWSCURRENT")["SecretString"] == new
    previous = grant_for_token(old)
    assert previous is not None
    assert previous.expires_at is not None
    grace = previous.expires_at - timezone.now()
    assert timedelta(days=GRACE_DAYS) - timedelta(minutes=2) < grace <= timedelta(days=GRACE_DAYS)
    account.refresh_from_db()
    assert account.sync_error == ""
    assert account.rotation_due_at is not None
    assert account.rotation_due_at > timezone.now() + timedelta(days=29)
    output = workers.logs()
    assert "va_rotate_task" in output
    assert "rotated" in output
    assert old not in output
    assert new not in output


# --- (b) killed between steps and in the middle of the store write -----------------------------


def vault_versions(openbao_url: str, path: str) -> list[str]:
    kv = hvac.Client(url=openbao_url, token="root").secrets.kv.v2
    meta = kv.read_secret_metadata(path=path.lstrip("/"), mount_point="secret")["data"]
    return [
        kv.read_secret_version(
            path=path.lstrip("/"), version=int(n), mount_point="secret",
            raise_on_deleted_version=True,
        )["data"]["data"]["token"]
        for n in sorted(meta["versions"], key=int)
    ]  # fmt: skip


def test_a_killed_worker_resumes_the_rotation_without_losing_a_token(
    workers: Workers,
    openbao: str,  # noqa: F811
    fake_provider: FakeProvider,  # noqa: F811
) -> None:
    admin = seed(fake_provider)
    relay = Relay(int(openbao.rsplit(":", 1)[1]))
    try:
        store = store_services.secret_store_put_config(
            actor=admin,
            name="vault-main",
            kind="hashicorp/vault",
            config={"url": relay.url},
            credentials={"token": "root"},
        )
        path = f"/gateway/rotating-app-{uuid.uuid4().hex[:8]}"
        account, first = rotating_account(admin, store, path)
        handed_out = [first]
        assert vault_versions(openbao, path) == [first]
        make_due(account)

        # Killed after step 1: the `next` secret exists, nothing else happened.
        with transaction.atomic():
            locked = VirtualAccount.objects.select_for_update().get(pk=account.pk)
            pending, raw_next = va.rotation_issue_next(locked, keep_undelivered=True)
        assert raw_next is not None
        assert sorted(secrets_of(account).values()) == ["current", "next"]

        # Killed in step 2, blocked in the store write.
        relay.holding = True
        with publishing_for_real():
            doomed = workers.start()
            workers.scan()
        assert relay.held_event.wait(HOLD_TIMEOUT), doomed.output()
        doomed.kill()
        assert sorted(secrets_of(account).values()) == ["current", "next"]
        assert vault_versions(openbao, path) == [first]  # the write never arrived

        # A fresh worker and the next scan finish the job.
        relay.release()
        with publishing_for_real():
            workers.start()
            workers.scan()
        wait_promoted(account, workers)
        stored = secret_store_get(store, path)
        handed_out.append(stored)
    finally:
        relay.close()

    assert stored == raw_next  # the secret issued before the crash, not a third one
    assert vault_versions(openbao, path) == [first, raw_next]
    states = secrets_of(account)
    assert list(states.values()).count("current") == 1
    assert states == {keyed_digest(raw_next): "current", keyed_digest(first): "previous"}
    # Every token handed out (the creator's, and the store's) is accounted for; nothing
    # valid exists that nobody was given.
    assert set(states) == {keyed_digest(t) for t in handed_out}
    current = grant_for_token(raw_next)
    old = grant_for_token(first)
    assert current is not None
    assert current.expires_at is None
    assert old is not None
    assert old.expires_at is not None
    assert old.expires_at - timezone.now() > timedelta(days=GRACE_DAYS) - timedelta(minutes=2)
    pending.refresh_from_db()
    assert pending.state == "current"
    # When the grace period ends the old token stops, and retiring it is bookkeeping only.
    TokenSecret.objects.filter(state="previous").update(expires_at=timezone.now())
    assert grant_for_token(first) is None
    assert grant_for_token(raw_next) is not None
    output = workers.logs()
    assert "va_rotate_task" in output
    for token in handed_out:
        assert token not in output
