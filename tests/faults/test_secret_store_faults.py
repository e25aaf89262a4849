"""Secret-store faults during virtual-account token rotation: nothing breaks, then it converges.

Two stores, each through its vendor's official SDK: the fake Google Secret Manager
(tests/fakes/secret_servers.py) and AWS Secrets Manager (moto_server, behind a relay in this
module that can spoil requests). Queued faults: 500, throttling (GSM's 429
RESOURCE_EXHAUSTED, AWS's ThrottlingException), a request held past
GATEWAY_SECRET_STORE_TIMEOUT_SECONDS and then refused (nothing stored), and one handled and
then held (the write landed, the answer is lost). The rotation runs as the beat runs it: the
rotation task for the due account (one worker execution, which fails and would be retried),
then the scan task once the store has recovered, then the retire task. A gateway serves real
calls with the account's tokens throughout. Proves, for every store and fault:

- while the store fails, the old token stays `current`, stays in the store, and real proxy
  calls with it keep succeeding; a second run while still failing issues no second token;
  the account's sync error says what failed without the token; when the write landed but its
  answer was lost, the token in the store already works;
- once the store answers again, the rotation converges: the store holds the new token, it is
  current and works, the old one works for its grace period, then is refused and retired;
- with a real Celery worker (tests/accounts/test_rotation_worker.py's), a throttled store
  write is retried by the worker itself, and an application calling with the old token all
  along never sees a failed call.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import boto3
import openai
import pytest
from celery.exceptions import Retry
from django.utils import timezone

from accounts import secret_store_services as store_services
from accounts.audit import config_version_bump
from accounts.models import SecretStore, TokenSecret, VirtualAccount
from accounts.secret_stores import SecretStoreError, secret_store_location
from accounts.tasks import va_retire_task, va_rotate_task, va_rotation_scan_task
from gateway_project.crypto import keyed_digest
from tests.accounts.test_rotation_worker import (
    MODEL,
    Caller,
    Workers,
    make_due,
    publishing_for_real,
    rotating_account,
    seed,
    wait_promoted,
)
from tests.accounts.test_rotation_worker import workers as workers  # the fixture
from tests.accounts.test_secret_stores import Moto
from tests.accounts.test_secret_stores import gsm as gsm  # the fixture
from tests.accounts.test_secret_stores import moto as moto  # the fixture
from tests.fakes.fixtures import FakeProvider, fake_provider, fake_provider_server  # noqa: F401
from tests.fakes.secret_servers import FakeRestServer, FakeSecretManager, Fault
from tests.proxy.conftest import _close_proxy_db_threads  # noqa: F401 - fixture
from tests.servers import serve_in_thread

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("transactional_db")]

PROJECT = "gateway-test"
STORE_TIMEOUT = 1.0  # GATEWAY_SECRET_STORE_TIMEOUT_SECONDS in these tests
REVOCATION_BOUND = 2.0  # README: a retired or expired token is refused everywhere within 2 s
LATE = STORE_TIMEOUT + 1.5
FAULT_NAMES = ["500", "throttled", "timeout", "answer-lost"]


def gsm_error(status: int, grpc_status: str, message: str) -> dict[str, object]:
    """google.rpc.Status over HTTP, as Secret Manager answers errors."""
    return {"error": {"code": status, "message": message, "status": grpc_status}}


def aws_error(kind: str, message: str) -> dict[str, object]:
    """The AWS JSON protocol's error body (Secrets Manager speaks awsJson1.1)."""
    return {"__type": kind, "message": message}


GSM_FAULTS = {
    "500": Fault(100, 500, gsm_error(500, "INTERNAL", "Internal error encountered.")),
    "throttled": Fault(
        100,
        429,
        gsm_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Access requests'."),
        {"Retry-After": "1"},
    ),
    "timeout": Fault(100, 503, gsm_error(503, "UNAVAILABLE", "late"), before_seconds=LATE),
    "answer-lost": Fault(100, after_seconds=LATE),
}
AWS_FAULTS = {
    "500": Fault(100, 500, aws_error("InternalServiceError", "An internal error occurred.")),
    "throttled": Fault(100, 400, aws_error("ThrottlingException", "Rate exceeded")),
    "timeout": Fault(100, 503, aws_error("ServiceUnavailable", "late"), before_seconds=LATE),
    "answer-lost": Fault(100, after_seconds=LATE),
}


class AwsRelay(FakeRestServer):
    """Forwards every request to moto_server, except those a queued `Fault` spoils.

    The Host header goes through unchanged, so the SigV4 signature made for the relay's
    address still verifies at moto (which checks signatures: INITIAL_NO_AUTH_ACTION_COUNT).
    """

    SKIPPED = frozenset({"content-length", "content-type", "date", "server", "connection"})

    def __init__(self, upstream: str) -> None:
        super().__init__()
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)

    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        connection = http.client.HTTPConnection(*self.upstream, timeout=10)
        try:
            connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in headers.items():
                connection.putheader(name, value)
            connection.endheaders(body)
            response = connection.getresponse()
            raw = response.read()
            kept = {k: v for k, v in response.getheaders() if k.lower() not in self.SKIPPED}
            return response.status, json.loads(raw or b"{}"), kept
        finally:
            connection.close()


