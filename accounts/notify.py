"""Virtual-account notifications: token rotated, expiry approaching, secret-store sync failed.

Targets (a virtual account's `notification_target`, validated by `NotificationTarget`):

- `{type: email, to_emails: [...]}`: Django's mail backend (SMTP from settings; off while
  `EMAIL_HOST` is empty, as every integration is).
- `{type: slack-webhook, webhook_url: https://hooks.slack.com/services/...}`: POST `{"text"}`
  (api.slack.com/messaging/webhooks).
- `{type: webhook, url: ..., secret?: ...}`: POST JSON `{"event", <context>, "sent_at"}`.

Signed webhooks: with a `secret`, the request carries

    X-Gateway-Signature: sha256=<hex HMAC-SHA256 of the raw request body, keyed with the secret>
    X-Gateway-Timestamp: <unix seconds when sent; the same instant as the body's `sent_at`>

A receiver verifies by computing `hmac.new(secret, raw_body, sha256).hexdigest()` over the
bytes it received (before parsing), comparing with `hmac.compare_digest`, and then rejecting
deliveries whose timestamp is more than a few minutes old. The timestamp is inside the signed
body (`sent_at`), so a replayed delivery cannot be made to look fresh.

Messages carry names, dates, the token's visible prefix and a console link, never a token:
only the context keys below are used, and anything shaped like a gateway token is redacted.

Webhook hosts (SSRF): a Slack or generic webhook URL may not point at loopback, link-local
(cloud metadata), private or other non-public addresses, in any spelling, unless
GATEWAY_WEBHOOK_ALLOWLIST has a pattern for its host or address. Checked when the target is
saved and again before every delivery (DNS can change), and the delivery connects to the
addresses that check resolved (with the URL's Host header and TLS server name), not to a
fresh DNS answer that could point elsewhere; redirects are never followed.

Errors: `NotificationError` is transient (timeouts, connection failures, 5xx, 408, 429) and
the caller retries; `NotificationRejected` is permanent (other 4xx, refused recipients, an
invalid target) and retrying cannot help.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import smtplib
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import httpx
from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.mail import get_connection, send_mail
from django.core.validators import validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from providers.upstream import HostRefused, non_public_reason, vetted_addresses

logger = logging.getLogger(__name__)

EVENTS = ("rotated", "expiring_in_7d", "expiring_in_1d", "sync_failed")
CONTEXT_KEYS = (
    "virtual_account",
    "owner_team",
    "token_prefix",
    "expiration_date",
    "grace_period_days",
    "sync_error",
    "console_url",
)
DEFAULT_TIMEOUT_SECONDS = 10.0
SLACK_WEBHOOK_PREFIX = "https://hooks.slack.com/"
# Whole gateway tokens (`gw_va_<name>_<40>`, `gw_pat_<40>`); the 6-character visible prefix
# that notifications do carry is too short to match.
_TOKEN_RE = re.compile(r"gw_(?:va_[a-z0-9-]+_|pat_)[A-Za-z0-9]{16,}")
_USER_AGENT = "Gateway-Notifier/1.0"


class NotificationError(Exception):
    """A transient delivery failure: retry with backoff."""


class NotificationRejected(Exception):
    """A permanent failure (the receiver refused, or the target is invalid): do not retry."""


# --- targets -------------------------------------------------------------------------------------


class _Target(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    # The mirrored product names a notification integration here; we send directly, so it is
    # accepted for compatibility and otherwise unused.
    notification_channel: str = ""


def _email(value: str) -> str:
    address = value.strip().lower()
    try:
        validate_email(address)
    except DjangoValidationError:
        raise ValueError(f"'{value}' is not a valid email") from None
    return address


class EmailTarget(_Target):
    type: Literal["email"]
    to_emails: list[Annotated[str, AfterValidator(_email)]] = Field(min_length=1, max_length=50)


def _slack_prefixes() -> tuple[str, ...]:
    """Allowed webhook URL prefixes; tests add their local receiver through settings."""
    extra = getattr(settings, "GATEWAY_SLACK_WEBHOOK_PREFIXES", ())
    return (SLACK_WEBHOOK_PREFIX, *extra)


def _http_url(url: str) -> httpx.URL | None:
    """`url` parsed when it is an http(s) URL with a host, else None."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return None
    return parsed if parsed.scheme in ("http", "https") and parsed.host else None


def webhook_host_problem(url: str, *, strict: bool) -> str:
    """Why the gateway must not POST to `url` (see "Webhook hosts" above), or ""."""
    parsed = _http_url(url)
    if parsed is None:
        return "must be an http:// or https:// URL"
    patterns: list[str] = settings.GATEWAY_WEBHOOK_ALLOWLIST
    reason = non_public_reason(parsed.host, patterns, strict=strict)
    return f"{reason} (see GATEWAY_WEBHOOK_ALLOWLIST)" if reason else ""


