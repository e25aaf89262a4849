"""Request logs: batched, spooled when the database is away, replayed, flushed on shutdown."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from django.db import DatabaseError
from django.utils import timezone

from proxy.logwriter import LogWriter, _insert
from proxy.models import RequestLog
from tests.proxy.test_proxy_sdk import logs, oai

pytestmark = pytest.mark.django_db(transaction=True)


def record(**values: object) -> dict[str, object]:
    base = {
        "id": uuid.uuid4(),
        "started_at": timezone.now(),
        "endpoint": "chat/completions",
        "requested_model": "a/b",
        "status": 200,
        "caller_type": "user",
        "caller_id": 1,
        "caller_name": "a@example.com",
        "latency_ms": 1.5,
        "cost_usd": 0.25,
    }
    return {**base, **values}


class FlakyDatabase:
    """An insert that fails while `down` is set, like a database outage."""

    def __init__(self) -> None:
        self.down = True

    def __call__(self, batch):
        if self.down:
            raise DatabaseError("connection refused")
        _insert(batch)


def test_outage_spools_and_the_spool_is_replayed_when_the_database_returns(tmp_path):
    database = FlakyDatabase()
    writer = LogWriter(spool_dir=tmp_path, insert=database)
    records = [record(requested_model=f"m/{i}") for i in range(3)]

    async def scenario() -> None:
        for item in records:
            writer.enqueue("request", item)
        await writer.flush()
        assert len(list(tmp_path.glob("logs-*.jsonl"))) == 1
        database.down = False
        await writer.replay_spool()

    asyncio.run(scenario())
    assert list(tmp_path.glob("*")) == []
    stored = {r.requested_model: r for r in RequestLog.objects.all()}
    assert sorted(stored) == ["m/0", "m/1", "m/2"]
    assert float(stored["m/0"].cost_usd) == 0.25
    assert stored["m/0"].id == records[0]["id"]


def test_replaying_the_same_spool_twice_writes_each_record_once(tmp_path):
    writer = LogWriter(spool_dir=tmp_path)
    item = record()
    writer._spool([("request", item)])
    copy = next(tmp_path.glob("logs-*.jsonl")).read_text()
    asyncio.run(writer.replay_spool())
    (tmp_path / "logs-1-again.jsonl").write_text(copy)  # a crash after insert, before unlink
    asyncio.run(writer.replay_spool())
    assert RequestLog.objects.filter(id=str(item["id"])).count() == 1


def test_a_partial_spool_file_is_not_replayed(tmp_path):
    (tmp_path / "logs-1-1.partial").write_text('{"kind": "request", "rec')
    asyncio.run(LogWriter(spool_dir=tmp_path).replay_spool())
    assert RequestLog.objects.count() == 0


def test_graceful_shutdown_flushes_queued_records(gateway_factory):
    with gateway_factory() as gw:
        client = oai(gw)
        for _ in range(5):
            client.chat.completions.create(
                model="openai-main/gpt-4o", messages=[{"role": "user", "content": "x"}]
            )
    # The server has stopped: whatever was queued is in the database now, with no waiting.
    assert RequestLog.objects.count() == 5
    assert len(logs(5, timeout=0)) == 5
