"""Background jobs of the accounts app: invitation mail and invitation clean-up."""

from __future__ import annotations

import logging
import smtplib
from typing import Any

from celery import Task, shared_task
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings
from django.core.mail import send_mail
from django.utils import timezone

from accounts.models import Invitation, User

logger = logging.getLogger(__name__)

MAX_RETRIES = 6
BACKOFF_FACTOR_SECONDS = 10
BACKOFF_MAX_SECONDS = 600
REDACTED = "(redacted)"


class RedactedArgsTask(Task):  # type: ignore[type-arg]
    """A task whose arguments carry a secret: log lines and events show a placeholder."""

    def apply_async(self, *args: Any, **options: Any) -> Any:
        """Send as usual, with the printable copies of the arguments masked."""
        options["argsrepr"] = REDACTED
        options["kwargsrepr"] = REDACTED
        return super().apply_async(*args, **options)


def _is_permanent(exc: OSError) -> bool:
    """SMTP 5xx replies and missing features will not improve on retry (RFC 5321 §4.2.1)."""
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return True
    if isinstance(exc, smtplib.SMTPResponseException):
        return exc.smtp_code >= 500
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _msg in exc.recipients.values())
    return False  # connection refused/reset, timeouts, 4xx: transient


@shared_task(bind=True, base=RedactedArgsTask, max_retries=MAX_RETRIES)
def invitation_send_task(self: Task, user_id: int, link: str) -> bool:  # type: ignore[type-arg]
    """Mail the invitation link; retried with backoff on transient SMTP errors.

    The link is a credential: it goes into the message and nowhere else (not into logs).
    Returns False when the user is gone or inactive, True when sent.
    """
    user = User.objects.filter(pk=user_id, is_active=True).first()
    if user is None:
        return False
    try:
        send_mail(
            subject="You are invited to Gateway",
            message=_invitation_body(user, link),
            from_email=None,  # DEFAULT_FROM_EMAIL
            recipient_list=[user.email],
        )
    except OSError as exc:  # smtplib.SMTPException is an OSError, as are refused connections
        if _is_permanent(exc):
            logger.error("invitation mail to user %s refused: %s", user_id, type(exc).__name__)
            raise
        countdown = get_exponential_backoff_interval(
            BACKOFF_FACTOR_SECONDS, self.request.retries, BACKOFF_MAX_SECONDS, full_jitter=True
        )
        logger.warning(
            "invitation mail to user %s failed (%s); retry in %ss",
            user_id,
            type(exc).__name__,
            countdown,
        )
        raise self.retry(exc=exc, countdown=countdown) from exc
    logger.info("invitation mail sent to user %s", user_id)
    return True


def _invitation_body(user: User, link: str) -> str:
    """The plain-text invitation message."""
    greeting = f"Hello {user.display_name}," if user.display_name else "Hello,"
    return (
        f"{greeting}\n\n"
        f"You have been invited to Gateway ({settings.GATEWAY_PUBLIC_URL}) as {user.email}.\n"
        f"Open this link to choose your password:\n\n{link}\n\n"
        f"The link works once and expires in {settings.GATEWAY_INVITE_TTL_HOURS} hours.\n"
    )


@shared_task
def invitation_expire_task() -> int:
    """Delete unused invitations past their expiry (scheduled by beat); returns how many."""
    deleted, _ = Invitation.objects.filter(
        used_at__isnull=True, expires_at__lte=timezone.now()
    ).delete()
    if deleted:
        logger.info("deleted %d expired invitation(s)", deleted)
    return deleted


# --- virtual accounts: rotation, secret-store sync, notifications -----------------------------


def _va_locked(account_id: int) -> Any:
    """The account row locked for this worker, or None (gone, or another worker holds it)."""
    from accounts.models import VirtualAccount

    return (
        # `of=("self",)`: PostgreSQL cannot lock the nullable side of the store's outer join.
        VirtualAccount.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("secret_store", "owner_team")
        .filter(pk=account_id)
        .first()
    )


@shared_task
def va_rotation_scan_task() -> int:
    """Beat: start a rotation for every account that is due (and finish interrupted ones)."""
    from accounts.models import TokenSecret, VirtualAccount

    due = VirtualAccount.objects.filter(rotation_due_at__lte=timezone.now()).values_list(
        "pk", flat=True
    )
    pending = TokenSecret.objects.filter(state=TokenSecret.State.NEXT).values_list(
        "token__account_id", flat=True
    )
    ids = sorted(set(due) | set(pending))
    for account_id in ids:
        va_rotate_task.delay(account_id)
    return len(ids)


@shared_task(bind=True, max_retries=8)
def va_rotate_task(self: Task, account_id: int) -> str:  # type: ignore[type-arg]
    """Rotate one account's token through the idempotent steps; safe to re-run at any point."""
    from datetime import timedelta

    from django.db import transaction

    from accounts import virtual_accounts as va
    from accounts.audit import audit_record, audit_source
    from accounts.models import TokenSecret
    from accounts.policy import Principal
    from accounts.secret_stores import SecretStoreError

    with transaction.atomic():
        account = _va_locked(account_id)
        if account is None:
            return "skipped"
        has_next = TokenSecret.objects.filter(
            token__account=account, state=TokenSecret.State.NEXT
        ).exists()
        due = account.rotation_due_at is not None and account.rotation_due_at <= timezone.now()
        if not (due or has_next):
            return "not due"
        secret, _ = va.rotation_issue_next(account, keep_undelivered=True)
    if account.secret_store is not None:
        try:
            va_deliver(account.pk, secret.pk)
        except SecretStoreError as exc:
            raise self.retry(
                exc=exc,
                countdown=get_exponential_backoff_interval(
                    BACKOFF_FACTOR_SECONDS,
                    self.request.retries,
                    BACKOFF_MAX_SECONDS,
                    full_jitter=True,
                ),
            ) from exc
    with transaction.atomic(), audit_source("system"):
        account = _va_locked(account_id)
        if account is None:
            return "skipped"
        promoted = va.rotation_promote(account, grace=timedelta(days=account.grace_period_days))
        if promoted is None:
            return "already promoted"
        audit_record(
            actor=Principal.system(),
            action="virtual_account.token_rotated",
            target=account,
            after={"prefix": promoted.prefix, "grace_period_days": account.grace_period_days},
        )
        transaction.on_commit(
            lambda: va_notify_task.delay(account_id, "rotated", promoted.pk), robust=True
        )
    return "rotated"


