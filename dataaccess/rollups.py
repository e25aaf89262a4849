"""Keeping rollups current: each batch of log records is folded into minute and hour rows.

The fold runs in the log writer's thread, inside the same transaction as the raw insert, with
one additive upsert per (bucket, dimensions) key: `INSERT ... ON CONFLICT DO UPDATE SET
requests = requests + excluded.requests, ...` (PostgreSQL and SQLite >= 3.24 both speak it).
"""

from __future__ import annotations

import hashlib
import json
from bisect import bisect_left
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import connection
from django.utils import timezone

from dataaccess.models import HISTOGRAM_FIELDS, LATENCY_BOUNDS_MS, TTFT_FIELDS, Rollup

KEY_FIELDS = (
    "granularity",
    "bucket",
    "kind",
    "provider_account",
    "model",
    "caller_type",
    "caller_id",
    "team_ids",
    "metadata_key",
    "status_class",
    "error_type",
)
INFO_FIELDS = ("caller_name", "teams", "metadata")
SUM_FIELDS = (
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "latency_ms_sum",
    "ttft_ms_sum",
    "ttft_count",
    *HISTOGRAM_FIELDS,
    *TTFT_FIELDS,
)


def _bucket(moment: datetime, granularity: str) -> datetime:
    moment = moment.replace(second=0, microsecond=0)
    return moment.replace(minute=0) if granularity == "hour" else moment


def _status_class(status: int) -> str:
    if status < 400:
        return "ok"
    return "4xx" if status < 500 else "5xx"


def _histogram_index(value_ms: float) -> int:
    return bisect_left(LATENCY_BOUNDS_MS, value_ms)


