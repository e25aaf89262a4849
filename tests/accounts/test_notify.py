"""Notifications: email (locmem and a real aiosmtpd server), Slack webhook, signed webhook."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from django.core import mail
from django.test import override_settings
from pydantic import ValidationError

from accounts.notify import (
    NotificationError,
    NotificationRejected,
    notification_target_parse,
    notify,
    render,
    webhook_signature,
)
from tests.processes import free_port

TOKEN = "gw_va_billing-app_" + "Zx9" * 13 + "q"  # a whole token: 40 secret characters
CONTEXT: dict[str, Any] = {
    "virtual_account": "billing-app",
    "owner_team": "payments",
    "token_prefix": "gw_va_billing-app_Zx9Zx9",
    "expiration_date": "2027-01-31",
    "grace_period_days": 30,
    "sync_error": "",
    "console_url": "http://127.0.0.1:8000/access/virtual-accounts/billing-app/",
}
LINK = "\n\nManage it: http://127.0.0.1:8000/access/virtual-accounts/billing-app/"


# --- a local HTTP receiver ---------------------------------------------------------------------


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Records every request; answers with `status` (and `location`) after `delay` seconds."""

    url: str = ""
    status: int = 200
    delay: float = 0.0
    location: str = ""
    requests: list[Received] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            state.requests.append(Received("POST", self.path, dict(self.headers), body))
            time.sleep(state.delay)
            try:
                self.send_response(state.status)
                if state.location:
                    self.send_header("Location", state.location)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except OSError:
                pass  # the client gave up (timeout tests)

        do_GET = do_POST

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with override_settings(GATEWAY_SLACK_WEBHOOK_PREFIXES=(state.url + "/",)):
            yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# --- messages ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "subject", "text"),
    [
        (
            "rotated",
            "[Gateway] Token rotated for virtual account billing-app",
            "The token of virtual account 'billing-app' (team payments) was rotated. It starts"
            " with gw_va_billing-app_Zx9Zx9… The previous token keeps working for 30 days, then"
            " stops. Applications reading it from the secret store pick up the new token there;"
            " others must be given it." + LINK,
        ),
        (
            "expiring_in_7d",
            "[Gateway] Virtual account billing-app expires in 7 days",
            "Virtual account 'billing-app' (team payments) expires on 2027-01-31, in 7 days. Its"
            " tokens stop working then, and the expiration date cannot be extended: create a"
            " replacement account and move its applications before that day." + LINK,
        ),
        (
            "expiring_in_1d",
            "[Gateway] Virtual account billing-app expires in 1 day",
            "Virtual account 'billing-app' (team payments) expires on 2027-01-31, in 1 day. Its"
            " tokens stop working then, and the expiration date cannot be extended: create a"
            " replacement account and move its applications before that day." + LINK,
        ),
        (
            "sync_failed",
            "[Gateway] Secret-store sync failed for virtual account billing-app",
            "The token of virtual account 'billing-app' (team payments) could not be written to"
            " its secret store: unknown error. The gateway retries with backoff; once the store"
            " is fixed, use 'Sync now' on the account's page." + LINK,
        ),
    ],
)
def test_every_event_has_a_readable_subject_and_text(event, subject, text):
    assert render(event, CONTEXT) == (subject, text)


def test_an_unknown_event_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown notification event 'deleted'"):
        notify({"type": "email", "to_emails": ["ops@example.com"]}, "deleted", CONTEXT)


def test_a_whole_token_never_reaches_a_message_but_the_prefix_does():
    context = {**CONTEXT, "sync_error": f"store said: bad value {TOKEN}", "token": TOKEN}

    subject, text = render("sync_failed", context)

    assert TOKEN not in subject + text
    assert "store said: bad value [redacted]." in text
    _, rotated = render("rotated", context)
    assert "It starts with gw_va_billing-app_Zx9Zx9…" in rotated


def test_permanent_failures_are_not_transient_ones():
    # The notify task retries NotificationError only.
    assert not issubclass(NotificationRejected, NotificationError)