@dataclass
class Store:
    """One secret-store backend: how the gateway reaches it, how to break it, what it holds."""

    kind: str
    config: dict[str, Any]
    credentials: dict[str, Any]
    server: FakeRestServer  # where the faults are queued
    faults: dict[str, Fault]
    read: Callable[[str], str]  # the latest value at a path, read without the gateway's code

    def fail(self, fault: str, times: int | None = None) -> None:
        spoiled = dataclasses.replace(self.faults[fault])
        if times is not None:
            spoiled.times = times
        self.server.fail_next(spoiled)

    def recover(self) -> None:
        self.server.faults.clear()


@pytest.fixture(scope="module")
def aws_relay(moto: Moto) -> Iterator[AwsRelay]:
    relay = AwsRelay(moto.endpoint)
    relay.start()
    try:
        yield relay
    finally:
        relay.stop()


def gsm_store(gsm: FakeSecretManager) -> Store:
    def read(path: str) -> str:
        return gsm.latest(PROJECT, secret_store_location_for("gcp/gsm", path)).decode()

    return Store(
        "gcp/gsm",
        {"project": PROJECT, "api_endpoint": gsm.url},
        {"access_token": gsm.issue_token()},
        gsm,
        GSM_FAULTS,
        read,
    )


def aws_store(moto: Moto, relay: AwsRelay) -> Store:
    direct = boto3.client(
        "secretsmanager",
        region_name="eu-west-1",
        endpoint_url=moto.endpoint,
        aws_access_key_id=moto.access_key_id,
        aws_secret_access_key=moto.secret_access_key,
    )

    def read(path: str) -> str:
        return str(direct.get_secret_value(SecretId=path)["SecretString"])

    return Store(
        "aws/secrets-manager",
        {"region": "eu-west-1", "endpoint_url": relay.url},
        {"access_key_id": moto.access_key_id, "secret_access_key": moto.secret_access_key},
        relay,
        AWS_FAULTS,
        read,
    )


@pytest.fixture(params=["gcp/gsm", "aws/secrets-manager"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    if request.param == "gcp/gsm":
        backend = gsm_store(request.getfixturevalue("gsm"))
    else:
        backend = aws_store(request.getfixturevalue("moto"), request.getfixturevalue("aws_relay"))
    backend.recover()
    try:
        yield backend
    finally:
        backend.recover()


@dataclass
class World:
    base_url: str  # the gateway's OpenAI base URL
    account: VirtualAccount
    old: str  # the account's first token, delivered to the store at creation
    store: Store

    def stored(self) -> str:
        return self.store.read(self.account.secret_path)


@pytest.fixture
def world(
    store: Store,
    fake_provider: FakeProvider,  # noqa: F811
    settings: Any,
) -> Iterator[World]:
    """A gateway, and a rotating virtual account whose token lives in `store`."""
    settings.GATEWAY_SECRET_STORE_TIMEOUT_SECONDS = STORE_TIMEOUT
    admin = seed(fake_provider)
    row = store_services.secret_store_put_config(
        actor=admin,
        name="store-main",
        kind=store.kind,
        config=store.config,
        credentials=store.credentials,
    )
    path = f"/gateway/rotating-{uuid.uuid4().hex[:8]}"
    account, old = rotating_account(admin, row, path)
    from gateway_project.asgi import application

    with serve_in_thread(application) as url:
        yield World(f"{url}/api/llm/v1", account, old, store)


def secret_store_location_for(kind: str, path: str) -> str:
    return secret_store_location(SecretStore(kind=kind), path)


def states(account: VirtualAccount) -> dict[str, str]:
    """digest -> state of the account's secrets."""
    rows = TokenSecret.objects.filter(token__account=account).values_list("digest", "state")
    return dict(rows)


def works(base_url: str, token: str) -> bool:
    """One real model call through the gateway with `token`: True if answered, False on 401."""
    client = openai.OpenAI(base_url=base_url, api_key=token, max_retries=0, timeout=10)
    try:
        reply = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "ping"}]
        )
    except openai.AuthenticationError:
        return False
    assert reply.choices[0].message.content == "echo: ping"
    return True