def _webhook_url(value: str) -> str:
    problem = webhook_host_problem(value, strict=False)
    if problem:
        raise ValueError(problem)
    return value


class SlackWebhookTarget(_Target):
    type: Literal["slack-webhook"]
    webhook_url: str = Field(min_length=1, max_length=500)

    @field_validator("webhook_url")
    @classmethod
    def _slack(cls, value: str) -> str:
        if not value.startswith(_slack_prefixes()):
            raise ValueError(f"must be a Slack incoming-webhook URL ({SLACK_WEBHOOK_PREFIX}...)")
        return _webhook_url(value)


class WebhookTarget(_Target):
    type: Literal["webhook"]
    url: str = Field(min_length=1, max_length=500)
    secret: str = Field(default="", max_length=500)

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        return _webhook_url(value)


NotificationTarget = Annotated[
    EmailTarget | SlackWebhookTarget | WebhookTarget, Field(discriminator="type")
]
_TARGET = TypeAdapter(NotificationTarget)


def notification_target_parse(
    target: Mapping[str, Any],
) -> EmailTarget | SlackWebhookTarget | WebhookTarget:
    """The typed target; pydantic's ValidationError when it is malformed."""
    parsed: EmailTarget | SlackWebhookTarget | WebhookTarget = _TARGET.validate_python(target)
    return parsed


# --- messages ------------------------------------------------------------------------------------


def _redact(text: str) -> str:
    return _TOKEN_RE.sub("[redacted]", text)


def _safe_context(context: Mapping[str, Any]) -> dict[str, Any]:
    """Only the known keys, with anything token-shaped redacted."""
    out: dict[str, Any] = {}
    for key in CONTEXT_KEYS:
        value = context.get(key)
        out[key] = _redact(value) if isinstance(value, str) else value
    return out


def _days(value: Any) -> str:
    return "1 day" if value == 1 else f"{value} days"


def render(event: str, context: Mapping[str, Any]) -> tuple[str, str]:
    """(subject, text) for an event, from the context keys only."""
    c = _safe_context(context)
    account = c["virtual_account"] or "(unknown)"
    team = f" (team {c['owner_team']})" if c["owner_team"] else ""
    link = f"\n\nManage it: {c['console_url']}" if c["console_url"] else ""
    if event == "rotated":
        prefix = f" It starts with {c['token_prefix']}…" if c["token_prefix"] else ""
        grace = c["grace_period_days"]
        previous = (
            f" The previous token keeps working for {_days(grace)}, then stops."
            if grace
            else " The previous token stopped working immediately."
        )
        subject = f"[Gateway] Token rotated for virtual account {account}"
        text = (
            f"The token of virtual account '{account}'{team} was rotated.{prefix}{previous}"
            " Applications reading it from the secret store pick up the new token there;"
            " others must be given it."
        )
    elif event in ("expiring_in_7d", "expiring_in_1d"):
        days = 7 if event == "expiring_in_7d" else 1
        when = f" on {c['expiration_date']}" if c["expiration_date"] else ""
        subject = f"[Gateway] Virtual account {account} expires in {_days(days)}"
        text = (
            f"Virtual account '{account}'{team} expires{when}, in {_days(days)}. Its tokens stop"
            " working then, and the expiration date cannot be extended: create a replacement"
            " account and move its applications before that day."
        )
    elif event == "sync_failed":
        reason = c["sync_error"] or "unknown error"
        subject = f"[Gateway] Secret-store sync failed for virtual account {account}"
        text = (
            f"The token of virtual account '{account}'{team} could not be written to its secret"
            f" store: {reason}. The gateway retries with backoff; once the store is fixed, use"
            " 'Sync now' on the account's page."
        )
    else:
        raise ValueError(f"unknown notification event '{event}'")
    return subject, _redact(text + link)


# --- delivery ------------------------------------------------------------------------------------


def _timeout() -> float:
    return float(getattr(settings, "GATEWAY_NOTIFY_TIMEOUT_SECONDS", DEFAULT_TIMEOUT_SECONDS))


def _send_email(target: EmailTarget, subject: str, text: str) -> None:
    if settings.EMAIL_BACKEND.endswith("dummy.EmailBackend"):
        logger.warning("email notifications are off (EMAIL_HOST is empty); not sent: %s", subject)
        return
    try:
        connection = get_connection(fail_silently=False, timeout=_timeout())
        send_mail(
            subject,
            text,
            settings.DEFAULT_FROM_EMAIL,
            list(target.to_emails),
            connection=connection,
        )
    except smtplib.SMTPRecipientsRefused as exc:
        raise NotificationRejected(
            f"the mail server refused every recipient ({len(exc.recipients)})"
        ) from None
    except smtplib.SMTPResponseException as exc:
        if 500 <= exc.smtp_code < 600:
            raise NotificationRejected(
                f"the mail server refused the message ({exc.smtp_code})"
            ) from None
        raise NotificationError(f"the mail server deferred the message ({exc.smtp_code})") from None
    except (smtplib.SMTPException, OSError) as exc:
        raise NotificationError(f"could not send email ({type(exc).__name__})") from None