# --- target validation -------------------------------------------------------------------------


def test_targets_are_validated():
    assert notification_target_parse(
        {"type": "email", "to_emails": ["Ops@Example.com"]}
    ).model_dump() == {
        "type": "email",
        "to_emails": ["ops@example.com"],
        "notification_channel": "",
    }
    for bad in (
        {"type": "email", "to_emails": []},
        {"type": "email", "to_emails": ["not-an-email"]},
        {"type": "slack-webhook", "webhook_url": "https://example.com/hook"},
        {"type": "webhook", "url": "ftp://example.com/hook"},
        {"type": "webhook", "url": "https://example.com/hook", "extra": 1},
        {"type": "pagerduty", "integration_key": "x"},
    ):
        with pytest.raises(ValidationError):
            notification_target_parse(bad)


def test_an_invalid_target_is_rejected_not_retried():
    with pytest.raises(NotificationRejected) as caught:
        notify({"type": "slack-webhook", "webhook_url": "https://evil.example/x"}, "rotated", {})
    assert str(caught.value) == "invalid notification target (slack-webhook.webhook_url)"


# --- email -------------------------------------------------------------------------------------


def test_email_goes_to_every_recipient():
    target = {"type": "email", "to_emails": ["ops@example.com", "sec@example.com"]}

    notify(target, "expiring_in_7d", CONTEXT)

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["ops@example.com", "sec@example.com"]
    assert message.subject == "[Gateway] Virtual account billing-app expires in 7 days"
    assert message.body == render("expiring_in_7d", CONTEXT)[1]
    assert message.from_email == "gateway@localhost"


@override_settings(EMAIL_BACKEND="django.core.mail.backends.dummy.EmailBackend")
def test_email_is_off_while_no_smtp_server_is_configured(caplog):
    notify({"type": "email", "to_emails": ["ops@example.com"]}, "rotated", CONTEXT)
    assert "email notifications are off (EMAIL_HOST is empty)" in caplog.text


class Mailbox:
    """aiosmtpd handler that keeps every message; refuses recipients at `refuse_domain`."""

    def __init__(self, refuse_domain: str = "") -> None:
        self.messages: list[EmailMessage] = []
        self.refuse_domain = refuse_domain

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.refuse_domain and address.endswith("@" + self.refuse_domain):
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox(refuse_domain="nowhere.example")
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with override_settings(
            EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
            EMAIL_HOST="127.0.0.1",
            EMAIL_PORT=port,
        ):
            yield mailbox, port
    finally:
        controller.stop()


def test_email_over_a_real_smtp_server(smtp):
    mailbox, _ = smtp

    notify({"type": "email", "to_emails": ["ops@example.com"]}, "rotated", CONTEXT)

    assert len(mailbox.messages) == 1
    message = mailbox.messages[0]
    assert message["To"] == "ops@example.com"
    assert message["Subject"] == "[Gateway] Token rotated for virtual account billing-app"
    body = message.get_content()
    assert "It starts with gw_va_billing-app_Zx9Zx9…" in body
    assert TOKEN not in body


def test_refused_recipients_are_permanent(smtp):
    with pytest.raises(NotificationRejected) as caught:
        notify({"type": "email", "to_emails": ["x@nowhere.example"]}, "rotated", CONTEXT)
    assert str(caught.value) == "the mail server refused every recipient (1)"


def test_an_smtp_server_that_is_down_is_transient():
    port = free_port()  # nothing listens
    with (
        override_settings(
            EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
            EMAIL_HOST="127.0.0.1",
            EMAIL_PORT=port,
        ),
        pytest.raises(NotificationError) as caught,
    ):
        notify({"type": "email", "to_emails": ["ops@example.com"]}, "rotated", CONTEXT)
    assert str(caught.value) == "could not send email (ConnectionRefusedError)"


# --- Slack and webhooks ------------------------------------------------------------------------