def va_deliver(account_id: int, secret_id: int) -> None:
    """Write a secret to the account's store and read it back; record the outcome."""
    from accounts.models import TokenSecret, VirtualAccount
    from accounts.secret_stores import SecretStoreError, secret_store_get, secret_store_put

    account = VirtualAccount.objects.select_related("secret_store").get(pk=account_id)
    secret = TokenSecret.objects.get(pk=secret_id)
    store = account.secret_store
    if store is None or not secret.undelivered:
        return
    try:
        secret_store_put(store, account.secret_path, secret.undelivered)
        if secret_store_get(store, account.secret_path) != secret.undelivered:
            raise SecretStoreError("the store returned a different value than was written")
    except SecretStoreError as exc:
        VirtualAccount.objects.filter(pk=account_id).update(sync_error=str(exc)[:500])
        va_notify_task.delay(account_id, "sync_failed", secret_id)
        raise
    VirtualAccount.objects.filter(pk=account_id).update(sync_error="", synced_at=timezone.now())


@shared_task(bind=True, max_retries=8)
def secret_store_sync_task(self: Task, account_id: int) -> str:  # type: ignore[type-arg]
    """Write the current token to the account's secret store ("Sync now", create, rotation)."""
    from accounts.models import TokenSecret
    from accounts.secret_stores import SecretStoreError

    secret = (
        TokenSecret.objects.filter(token__account_id=account_id)
        .filter(state__in=[TokenSecret.State.CURRENT])
        .exclude(undelivered="")
        .first()
    )
    if secret is None:
        return "nothing to sync"
    try:
        va_deliver(account_id, secret.pk)
    except SecretStoreError as exc:
        raise self.retry(
            exc=exc,
            countdown=get_exponential_backoff_interval(
                BACKOFF_FACTOR_SECONDS, self.request.retries, BACKOFF_MAX_SECONDS, full_jitter=True
            ),
        ) from exc
    return "synced"


@shared_task(bind=True, max_retries=MAX_RETRIES)
def va_notify_task(self: Task, account_id: int, event: str, secret_id: int | None = None) -> bool:  # type: ignore[type-arg]
    """Tell the account's notification target about a rotation, expiry or sync failure."""
    from accounts.models import TokenSecret, VirtualAccount

    account = VirtualAccount.objects.select_related("owner_team").filter(pk=account_id).first()
    if account is None or not account.notification_target:
        return False
    from accounts.notify import NotificationError, NotificationRejected, notify

    secret = TokenSecret.objects.filter(pk=secret_id).first() if secret_id else None
    if event == "rotated" and secret is not None and secret.notified_at is not None:
        return False  # already told: a re-run sends nothing twice
    try:
        notify(account.notification_target, event, va_notification_context(account, secret))
    except NotificationRejected as exc:
        # The receiver refused the message (4xx): retrying would be refused too.
        logger.warning("notification for account %s refused: %s", account_id, exc)
        return False
    except NotificationError as exc:
        raise self.retry(
            exc=exc,
            countdown=get_exponential_backoff_interval(
                BACKOFF_FACTOR_SECONDS, self.request.retries, BACKOFF_MAX_SECONDS, full_jitter=True
            ),
        ) from exc
    if event == "rotated" and secret is not None:
        TokenSecret.objects.filter(pk=secret.pk).update(notified_at=timezone.now())
    return True


def va_notification_context(account: Any, secret: Any) -> dict[str, Any]:
    """What a notification may say: names, dates and the token prefix, never the token."""
    return {
        "virtual_account": account.name,
        "owner_team": account.owner_team.name,
        "token_prefix": secret.prefix if secret is not None else "",
        "expiration_date": account.expiration_date.isoformat() if account.expiration_date else None,
        "grace_period_days": account.grace_period_days,
        "sync_error": account.sync_error,
        "console_url": f"{settings.GATEWAY_PUBLIC_URL}/access/virtual-accounts/{account.name}/",
    }


@shared_task
def va_expiry_warn_task() -> int:
    """Beat (hourly): warn 7 days and 1 day before an account expires, once each."""
    from datetime import timedelta

    from accounts.models import VirtualAccount

    today = timezone.now().date()
    sent = 0
    for days in (7, 1):
        target_day = today + timedelta(days=days)
        for account in VirtualAccount.objects.filter(expiration_date=target_day):
            if days in (account.expiry_notified or []):
                continue
            account.expiry_notified = [*(account.expiry_notified or []), days]
            account.save(update_fields=["expiry_notified"])
            va_notify_task.delay(account.pk, f"expiring_in_{days}d")
            sent += 1
    return sent


@shared_task
def va_retire_task() -> int:
    """Beat: mark previous secrets whose grace period ended as retired (auth already refuses)."""
    from accounts.models import TokenSecret

    return TokenSecret.objects.filter(
        state=TokenSecret.State.PREVIOUS, expires_at__lte=timezone.now()
    ).update(state=TokenSecret.State.RETIRED, undelivered="")
