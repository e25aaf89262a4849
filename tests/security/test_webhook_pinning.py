"""Webhook deliveries connect to the addresses that were checked, not to a fresh DNS answer.

A name is resolved once before each delivery and every address checked (public, or allowed by
GATEWAY_WEBHOOK_ALLOWLIST); the connection then goes to those addresses, with the URL's Host
header and, over TLS, its server name for SNI and the certificate check. A DNS answer that
changes between the check and the connection (rebinding) reaches nothing.

Fake DNS (a patched `socket.getaddrinfo`) answers for NAME; the receivers are real sockets on
two loopback addresses, 127.0.0.1 and 127.0.0.2 (both allowed to this module's sockets).
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from accounts.notify import NotificationError, notify
from tests.fakes.secret_servers import self_signed_certificate
from tests.processes import free_port

NAME = "hooks.pin.test"
# notify() resolves NAME twice: when it parses the target (the save-time rule) and for the
# delivery's check. A later answer is what an unpinned connection would have used.
CHECK = 1  # the index of the delivery's lookup (0: parsing the target)

pytestmark = pytest.mark.allow_hosts(["127.0.0.1", "127.0.0.2"])


class FakeDns:
    """Answers for NAME from a list: each lookup takes the next answer (the last one repeats)."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.lookups = 0
        self.real = socket.getaddrinfo

    def __call__(self, host: Any, *args: Any, **kwargs: Any) -> Any:
        if host != NAME:
            return self.real(host, *args, **kwargs)
        answer = self.answers[min(self.lookups, len(self.answers) - 1)]
        self.lookups += 1
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, 0)) for address in answer]


class Recorder(BaseHTTPRequestHandler):
    """Records (address, Host header, path) of each POST; answers 204."""

    seen: list[tuple[str, str, str]]
    address: str

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append((self.address, self.headers["Host"], self.path))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


class Listener:
    """An HTTP(S) server on `address`:`port` recording what reaches it."""

    def __init__(self, address: str, port: int, tls: ssl.SSLContext | None = None) -> None:
        self.seen: list[tuple[str, str, str]] = []
        handler = type("Handler", (Recorder,), {"seen": self.seen, "address": address})
        self.server = ThreadingHTTPServer((address, port), handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def listeners() -> Iterator[list[Listener]]:
    started: list[Listener] = []
    yield started
    for listener in started:
        listener.close()


@pytest.fixture
def pinned_env(settings: Any) -> None:
    """Both loopback addresses the tests use count as allowed, so only pinning tells them apart."""
    settings.GATEWAY_WEBHOOK_ALLOWLIST = ["127.0.0.1", "127.0.0.2"]


def deliver(url: str) -> None:
    notify({"type": "webhook", "url": url}, "rotated", {"virtual_account": "bot"})


@pytest.mark.usefixtures("pinned_env")
def test_a_dns_answer_that_changes_after_the_check_is_not_followed(
    monkeypatch: pytest.MonkeyPatch, listeners: list[Listener]
) -> None:
    port = free_port()
    checked = Listener("127.0.0.1", port)
    rebound = Listener("127.0.0.2", port)
    listeners += [checked, rebound]
    dns = FakeDns(["127.0.0.1"], ["127.0.0.1"], ["127.0.0.2"])  # changes after the check
    monkeypatch.setattr(socket, "getaddrinfo", dns)

    deliver(f"http://{NAME}:{port}/hook")

    assert checked.seen == [("127.0.0.1", f"{NAME}:{port}", "/hook")]
    assert rebound.seen == []
    assert dns.lookups == CHECK + 1  # the connection itself asked DNS nothing


@pytest.mark.usefixtures("pinned_env")
def test_the_next_checked_address_is_tried_when_one_refuses_connections(
    monkeypatch: pytest.MonkeyPatch, listeners: list[Listener]
) -> None:
    port = free_port()
    second = Listener("127.0.0.2", port)  # nothing listens on 127.0.0.1:port
    listeners.append(second)
    monkeypatch.setattr(socket, "getaddrinfo", FakeDns(["127.0.0.1", "127.0.0.2"]))

    deliver(f"http://{NAME}:{port}/hook")

    assert second.seen == [("127.0.0.2", f"{NAME}:{port}", "/hook")]


@pytest.mark.usefixtures("pinned_env")
def test_when_no_checked_address_answers_the_delivery_is_retried_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = free_port()
    monkeypatch.setattr(socket, "getaddrinfo", FakeDns(["127.0.0.1", "127.0.0.2"]))
    with pytest.raises(NotificationError, match="could not reach the webhook"):
        deliver(f"http://{NAME}:{port}/hook")


@pytest.mark.usefixtures("pinned_env")
def test_over_tls_the_certificate_is_checked_against_the_name_not_the_address(
    monkeypatch: pytest.MonkeyPatch, listeners: list[Listener], tmp_path: Path
) -> None:
    cert, key = self_signed_certificate(tmp_path, (NAME,))
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    port = free_port()
    server = Listener("127.0.0.1", port, tls)
    listeners.append(server)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the only CA this delivery trusts
    monkeypatch.setattr(socket, "getaddrinfo", FakeDns(["127.0.0.1"]))

    deliver(f"https://{NAME}:{port}/hook")  # verifies: the certificate names NAME, not 127.0.0.1

    assert server.seen == [("127.0.0.1", f"{NAME}:{port}", "/hook")]
    assert ipaddress.ip_address(server.seen[0][0]).is_loopback


@pytest.mark.usefixtures("pinned_env")
def test_over_tls_a_certificate_for_another_name_is_refused(
    monkeypatch: pytest.MonkeyPatch, listeners: list[Listener], tmp_path: Path
) -> None:
    cert, key = self_signed_certificate(tmp_path, ("someone-else.test",))
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    port = free_port()
    server = Listener("127.0.0.1", port, tls)
    listeners.append(server)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    monkeypatch.setattr(socket, "getaddrinfo", FakeDns(["127.0.0.1"]))

    with pytest.raises(NotificationError, match="could not reach the webhook"):
        deliver(f"https://{NAME}:{port}/hook")
    assert server.seen == []
