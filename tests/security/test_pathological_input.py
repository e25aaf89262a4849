"""Pathological input fails fast and closed, and the server stays responsive (issue #10).

A real `gateway serve --no-worker` (uvicorn with httptools, as in production; embedded SQLite)
is sent oversized bodies (announced, lying and chunked), deeply nested JSON, huge arrays,
invalid UTF-8, huge and numerous headers, giant and deeply nested SCIM filters and YAML
aliases, on the proxy, the REST API and SCIM. Every answer must be a 4xx the client can act on
(400, 413, 415, 431) or a normal answer, within ATTACK_SECONDS, never a 5xx; meanwhile a
health probe on the same server keeps answering within PROBE_P99_SECONDS at the 99th
percentile, and the server's log holds no traceback at the end.
"""

from __future__ import annotations

import http.client
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.test import Client

from teams.models import Team
from tests import factories
from tests.fakes.fixtures import FakeProviderServer
from tests.fakes.providers import OPENAI_KEY
from tests.processes import (
    TEST_RUN_SETTINGS,
    env_without,
    free_port,
    http_get,
    manage,
    stop,
    wait_until,
)

pytestmark = pytest.mark.timeout(240)

BIN_DIR = Path(sys.executable).parent
ADMIN_EMAIL = "owner@example.com"
BODY_LIMIT = 1 << 20  # GATEWAY_MAX_BODY_BYTES for the served gateway
DJANGO_LIMIT = 2_621_440  # Django's DATA_UPLOAD_MAX_MEMORY_SIZE default
ATTACK_SECONDS = 2.0
PROBE_P99_SECONDS = 0.2
PROXY = "/api/llm/v1/chat/completions"
APPLY = "/api/v1/apply"
SCIM_USERS = "/scim/v2/Users"


