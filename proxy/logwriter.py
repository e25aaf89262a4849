"""Request logs are written in batches off the request path, and never lost.

Records go into an in-memory queue; a background task writes them with one bulk insert per
batch. When the database refuses, or does not finish the write within `WRITE_TIMEOUT_SECONDS`
(a locked table, a stuck server), the batch is appended to a spool file (fsynced) under the var
directory and replayed when the database answers again (and at start-up). Shutdown flushes the
queue. A `kill -9` loses at most the records answered in the last `KILL_LOSS_WINDOW_SECONDS`:
those still queued or in the write being attempted (tests/faults/test_request_log_durability.py).

Under `gateway serve` this writer runs in a process of its own beside each worker, fed over a
pipe (`proxy/logprocess.py`); `GATEWAY_LOG_WRITER=thread` runs it in the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import json
import logging
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.constants import OnConflict
from django.utils.dateparse import parse_datetime

from dataaccess import rollups
from proxy import db
from proxy.models import McpToolCall, RequestLog

logger = logging.getLogger(__name__)

BATCH_SIZE = 500
MAX_ROWS_PER_STATEMENT = 256  # SQLite: rows per multi-row INSERT (a power of two)
INTERVAL_SECONDS = 0.2
# A write that waits longer is abandoned and the batch spooled: on disk, not in memory where a
# `kill -9` would lose it. Without it a locked log table held every record in memory for as
# long as the lock lasted (a minute's worth lost to a kill). PostgreSQL only; SQLite's
# busy_timeout bounds its waits.
WRITE_TIMEOUT_SECONDS = 1.0
# One interval, plus the write being attempted and the one whose records queued meanwhile.
KILL_LOSS_WINDOW_SECONDS = INTERVAL_SECONDS + 2 * WRITE_TIMEOUT_SECONDS


def _json_value(value: object) -> str:
    """JSON for the record values json cannot encode itself (ids, times, costs)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    raise TypeError(f"a request-log value of type {type(value).__name__} is not serialisable")


def encode(kind: str, record: dict[str, Any]) -> bytes:
    """One record as a line: the format of spool files and of the writer process's pipe."""
    line = json.dumps({"kind": kind, "record": record}, default=_json_value)
    return line.encode() + b"\n"  # json escapes newlines inside strings: one record, one line


def decode(line: bytes | str) -> tuple[str, dict[str, Any]]:
    """A record from an `encode`d line (ValueError or KeyError when the line is damaged)."""
    item = json.loads(line)
    record = item["record"]
    return str(item["kind"]), {**record, "started_at": parse_datetime(record["started_at"])}


def spool_lines(spool_dir: Path, lines: list[bytes]) -> None:
    """Append `encode`d records to the spool as one new file, fsynced, whole or not at all."""
    spool_dir.mkdir(parents=True, exist_ok=True)
    path = spool_dir / f"logs-{time.time_ns()}-{os.getpid()}.jsonl"
    partial = path.with_suffix(".partial")  # renamed when complete: replay sees whole files
    with partial.open("wb") as handle:
        handle.writelines(lines)
        handle.flush()
        os.fsync(handle.fileno())
    partial.replace(path)


def _insert(batch: list[tuple[str, dict[str, Any]]]) -> None:
    """Insert raw rows and fold them into the rollups, atomically (runs in a worker thread).

    Records already stored (a spool replayed after a crash) are skipped, so rollups never
    count a request twice.
    """
    with transaction.atomic():
        _bound_write_time()
        known = _stored_ids(batch)
        fresh = [(k, r) for k, r in batch if str(r["id"]) not in known]
        _REQUESTS.insert([r for k, r in fresh if k == "request"])
        _MCP_CALLS.insert([r for k, r in fresh if k == "mcp"])
        rollups.upsert(rollups.fold(fresh).values())


def _bound_write_time() -> None:
    """Make this transaction give up (a DatabaseError) after WRITE_TIMEOUT_SECONDS."""
    db = connections[DEFAULT_DB_ALIAS]
    if db.vendor != "postgresql":
        return
    timeout = f"{int(WRITE_TIMEOUT_SECONDS * 1000)}ms"
    with db.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('lock_timeout', %s, true), "
            "set_config('statement_timeout', %s, true)",
            [timeout, timeout],
        )


