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
