"""Request logs are written in batches off the request path, and never lost.

Records go into an in-memory queue; a background task writes them with one bulk insert per
batch. When the database refuses, the batch is appended to a spool file under the var
directory and replayed when the database answers again (and at start-up). Shutdown flushes the
queue. A `kill -9` loses at most the records still queued: one batch interval (0.2 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils.dateparse import parse_datetime

from dataaccess import rollups
from proxy import db
from proxy.models import McpToolCall, RequestLog

logger = logging.getLogger(__name__)

BATCH_SIZE = 500
INTERVAL_SECONDS = 0.2


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in record.items():
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, uuid.UUID | Decimal):
            value = str(value)
        out[key] = value
    return out


def _revive(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "started_at": parse_datetime(record["started_at"])}


def _insert(batch: list[tuple[str, dict[str, Any]]]) -> None:
    """Insert raw rows and fold them into the rollups, atomically (runs in a worker thread).

    Records already stored (a spool replayed after a crash) are skipped, so rollups never
    count a request twice.
    """
    with transaction.atomic():
        known = _stored_ids(batch)
        fresh = [(k, r) for k, r in batch if str(r["id"]) not in known]
        requests = [RequestLog(**r) for k, r in fresh if k == "request"]
        calls = [McpToolCall(**r) for k, r in fresh if k == "mcp"]
        if requests:
            RequestLog.objects.bulk_create(requests, ignore_conflicts=True)
        if calls:
            McpToolCall.objects.bulk_create(calls, ignore_conflicts=True)
        rollups.upsert(rollups.fold(fresh).values())


def _stored_ids(batch: list[tuple[str, dict[str, Any]]]) -> set[str]:
    request_ids = [r["id"] for k, r in batch if k == "request"]
    call_ids = [r["id"] for k, r in batch if k == "mcp"]
    found = list(RequestLog.objects.filter(id__in=request_ids).values_list("id", flat=True))
    found += McpToolCall.objects.filter(id__in=call_ids).values_list("id", flat=True)
    return {str(i) for i in found}


class LogWriter:
    """Queue -> batches -> database, with a local spool for database outages."""

    def __init__(
        self, spool_dir: Path | None = None, insert: Callable[..., None] = _insert
    ) -> None:
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self.spool_dir = spool_dir or Path(settings.VAR_DIR) / "spool"
        self._insert = insert
        self._last_replay = 0.0

    def enqueue(self, kind: str, record: dict[str, Any]) -> None:
        """Hand a record over; never blocks the request."""
        self.queue.put_nowait((kind, record))

    def _drain(self) -> list[tuple[str, dict[str, Any]]]:
        batch: list[tuple[str, dict[str, Any]]] = []
        while not self.queue.empty() and len(batch) < BATCH_SIZE:
            batch.append(self.queue.get_nowait())
        return batch

    async def write_batch(self, batch: list[tuple[str, dict[str, Any]]]) -> bool:
        """Insert a batch; spool it when the database refuses. True when it reached the DB."""
        if not batch:
            return True
        try:
            await db.run(self._insert, batch)
        except DatabaseError:
            logger.warning("request logs: database unavailable, spooling %d record(s)", len(batch))
            await db.run(self._spool, batch)
            return False
        return True

    def _spool(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        path = self.spool_dir / f"logs-{time.time_ns()}-{os.getpid()}.jsonl"
        partial = path.with_suffix(".partial")  # renamed when complete: replay sees whole files
        with partial.open("w", encoding="utf-8") as handle:
            for kind, record in batch:
                handle.write(json.dumps({"kind": kind, "record": _jsonable(record)}) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        partial.replace(path)

    def _replay(self) -> int:
        """Insert spooled files, oldest first; delete each once written. Returns records done."""
        done = 0
        if not self.spool_dir.is_dir():
            return 0
        for path in sorted(self.spool_dir.glob("logs-*.jsonl")):
            lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x]
            self._insert([(x["kind"], _revive(x["record"])) for x in lines])
            path.unlink()
            done += len(lines)
        return done

    async def replay_spool(self) -> None:
        """Write spooled records back once the database answers."""
        try:
            count = await db.run(self._replay)
        except DatabaseError:
            return
        if count:
            logger.info("request logs: replayed %d spooled record(s)", count)

    async def run(self, stop: asyncio.Event) -> None:
        """The background loop: write every interval until `stop`, then flush everything."""
        await self.replay_spool()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=INTERVAL_SECONDS)
            written = await self.write_batch(self._drain())
            if written and time.monotonic() - self._last_replay > 5:
                self._last_replay = time.monotonic()
                await self.replay_spool()
        await self.flush()

    async def flush(self) -> None:
        """Write (or spool) everything queued."""
        while not self.queue.empty():
            await self.write_batch(self._drain())