class _RowInserter:
    """`INSERT ... ON CONFLICT DO NOTHING` of plain record dicts into one model's table.

    Why not `bulk_create`: it instantiates a model per record and compiles the INSERT for each
    batch: ~80 µs of CPU per record, in a thread holding the GIL the event loop needs (profiled
    under the benchmark; bench/logwriter_bench.py measures it). Here the statement is built
    from cached parts, missing fields take the model's defaults, and only the columns whose
    Python values need adapting (UUID, datetime, JSON, decimal) go through the field's own
    `get_db_prep_save`.

    SQLite gets multi-row `VALUES` statements, not `executemany`: sqlite3's executemany steps
    once per row, dropping and re-taking the GIL each time, and while the event loop is busy
    every re-take waits for a switch interval. Measured under load, that capped the writer at
    ~2,000 rows/s, below what one worker serves, so the queue (and memory) grew without bound.
    One statement per chunk takes the GIL once per chunk. PostgreSQL keeps `executemany`:
    psycopg pipelines it (one round trip, the GIL released while waiting), and a 10,000-
    parameter statement costs it twice the CPU (it rewrites the placeholders in Python).
    """

    def __init__(self, model: type[models.Model]) -> None:
        self.model = model
        self._sql: dict[str, tuple[str, str, str]] = {}  # vendor -> head, one row, suffix

    def insert(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        # The real connection, not the `django.db.connection` proxy: each attribute access on
        # the proxy is a thread-local lookup, and this loop makes thousands of them.
        db = connections[DEFAULT_DB_ALIAS]
        fields = self.model._meta.concrete_fields
        parts = self._sql.get(db.vendor)
        if parts is None:
            parts = self._sql[db.vendor] = _insert_sql(db, self.model, fields)
        head, one_row, suffix = parts
        columns = [
            (
                field.attname,
                None
                if field.get_internal_type() in _PLAIN_TYPES
                else functools.partial(field.get_db_prep_save, connection=db),
                field,
            )
            for field in fields
        ]
        params: list[Any] = []
        for record in records:
            for name, adapt, field in columns:
                value = record[name] if name in record else field.get_default()
                params.append(value if adapt is None else adapt(value))
        width = len(columns)
        if db.vendor != "sqlite":
            rows = [params[i : i + width] for i in range(0, len(params), width)]
            with db.cursor() as cursor:
                cursor.executemany(f"{head} {one_row} {suffix}", rows)
            return
        # Power-of-two chunks (256, 128, ..., 1 rows): sqlite3 caches every distinct statement
        # it prepares (128 per connection), and one per batch size made the process grow by
        # ~150 MB in a minute; this way there are at most nine.
        limit = max(1, min(MAX_ROWS_PER_STATEMENT, _max_params(db) // width))
        first = 0
        with db.cursor() as cursor:
            while first < len(records):
                count = 1 << (min(limit, len(records) - first).bit_length() - 1)
                sql = f"{head} {', '.join([one_row] * count)} {suffix}"
                cursor.execute(sql, params[first * width : (first + count) * width])
                first += count


def _insert_sql(
    db: BaseDatabaseWrapper, model: type[models.Model], fields: Any
) -> tuple[str, str, str]:
    ops = db.ops
    head = " ".join(
        [
            ops.insert_statement(on_conflict=OnConflict.IGNORE),
            ops.quote_name(model._meta.db_table),
            "(" + ", ".join(ops.quote_name(str(f.column)) for f in fields) + ")",
            "VALUES",
        ]
    )
    one_row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    return head, one_row, ops.on_conflict_suffix_sql(fields, OnConflict.IGNORE, None, None) or ""


def _max_params(db: BaseDatabaseWrapper) -> int:
    """Bind parameters one SQLite statement may carry (a build option: ask the library)."""
    db.ensure_connection()
    try:
        return int(db.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
    except AttributeError:  # Python < 3.11
        return 999


# Field types whose Python values (str, int, float, bool, None) the drivers take as they are.
_PLAIN_TYPES = frozenset(
    {
        "CharField",
        "TextField",
        "IntegerField",
        "BigIntegerField",
        "SmallIntegerField",
        "PositiveIntegerField",
        "PositiveSmallIntegerField",
        "PositiveBigIntegerField",
        "FloatField",
        "BooleanField",
    }
)
_REQUESTS = _RowInserter(RequestLog)
_MCP_CALLS = _RowInserter(McpToolCall)


def _stored_ids(batch: list[tuple[str, dict[str, Any]]]) -> set[str]:
    """The ids in `batch` already in the database (normally none: only a replay has some).

    Raw SQL: the ORM's `id__in` prepared each of the ~500 ids through the field (~2% of the
    gateway's CPU under load).
    """
    db = connections[DEFAULT_DB_ALIAS]
    native = db.features.has_native_uuid_field
    qn = db.ops.quote_name
    found: set[str] = set()
    for model, kind in ((RequestLog, "request"), (McpToolCall, "mcp")):
        ids = [r["id"] for k, r in batch if k == kind]
        if not ids:
            continue
        ids = [i if isinstance(i, uuid.UUID) else uuid.UUID(str(i)) for i in ids]
        pk = qn(str(model._meta.pk.column))
        sql = (
            f"SELECT {pk} FROM {qn(model._meta.db_table)} "  # noqa: S608 - fixed names
            f"WHERE {pk} IN ({', '.join(['%s'] * len(ids))})"
        )
        with db.cursor() as cursor:
            cursor.execute(sql, ids if native else [i.hex for i in ids])
            found.update(str(uuid.UUID(str(row[0]))) for row in cursor.fetchall())
    return found


@contextlib.contextmanager
def _spool_lock(spool_dir: Path) -> Iterator[bool]:
    """Try to hold the spool dir's replay lock (flock): yields whether this process has it.

    The lock file lives beside the spool dir, not in it: never deleted (that would race), and
    the spool dir stays empty once replayed.
    """
    with spool_dir.with_name(f"{spool_dir.name}.lock").open("a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class LogWriter:
    """Queue -> batches -> database, with a local spool for database outages."""

    def __init__(
        self,
        spool_dir: Path | None = None,
        insert: Callable[..., None] = _insert,
        max_queued: int = 0,  # 0: unbounded (`enqueue`); else `put` waits for room
    ) -> None:
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(max_queued)
        self.spool_dir = spool_dir or Path(settings.VAR_DIR) / "spool"
        self._insert = insert
        self._last_replay = 0.0

    def enqueue(self, kind: str, record: dict[str, Any]) -> None:
        """Hand a record over; never blocks the request."""
        self.queue.put_nowait((kind, record))

    async def put(self, kind: str, record: dict[str, Any]) -> None:
        """Hand a record over, waiting while `max_queued` records wait to be written."""
        await self.queue.put((kind, record))

    def queued(self) -> int:
        """Records waiting to be written."""
        return self.queue.qsize()

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
        spool_lines(self.spool_dir, [encode(kind, record) for kind, record in batch])

    def _replay(self) -> int:
        """Insert spooled files, oldest first; delete each once written. Returns records done.

        Processes sharing a var dir (`--workers N`) take turns, under a lock on the spool dir.
        Without it two could replay one file at once (folding it into the rollups twice), and
        the one that then found the file gone raised, which ended its process's writer task:
        every later record of that process was lost (tests/faults: shared var dir).
        """
        done = 0
        if not self.spool_dir.is_dir():
            return 0
        with _spool_lock(self.spool_dir) as mine:
            if not mine:
                return 0  # another process is replaying this spool right now
            for path in sorted(self.spool_dir.glob("logs-*.jsonl")):
                lines = [decode(x) for x in path.read_bytes().splitlines() if x]
                self._insert(lines)
                path.unlink()
                done += len(lines)
        return done

    async def replay_spool(self) -> None:
        """Write spooled records back once the database answers."""
        try:
            count = await db.run(self._replay)
        except DatabaseError:
            return
        except (OSError, ValueError, KeyError):  # a damaged spool must not stop the writer
            logger.exception("request logs: spool replay failed; retrying later")
            return
        if count:
            logger.info("request logs: replayed %d spooled record(s)", count)

    async def run(self, stop: asyncio.Event) -> None:
        """The background loop: write every interval until `stop`, then flush everything."""
        await self.replay_spool()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=INTERVAL_SECONDS)
            # Every full batch queued, not just one: one batch of 500 per 0.2 s capped the
            # writer at 2,500 records/s, and past that (one worker did ~3,800 calls/s under
            # the benchmark) the queue, and the process's memory, grew without bound.
            while True:
                batch = self._drain()
                written = await self.write_batch(batch)
                if not written or len(batch) < BATCH_SIZE:
                    break
            if written and time.monotonic() - self._last_replay > 5:
                self._last_replay = time.monotonic()
                await self.replay_spool()
        await self.flush()

    async def flush(self) -> None:
        """Write (or spool) everything queued."""
        while not self.queue.empty():
            await self.write_batch(self._drain())