def _vetted_addresses(url: httpx.URL, what: str) -> list[str]:
    """The addresses `url`'s host may be reached at now (see "Webhook hosts" above)."""
    try:
        return vetted_addresses(url.host, settings.GATEWAY_WEBHOOK_ALLOWLIST)
    except HostRefused as refused:
        message = f"{what}: {refused} (see GATEWAY_WEBHOOK_ALLOWLIST)"
        if refused.unresolved:
            raise NotificationError(message) from None
        raise NotificationRejected(message) from None


def _post_pinned(
    client: httpx.Client, url: httpx.URL, addresses: list[str], body: bytes, headers: dict[str, str]
) -> httpx.Response:
    """POST to the vetted addresses in turn (by name when none), never to a fresh DNS answer.

    The Host header and, over TLS, the server name (SNI, certificate check) stay the URL's.
    """
    if not addresses:
        return client.post(url, content=body, headers=headers)
    pinned_headers = {**headers, "Host": url.netloc.decode("ascii")}
    extensions = {"sni_hostname": url.raw_host.decode("ascii")}
    for address in addresses[:-1]:
        try:
            return client.post(
                url.copy_with(host=address),
                content=body,
                headers=pinned_headers,
                extensions=extensions,
            )
        except httpx.ConnectError:
            continue  # the next address, as a client connecting by name would
    return client.post(
        url.copy_with(host=addresses[-1]),
        content=body,
        headers=pinned_headers,
        extensions=extensions,
    )


def _post(url: str, body: bytes, headers: dict[str, str], what: str) -> None:
    target = _http_url(url)
    if target is None:
        raise NotificationRejected(f"{what}: must be an http:// or https:// URL")
    addresses = _vetted_addresses(target, what)
    headers = {"Content-Type": "application/json", "User-Agent": _USER_AGENT, **headers}
    try:
        with httpx.Client(timeout=_timeout(), follow_redirects=False) as client:
            response = _post_pinned(client, target, addresses, body, headers)
    except httpx.TimeoutException:
        raise NotificationError(f"{what} timed out") from None
    except httpx.HTTPError as exc:
        raise NotificationError(f"could not reach {what} ({type(exc).__name__})") from None
    status = response.status_code
    if status >= 500 or status in (408, 425, 429):
        raise NotificationError(f"{what} answered HTTP {status}")
    if status >= 300:
        # Redirects are not followed: a webhook that moved must be reconfigured.
        raise NotificationRejected(f"{what} answered HTTP {status}")


def _send_slack(target: SlackWebhookTarget, subject: str, text: str) -> None:
    body = json.dumps({"text": f"*{subject}*\n{text}"}).encode()
    _post(target.webhook_url, body, {}, "the Slack webhook")


def webhook_signature(secret: str, body: bytes) -> str:
    """The `X-Gateway-Signature` value for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _send_webhook(target: WebhookTarget, event: str, context: Mapping[str, Any]) -> None:
    now = time.time()
    sent_at = datetime.fromtimestamp(int(now), tz=UTC).isoformat().replace("+00:00", "Z")
    payload = {"event": event, **_safe_context(context), "sent_at": sent_at}
    body = json.dumps(payload, separators=(",", ":"), default=str).encode()
    headers = {"X-Gateway-Event": event}
    if target.secret:
        headers["X-Gateway-Signature"] = webhook_signature(target.secret, body)
        headers["X-Gateway-Timestamp"] = str(int(now))
    _post(target.url, body, headers, "the webhook")


def notify(target: dict[str, Any], event: str, context: dict[str, Any]) -> None:
    """Send one notification about `event` to `target`.

    Raises NotificationError (transient: retry) or NotificationRejected (permanent).
    """
    if event not in EVENTS:
        raise ValueError(f"unknown notification event '{event}'")
    try:
        parsed = notification_target_parse(target)
    except ValidationError as exc:
        fields = ", ".join(sorted({".".join(map(str, e["loc"])) for e in exc.errors()}))
        raise NotificationRejected(f"invalid notification target ({fields})") from None
    subject, text = render(event, context)
    if isinstance(parsed, EmailTarget):
        _send_email(parsed, subject, text)
    elif isinstance(parsed, SlackWebhookTarget):
        _send_slack(parsed, subject, text)
    else:
        _send_webhook(parsed, event, context)
    logger.info(
        "notification %s for %s sent via %s", event, context.get("virtual_account"), parsed.type
    )
