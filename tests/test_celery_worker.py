"""A real Celery worker on Redis and the test PostgreSQL database delivers invitation mail."""

from __future__ import annotations

import email
import email.policy
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from kombu import Connection, Queue

from accounts.tasks import invitation_send_task
from gateway_project.celery import app as celery_app
from tests import factories
from tests.processes import current_database_url, env_without, free_port, stop, wait_until

pytestmark = pytest.mark.slow

REDIS_URL = "redis://127.0.0.1:6379/11"
WORKER_READY_TIMEOUT = 60.0
DELIVERY_TIMEOUT = 60.0


class Mailbox:
    """aiosmtpd handler that keeps every message it receives."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.received = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        self.received.set()
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield mailbox, port
    finally:
        controller.stop()


@pytest.fixture
def tasks_not_eager() -> Iterator[None]:
    """Publish for real: the test settings run tasks eagerly."""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = False
    try:
        yield
    finally:
        celery_app.conf.task_always_eager = previous


def start_worker(
    queue: str, smtp_port: int, tmp_path: Path
) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / "worker.log"
    env = env_without(
        "CELERY_BROKER_URL",
        DJANGO_SETTINGS_MODULE="gateway_project.settings",
        DATABASE_URL=current_database_url(),
        REDIS_URL=REDIS_URL,
        CELERY_TASK_ALWAYS_EAGER="false",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=str(smtp_port),
        GATEWAY_VAR_DIR=str(tmp_path / "var"),
    )
    argv = [
        sys.executable, "-m", "celery", "-A", "gateway_project", "worker",
        "--pool", "solo", "--queues", queue, "--hostname", f"{queue}@%h", "--loglevel", "INFO",
        # Other test runs may share this Redis: do not talk to their workers.
        "--without-mingle", "--without-gossip", "--without-heartbeat",
    ]  # fmt: skip
    with log.open("wb") as sink:
        process = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT
        )
    return process, log


def test_worker_sends_the_invitation_mail_over_smtp(
    transactional_db: None, smtp: tuple[Mailbox, int], tmp_path: Path, tasks_not_eager: None
) -> None:
    mailbox, smtp_port = smtp
    user = factories.UserFactory(email="invitee@example.com", display_name="In Vitee")
    link = f"http://127.0.0.1:8000/invite/{uuid.uuid4().hex}/"
    queue = f"test-{uuid.uuid4().hex}"

    worker, log = start_worker(queue, smtp_port, tmp_path)
    try:

        def worker_ready() -> bool:
            assert worker.poll() is None, log.read_text(errors="replace")
            return re.search(r"@\S+ ready\.", log.read_text(errors="replace")) is not None

        wait_until(worker_ready, WORKER_READY_TIMEOUT, "the worker to log 'ready'")
        with Connection(REDIS_URL) as broker:
            invitation_send_task.apply_async(
                (user.pk, link), queue=queue, producer=broker.Producer()
            )
            delivered = mailbox.received.wait(timeout=DELIVERY_TIMEOUT)
            Queue(queue).bind(broker.default_channel).delete()
    finally:
        stop(worker)
    output = log.read_text(errors="replace")

    assert delivered, output
    assert len(mailbox.messages) == 1
    message = mailbox.messages[0]
    assert message["To"] == "invitee@example.com"
    assert message["Subject"] == "You are invited to Gateway"
    body = message.get_content().replace("\r\n", "\n")
    assert f"\n{link}\n" in body
    assert "invitation_send_task" in output  # the worker ran it
    assert link not in output  # the link is redacted from the worker's log