@dataclass
class Served:
    """A running gateway, its tokens and its log."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path
    pat: str = ""
    scim: str = ""


def _provision(env: dict[str, str], fake_url: str) -> tuple[str, str]:
    """An OpenAI account on the fake, SCIM on for an SSO configuration; (PAT, SCIM token)."""
    account = {
        "type": "provider-account/openai",
        "name": "probe-openai",
        "auth_data": {"type": "api-key", "api_key": OPENAI_KEY},
        "base_url": f"{fake_url}/v1",
        "integrations": [{"type": "integration/model/openai", "name": "m", "model_id": "gpt-4o"}],
    }
    sso = {
        "type": "settings/sso",
        "name": "okta",
        "auth_data": {
            "type": "saml",
            "enable_scim": True,
            "idp_entity_id": "https://idp.example.com",
            "idp_endpoint": "https://idp.example.com/sso",
        },
    }
    for manifest in (account, sso):
        manage(env, "apply", "-f", "-", stdin=json.dumps(manifest))
    pat = manage(env, "create_pat", "--user", ADMIN_EMAIL, "--name", "attacker")
    return pat, manage(env, "scim_token", "--sso", "okta")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    work = tmp_path_factory.mktemp("pathological")
    fake = FakeProviderServer()
    fake.start()
    env = env_without(
        *TEST_RUN_SETTINGS,
        GATEWAY_VAR_DIR=str(work / "var"),
        GATEWAY_ADMIN_EMAIL=ADMIN_EMAIL,
        GATEWAY_ADMIN_PASSWORD="x" * 16,
        GATEWAY_MAX_BODY_BYTES=str(BODY_LIMIT),
        PYTHONUNBUFFERED="1",
    )
    port, log = free_port(), work / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(BIN_DIR / "gateway"), "serve", "--no-worker", "--port", str(port)],
            env=env,
            cwd=work,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    running = Served(process, port, log)
    try:
        wait_until(lambda: _healthy(running), 90, "/healthz to answer 200")
        running.pat, running.scim = _provision(env, fake.url)
        yield running
    finally:
        stop(process)
        fake.stop()


def _healthy(served: Served) -> bool:
    if served.process.poll() is not None:
        raise AssertionError(f"gateway serve exited:\n{served.log.read_text(errors='replace')}")
    try:
        return http_get(served.port, "/healthz", timeout=2)[0] == 200
    except OSError:
        return False


# --- a raw HTTP/1.1 client: lies and pathologies included -----------------------------------


@dataclass
class Answer:
    status: int
    body: bytes
    seconds: float


def _head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _read_answer(sock: socket.socket) -> tuple[int, bytes]:
    """Status and body of the first response (the server closes: Connection: close)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a response: {data[:200]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(
        (
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        None,
    )
    while length is not None and len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, body


def send_raw(port: int, head: bytes, body: bytes = b"") -> Answer:
    """Send `head` and `body` (whatever they claim), then read the answer."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=ATTACK_SECONDS * 5) as sock:
        sock.sendall(head + body)
        status, answer = _read_answer(sock)
    return Answer(status, answer, time.monotonic() - started)


def request(
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    token: str,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> Answer:
    """A well-formed request, except for what `headers` and `body` make of it."""
    all_headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": content_type,
        "Content-Length": str(len(body)),
        **(headers or {}),
    }
    return send_raw(port, _head(method, path, all_headers), body)


def chunked_past(port: int, path: str, token: str, limit: int) -> Answer:
    """A chunked body that grows past `limit`; stops sending there and reads the answer."""
    head = _head(
        "POST" if path == PROXY else "PUT",
        path,
        {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Transfer-Encoding": "chunked",
        },
    )
    piece = b"x" * 65536
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(limit // len(piece) + 1))
    return send_raw(port, head, chunks)


# --- the health probe ------------------------------------------------------------------------


@dataclass
class HealthProbe:
    """Polls /healthz on one keep-alive connection in a thread; records each latency."""

    port: int
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                conn.request("GET", "/healthz")
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    self.failures.append(f"status {response.status}")
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            self.latencies.append(time.monotonic() - started)
            time.sleep(0.005)
        conn.close()

    def p99(self) -> float:
        if len(self.latencies) < 2:
            return self.latencies[0] if self.latencies else 0.0
        return statistics.quantiles(self.latencies, n=100)[98]


def under_probe(served: Served, attack: Callable[[], Answer]) -> tuple[Answer, HealthProbe]:
    """Run `attack` while the health probe polls; the probe runs a moment before and after."""
    probe = HealthProbe(served.port)
    thread = threading.Thread(target=probe.run, daemon=True)
    thread.start()
    try:
        time.sleep(0.1)
        answer = attack()
        time.sleep(0.1)
    finally:
        probe._stop.set()
        thread.join(timeout=10)
    return answer, probe


# --- the attacks ------------------------------------------------------------------------------

CHAT = {"model": "probe-openai/m", "messages": [{"role": "user", "content": "hi"}]}
DEEP = 100_000
# Ten levels of nine aliases: 9**10 "lol"s once expanded (the "billion laughs").
LAUGHS = "l0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"l{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10)
)


def _chat_with(extra: bytes) -> bytes:
    """The chat body with `extra` appended as another member (raw bytes, any shape)."""
    return json.dumps(CHAT).encode()[:-1] + b',"x":' + extra + b"}"


Attack = Callable[[Served], Answer]
ATTACKS: dict[str, tuple[Attack, set[int]]] = {
    # The proxy (the lean ASGI app)
    "proxy: body past the limit, announced": (
        lambda s: send_raw(
            s.port,
            _head(
                "POST",
                PROXY,
                {"Authorization": f"Bearer {s.pat}", "Content-Length": str(BODY_LIMIT + 1)},
            ),
        ),
        {413},
    ),
    "proxy: body past the limit, sent": (
        lambda s: request(s.port, "POST", PROXY, b" " * (BODY_LIMIT + 1), token=s.pat),
        {413},
    ),
    "proxy: Content-Length lies, larger than sent": (
        lambda s: request(
            s.port, "POST", PROXY, b"{}", token=s.pat, headers={"Content-Length": str(1 << 30)}
        ),
        {413},
    ),
    "proxy: Content-Length lies, smaller than sent": (
        lambda s: request(
            s.port,
            "POST",
            PROXY,
            b"{}GET / HTTP/1.1\r\n\r\n",
            token=s.pat,
            headers={"Content-Length": "2"},
        ),
        {400},
    ),
    "proxy: chunked body past the limit": (
        lambda s: chunked_past(s.port, PROXY, s.pat, BODY_LIMIT),
        {413},
    ),
    "proxy: 100k nested arrays": (
        lambda s: request(s.port, "POST", PROXY, b"[" * DEEP, token=s.pat),
        {400},
    ),
    "proxy: 100k nested objects inside a chat": (
        lambda s: request(s.port, "POST", PROXY, _chat_with(b'{"a":' * DEEP), token=s.pat),
        {400},
    ),
    "proxy: closed deep nesting inside a chat": (
        lambda s: request(
            s.port, "POST", PROXY, _chat_with(b"[" * DEEP + b"]" * DEEP), token=s.pat
        ),
        {400},
    ),
    "proxy: a 300k-element array inside the limit": (
        lambda s: request(
            s.port,
            "POST",
            PROXY,
            _chat_with(b"[" + b",".join([b"0"] * 300_000) + b"]"),
            token=s.pat,
        ),
        {200, 400},
    ),
    "proxy: invalid UTF-8": (
        lambda s: request(s.port, "POST", PROXY, b'{"model":"\xff\xfe\xc3"}', token=s.pat),
        {400},
    ),
    "proxy: a 100 KB header": (
        lambda s: request(
            s.port,
            "POST",
            PROXY,
            json.dumps(CHAT).encode(),
            token=s.pat,
            headers={"X-Big": "a" * 100_000},
        ),
        {431},
    ),
    "proxy: 5000 headers": (
        lambda s: request(
            s.port,
            "POST",
            PROXY,
            json.dumps(CHAT).encode(),
            token=s.pat,
            headers={f"X-H{i}": "v" for i in range(5000)},
        ),
        {431},
    ),
    # Django: the REST API
    "api: body past the limit, announced": (
        lambda s: send_raw(
            s.port,
            _head(
                "PUT",
                APPLY,
                {"Authorization": f"Bearer {s.pat}", "Content-Length": str(DJANGO_LIMIT + 1)},
            ),
        ),
        {413},
    ),
    "api: chunked body past the limit": (
        lambda s: chunked_past(s.port, APPLY, s.pat, DJANGO_LIMIT),
        {413},
    ),
    "api: 100k nested arrays": (
        lambda s: request(
            s.port, "PUT", APPLY, b'{"manifest":' + b"[" * DEEP + b"]" * DEEP + b"}", token=s.pat
        ),
        {400},
    ),
    "api: invalid UTF-8": (
        lambda s: request(s.port, "PUT", APPLY, b'{"manifest":"\xff\xfe"}', token=s.pat),
        {400},
    ),
    "api: billion laughs as YAML": (
        lambda s: request(
            s.port, "PUT", APPLY, LAUGHS.encode(), token=s.pat, content_type="application/yaml"
        ),
        {415},
    ),
    "api: a 100 KB header": (
        lambda s: request(
            s.port, "GET", "/api/v1/me", token=s.pat, headers={"Cookie": "a=" + "b" * 100_000}
        ),
        {431},
    ),
    # Django: SCIM
    "scim: a 1 MB filter": (
        lambda s: request(
            s.port,
            "GET",
            f"{SCIM_USERS}?filter=userName%20eq%20%22{'a' * 1_000_000}%22",
            token=s.scim,
        ),
        {400, 414},
    ),
    "scim: a 100 KB filter": (
        lambda s: request(
            s.port,
            "GET",
            f"{SCIM_USERS}?filter=userName%20eq%20%22{'a' * 100_000}%22",
            token=s.scim,
        ),
        {400},
    ),
    "scim: 1000 nested parentheses": (
        lambda s: request(
            s.port,
            "GET",
            f"{SCIM_USERS}?filter={'(' * 1000}userName%20eq%20%22a%22{')' * 1000}",
            token=s.scim,
        ),
        {400},
    ),
    "scim: 150 or-ed comparisons": (
        lambda s: request(
            s.port,
            "GET",
            f"{SCIM_USERS}?filter=" + "%20or%20".join(["userName%20eq%20%22a%22"] * 150),
            token=s.scim,
        ),
        {200, 400},
    ),
    "scim: 100k nested arrays": (
        lambda s: request(
            s.port,
            "POST",
            SCIM_USERS,
            b"[" * DEEP,
            token=s.scim,
            content_type="application/scim+json",
        ),
        {400},
    ),
    "scim: invalid UTF-8": (
        lambda s: request(
            s.port,
            "POST",
            SCIM_USERS,
            b'{"userName":"\xff"}',
            token=s.scim,
            content_type="application/scim+json",
        ),
        {400},
    ),
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_pathological_input_fails_fast_and_closed(served: Served, name: str) -> None:
    attack, expected = ATTACKS[name]
    answer, probe = under_probe(served, lambda: attack(served))
    assert answer.status in expected, (answer.status, answer.body[:300])
    assert answer.seconds < ATTACK_SECONDS
    assert probe.failures == []
    assert probe.p99() < PROBE_P99_SECONDS, sorted(probe.latencies)[-5:]


def test_the_server_logged_no_traceback_and_still_serves(served: Served) -> None:
    """Runs after the attacks (same module, same server): nothing crashed on the way."""
    for name in ATTACKS:  # in case this test is run alone
        ATTACKS[name][0](served)
    ok = request(served.port, "POST", PROXY, json.dumps(CHAT).encode(), token=served.pat)
    assert ok.status == 200
    assert json.loads(ok.body)["choices"][0]["message"]["content"] == "echo: hi"
    log = served.log.read_text(errors="replace")
    assert "Traceback" not in log
    assert " 500 " not in log


# --- YAML in the console (Django's view, in-process) ----------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "text",
    [
        pytest.param("type: team\nname: lol\n" + LAUGHS, id="billion-laughs"),
        pytest.param("type: team\nname: deep\nx: " + "[" * 60_000 + "]" * 60_000, id="deep"),
        pytest.param(
            "type: team\nname: deep\nx: " + "{a: " * 20_000 + "1" + "}" * 20_000, id="deep-map"
        ),
    ],
)
def test_console_yaml_refuses_aliases_bombs_and_deep_nesting_quickly(text: str) -> None:
    client = Client()
    client.force_login(factories.tenant_admin())
    started = time.monotonic()
    response = client.post("/apply/", {"manifest": text, "action": "preview"})
    assert response.status_code == 400, response.content[:300]
    assert time.monotonic() - started < ATTACK_SECONDS * 2
    assert not Team.objects.filter(name__in=["lol", "deep"]).exists()