def _metadata_key(metadata: dict[str, Any]) -> str:
    canonical = json.dumps(metadata or {}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _model_row(kind: str, record: dict[str, Any]) -> dict[str, Any]:
    status = record["status"]
    status = 200 if status == "ok" else (500 if status in ("error", "denied") else int(status))
    if kind == "mcp":
        model = f"{record['server']}.{record['tool']}"
        account, error_type, tokens = "", record.get("error", "")[:64], (0, 0)
        cost, ttft = 0.0, None
    else:
        model = record["requested_model"]
        account, error_type = record.get("provider_account", ""), record.get("error_type", "")
        tokens = (record.get("input_tokens", 0), record.get("output_tokens", 0))
        cost, ttft = float(record.get("cost_usd") or 0), record.get("ttft_ms")
    latency = float(record.get("latency_ms") or 0)
    row: dict[str, Any] = {
        "kind": "mcp" if kind == "mcp" else "model",
        "provider_account": account,
        "model": model,
        "caller_type": record["caller_type"],
        "caller_id": record["caller_id"],
        "caller_name": record["caller_name"],
        "team_ids": record.get("team_ids", "|"),
        "teams": record.get("teams", []),
        "metadata": record.get("metadata") or {},
        "metadata_key": _metadata_key(record.get("metadata") or {}),
        "status_class": _status_class(status),
        "error_type": error_type,
        "requests": 1,
        "errors": int(status >= 400),
        "input_tokens": tokens[0],
        "output_tokens": tokens[1],
        "cost_usd": cost,
        "latency_ms_sum": latency,
        "ttft_ms_sum": float(ttft or 0),
        "ttft_count": int(ttft is not None),
    }
    row.update(dict.fromkeys((*HISTOGRAM_FIELDS, *TTFT_FIELDS), 0))
    row[HISTOGRAM_FIELDS[_histogram_index(latency)]] = 1
    if ttft is not None:
        row[TTFT_FIELDS[_histogram_index(float(ttft))]] = 1
    return row


def fold(records: Iterable[tuple[str, dict[str, Any]]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Aggregate records per rollup key, for both granularities.

    Same result as folding `_model_row(kind, record)` per record, but without building a
    full ~50-field row per record and granularity: the key is built first, a row is made only
    for a key not seen yet in the batch, and a record then adds its few non-zero sums (one
    latency and one TTFT histogram slot). It runs in the log writer's thread, holding the GIL
    the event loop needs: this cut its CPU per record by ~3x (bench/logwriter_bench.py).
    """
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    metadata_keys: dict[str, str] = {}  # canonical metadata JSON -> key: the hash once a batch
    for kind, record in records:
        status = record["status"]
        status = 200 if status == "ok" else (500 if status in ("error", "denied") else int(status))
        if kind == "mcp":
            model = f"{record['server']}.{record['tool']}"
            account, error_type = "", record.get("error", "")[:64]
            input_tokens = output_tokens = 0
            cost, ttft = 0.0, None
        else:
            model = record["requested_model"]
            account, error_type = record.get("provider_account", ""), record.get("error_type", "")
            input_tokens = record.get("input_tokens", 0)
            output_tokens = record.get("output_tokens", 0)
            cost, ttft = float(record.get("cost_usd") or 0), record.get("ttft_ms")
        latency = float(record.get("latency_ms") or 0)
        metadata = record.get("metadata") or {}
        if metadata:
            canonical = json.dumps(metadata, sort_keys=True, separators=(",", ":"))
            metadata_key = metadata_keys.get(canonical)
            if metadata_key is None:
                metadata_key = metadata_keys[canonical] = _metadata_key(metadata)
        else:
            metadata_key = _EMPTY_METADATA_KEY
        dimensions = (
            "mcp" if kind == "mcp" else "model",
            account,
            model,
            record["caller_type"],
            record["caller_id"],
            record.get("team_ids", "|"),
            metadata_key,
            _status_class(status),
            error_type,
        )
        error = int(status >= 400)
        latency_slot = HISTOGRAM_FIELDS[_histogram_index(latency)]
        ttft_ms = None if ttft is None else float(ttft)
        ttft_slot = None if ttft_ms is None else TTFT_FIELDS[_histogram_index(ttft_ms)]
        minute = record["started_at"].replace(second=0, microsecond=0)
        for granularity, bucket in (("minute", minute), ("hour", minute.replace(minute=0))):
            key = (granularity, bucket, *dimensions)
            row = out.get(key)
            if row is None:
                row = dict(zip(KEY_FIELDS, key, strict=True))
                row.update(
                    caller_name=record["caller_name"],
                    teams=record.get("teams", []),
                    metadata=metadata,
                )
                row.update(_ZERO_SUMS)
                out[key] = row
            row["requests"] += 1
            row["errors"] += error
            row["input_tokens"] += input_tokens
            row["output_tokens"] += output_tokens
            row["cost_usd"] += cost
            row["latency_ms_sum"] += latency
            row[latency_slot] += 1
            if ttft_ms is not None and ttft_slot is not None:
                row["ttft_ms_sum"] += ttft_ms
                row["ttft_count"] += 1
                row[ttft_slot] += 1
    return out


_ZERO_SUMS: dict[str, Any] = {
    **dict.fromkeys(SUM_FIELDS, 0),
    "cost_usd": 0.0,
    "latency_ms_sum": 0.0,
    "ttft_ms_sum": 0.0,
}
_EMPTY_METADATA_KEY = _metadata_key({})


def upsert(rows: Iterable[dict[str, Any]]) -> None:
    """Add each row's sums to its rollup (creating it if new), in the caller's transaction."""
    rows = list(rows)
    if not rows:
        return
    table = Rollup._meta.db_table
    columns = [*KEY_FIELDS, *INFO_FIELDS, *SUM_FIELDS, "updated_at"]
    placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
    updates = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in SUM_FIELDS)
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES {placeholders} "  # noqa: S608 - fixed names
        f"ON CONFLICT ({', '.join(KEY_FIELDS)}) DO UPDATE SET {updates}, "
        f"updated_at = excluded.updated_at"
    )
    ops = connection.ops
    now = ops.adapt_datetimefield_value(timezone.now())
    params = [
        [
            *(
                ops.adapt_datetimefield_value(row[c]) if c == "bucket" else row[c]
                for c in KEY_FIELDS
            ),
            row["caller_name"],
            json.dumps(row["teams"]),
            json.dumps(row["metadata"]),
            *(row[c] for c in SUM_FIELDS),
            now,
        ]
        for row in rows
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)