def keeps_working(base_url: str, token: str, seconds: float = 1.5) -> None:
    """Calls succeed for `seconds` (several auth-cache polls of the gateway)."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        assert works(base_url, token)
        time.sleep(0.1)


def refused_within(base_url: str, token: str, bound: float) -> None:
    deadline = time.monotonic() + bound
    while works(base_url, token):
        assert time.monotonic() < deadline, f"token still accepted after {bound} s"
        time.sleep(0.05)


def run_rotation_once(account: VirtualAccount) -> None:
    """One worker execution of the rotation task, failing on the store (it would retry)."""
    with pytest.raises(SecretStoreError):
        va_rotate_task(account.pk)


@pytest.mark.parametrize("fault", FAULT_NAMES)
def test_a_store_fault_keeps_the_old_token_until_the_rotation_converges(
    world: World, fault: str
) -> None:
    base_url, account, old = world.base_url, world.account, world.old
    old_digest = keyed_digest(old)
    assert world.stored() == old
    assert works(base_url, old)
    make_due(account)
    world.store.fail(fault)

    run_rotation_once(account)
    run_rotation_once(account)  # the next retry, still failing

    assert states(account)[old_digest] == TokenSecret.State.CURRENT
    pending = TokenSecret.objects.get(token__account=account, state=TokenSecret.State.NEXT)
    assert len(states(account)) == 2  # one new token however many times it ran
    sync_error = VirtualAccount.objects.get(pk=account.pk).sync_error
    assert sync_error.startswith("secret store 'store-main': ")
    assert old not in sync_error
    assert pending.undelivered not in sync_error
    in_store = world.stored()
    if fault == "answer-lost":
        assert in_store == pending.undelivered  # the write landed: the new token works already
        keeps_working(base_url, in_store)
    else:
        assert in_store == old
    keeps_working(base_url, old)

    world.store.recover()  # the beat's next scan finishes the rotation
    assert va_rotation_scan_task() == 1

    new = world.stored()
    assert new != old
    assert keyed_digest(new) == pending.digest
    assert states(account) == {
        pending.digest: TokenSecret.State.CURRENT,
        old_digest: TokenSecret.State.PREVIOUS,
    }
    assert VirtualAccount.objects.get(pk=account.pk).sync_error == ""
    assert works(base_url, new)
    keeps_working(base_url, old)  # the grace period
    previous = TokenSecret.objects.get(digest=old_digest)
    assert previous.expires_at is not None
    assert previous.expires_at > timezone.now() + timedelta(hours=23)

    end_grace_now(old_digest)
    refused_within(base_url, old, REVOCATION_BOUND)
    assert va_retire_task() == 1
    assert states(account)[old_digest] == TokenSecret.State.RETIRED
    assert not works(base_url, old)
    assert works(base_url, new)


def end_grace_now(digest: str) -> None:
    """Stand-in for a day passing: the previous token's grace period ends in a moment."""
    TokenSecret.objects.filter(digest=digest).update(
        expires_at=timezone.now() + timedelta(milliseconds=200)
    )
    config_version_bump()  # the gateway re-reads grants (a day would not need this)


def test_a_rotation_that_cannot_reach_the_store_is_resumed_by_every_scan(world: World) -> None:
    """The scan picks up an unfinished rotation even when the account is no longer due."""
    account, old = world.account, world.old
    make_due(account)
    world.store.fail("500")
    run_rotation_once(account)
    VirtualAccount.objects.filter(pk=account.pk).update(
        rotation_due_at=timezone.now() + timedelta(days=30)
    )
    with pytest.raises(Retry):  # eager tasks: the scan ran the rotation here; it would retry
        va_rotation_scan_task()
    assert world.stored() == old
    assert works(world.base_url, old)

    world.store.recover()
    assert va_rotation_scan_task() == 1

    assert world.stored() != old
    assert sorted(states(account).values()) == ["current", "previous"]


@pytest.mark.slow
@pytest.mark.parametrize("store", ["aws/secrets-manager"], indirect=True)
def test_a_real_worker_retries_a_throttled_store_and_no_call_fails(
    world: World, workers: Workers
) -> None:
    """botocore retries a ThrottlingException once itself; two throttled answers make the
    worker's own retry (countdown <= 10 s) do the write."""
    base_url, account, old = world.base_url, world.account, world.old
    make_due(account)
    world.store.fail("throttled", times=2)
    caller = Caller(base_url, old)
    caller.start()
    try:
        with publishing_for_real():
            workers.start()
            workers.scan()
        wait_promoted(account, workers)
        keeps_working(base_url, old)  # and the caller's calls meanwhile
    finally:
        caller.stop()

    new = world.stored()
    assert new != old
    assert states(account) == {
        keyed_digest(new): TokenSecret.State.CURRENT,
        keyed_digest(old): TokenSecret.State.PREVIOUS,
    }
    assert [c for c in caller.calls if not c.ok] == []
    assert len(caller.calls) >= 5
    output = workers.logs()
    assert "write failed: ClientError" in output
    assert "Retry in" in output
    assert old not in output
    assert new not in output
