"""Invitation tasks: the mail carries the link, transient SMTP errors retry, expiry cleans up."""

from __future__ import annotations

import logging
import smtplib
from datetime import timedelta
from typing import Any

import pytest
from celery import Task
from django.core import mail
from django.utils import timezone

from accounts import tasks
from accounts.models import Invitation, User
from accounts.tasks import invitation_expire_task, invitation_send_task
from tests import factories

LINK = "http://127.0.0.1:8000/invitations/s3cr3t-one-time-token/"


@pytest.mark.django_db
def test_invitation_send_task_mails_the_link_to_the_user(caplog: pytest.LogCaptureFixture) -> None:
    user = factories.UserFactory(email="new.person@example.com", display_name="New Person")
    caplog.set_level(logging.DEBUG)

    result = invitation_send_task.delay(user.pk, LINK)

    assert result.get() is True
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["new.person@example.com"]
    assert message.subject == "You are invited to Gateway"
    assert message.from_email == "gateway@localhost"
    assert f"\n{LINK}\n" in message.body
    assert message.body.startswith("Hello New Person,\n")
    assert LINK not in caplog.text
    assert "s3cr3t" not in caplog.text


@pytest.mark.django_db
def test_invitation_send_task_skips_inactive_and_deleted_users() -> None:
    inactive = factories.UserFactory(is_active=False)
    gone_id = factories.UserFactory().pk
    User.objects.filter(pk=gone_id).delete()

    assert invitation_send_task.delay(inactive.pk, LINK).get() is False
    assert invitation_send_task.delay(gone_id, LINK).get() is False
    assert mail.outbox == []


@pytest.mark.django_db
def test_invitation_send_task_retries_a_transient_smtp_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user = factories.UserFactory()
    attempts: list[int] = []

    def flaky_send_mail(**kwargs: Any) -> int:
        attempts.append(1)
        if len(attempts) == 1:
            raise smtplib.SMTPServerDisconnected("connection lost")
        return mail.send_mail(**kwargs)

    monkeypatch.setattr(tasks, "send_mail", flaky_send_mail)

    # throw=False: an eager run that propagates errors would raise Retry instead of retrying.
    result = invitation_send_task.apply(args=(user.pk, LINK), throw=False)

    assert result.get() is True
    assert len(attempts) == 2
    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_invitation_send_task_does_not_retry_a_permanent_refusal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user = factories.UserFactory()
    attempts: list[int] = []

    def refusing_send_mail(**kwargs: Any) -> int:
        attempts.append(1)
        raise smtplib.SMTPRecipientsRefused({user.email: (550, b"no such mailbox")})

    monkeypatch.setattr(tasks, "send_mail", refusing_send_mail)

    with pytest.raises(smtplib.SMTPRecipientsRefused):
        invitation_send_task.delay(user.pk, LINK)

    assert len(attempts) == 1
    assert mail.outbox == []


def test_invitation_send_task_masks_its_arguments_when_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: dict[str, Any] = {}

    def fake_apply_async(self: Task, *args: Any, **options: Any) -> None:  # type: ignore[type-arg]
        sent.update(options, args=args)

    monkeypatch.setattr(Task, "apply_async", fake_apply_async)

    invitation_send_task.apply_async((7, LINK), countdown=5)

    assert sent == {
        "args": ((7, LINK),),
        "countdown": 5,
        "argsrepr": "(redacted)",
        "kwargsrepr": "(redacted)",
    }


@pytest.mark.django_db
def test_invitation_expire_task_deletes_only_expired_unused_invitations() -> None:
    user = factories.UserFactory()
    now = timezone.now()

    def invitation(digest: str, expires_in: timedelta, used: bool) -> Invitation:
        return Invitation.objects.create(
            user=user,
            digest=digest,
            expires_at=now + expires_in,
            used_at=now - timedelta(hours=1) if used else None,
            created_by="system",
        )

    invitation("expired-unused", -timedelta(minutes=1), used=False)
    invitation("expired-used", -timedelta(days=1), used=True)
    invitation("valid-unused", timedelta(hours=1), used=False)

    deleted = invitation_expire_task.delay().get()

    assert deleted == 1
    remaining = set(Invitation.objects.values_list("digest", flat=True))
    assert remaining == {"expired-used", "valid-unused"}
    assert User.objects.filter(pk=user.pk).exists()