def test_slack_webhook_gets_the_text(receiver):
    notify(
        {"type": "slack-webhook", "webhook_url": receiver.url + "/services/T0/B0/x"},
        "rotated",
        CONTEXT,
    )

    [request] = receiver.requests
    subject, text = render("rotated", CONTEXT)
    assert request.path == "/services/T0/B0/x"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body) == {"text": f"*{subject}*\n{text}"}


def test_signed_webhook_can_be_verified_by_the_receiver(receiver):
    secret = "whsec-test-0123456789"
    before = int(time.time())

    notify(
        {"type": "webhook", "url": receiver.url + "/hooks/gw", "secret": secret}, "rotated", CONTEXT
    )

    [request] = receiver.requests
    # What a receiver does: HMAC the raw body with the shared secret, compare in constant time.
    expected = "sha256=" + hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["X-Gateway-Signature"], expected)
    assert webhook_signature(secret, request.body) == expected
    timestamp = int(request.headers["X-Gateway-Timestamp"])
    assert before <= timestamp <= int(time.time())
    payload = json.loads(request.body)
    sent_at = payload.pop("sent_at")
    assert payload == {"event": "rotated", **CONTEXT}
    assert sent_at == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
    assert request.headers["X-Gateway-Event"] == "rotated"
    assert secret not in request.body.decode()


def test_unsigned_webhook_has_no_signature(receiver):
    notify({"type": "webhook", "url": receiver.url + "/hook"}, "sync_failed", CONTEXT)

    [request] = receiver.requests
    assert "X-Gateway-Signature" not in request.headers
    assert json.loads(request.body)["event"] == "sync_failed"


def test_a_token_in_the_context_never_reaches_the_webhook(receiver):
    context = {**CONTEXT, "sync_error": f"echo {TOKEN}", "token": TOKEN}

    notify({"type": "webhook", "url": receiver.url + "/hook"}, "sync_failed", context)
    notify({"type": "slack-webhook", "webhook_url": receiver.url + "/s"}, "sync_failed", context)

    for request in receiver.requests:
        assert TOKEN not in request.body.decode()
    assert "token" not in json.loads(receiver.requests[0].body)


@pytest.mark.parametrize("status", [500, 502, 503, 429, 408])
def test_server_errors_and_throttling_are_transient(receiver, status):
    receiver.status = status
    with pytest.raises(NotificationError) as caught:
        notify({"type": "webhook", "url": receiver.url + "/hook"}, "rotated", CONTEXT)
    assert str(caught.value) == f"the webhook answered HTTP {status}"


@pytest.mark.parametrize("status", [400, 403, 404, 410])
def test_client_errors_are_permanent(receiver, status):
    receiver.status = status
    with pytest.raises(NotificationRejected) as caught:
        notify({"type": "slack-webhook", "webhook_url": receiver.url + "/s"}, "rotated", CONTEXT)
    assert str(caught.value) == f"the Slack webhook answered HTTP {status}"


def test_redirects_are_not_followed(receiver):
    receiver.status, receiver.location = 302, receiver.url + "/elsewhere"

    with pytest.raises(NotificationRejected) as caught:
        notify({"type": "webhook", "url": receiver.url + "/hook"}, "rotated", CONTEXT)

    assert str(caught.value) == "the webhook answered HTTP 302"
    assert [r.path for r in receiver.requests] == ["/hook"]


@override_settings(GATEWAY_NOTIFY_TIMEOUT_SECONDS=0.3)
def test_a_receiver_that_hangs_is_transient(receiver):
    receiver.delay = 2
    started = time.monotonic()

    with pytest.raises(NotificationError) as caught:
        notify({"type": "webhook", "url": receiver.url + "/hook"}, "rotated", CONTEXT)

    assert time.monotonic() - started < 1.5
    assert str(caught.value) == "the webhook timed out"


def test_an_unreachable_receiver_is_transient():
    url = f"http://127.0.0.1:{free_port()}/hook"
    with pytest.raises(NotificationError) as caught:
        notify({"type": "webhook", "url": url}, "rotated", CONTEXT)
    assert str(caught.value) == "could not reach the webhook (ConnectError)"
