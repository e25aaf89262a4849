#!/usr/bin/env python3
"""CPU per request-log record in the log writer's thread, against the ORM way it replaced.

The writer's thread shares the GIL with the proxy's event loop, so its Python time per record
is time the loop may wait for (README "Benchmark"). For batches of 500 records shaped like the
proxy's, this measures CPU time of the calling thread (`time.thread_time`, median of 10
batches) per record for:

- `_insert`: the whole batch write (stored-id check, row insert, rollup fold and upsert);
- `rows: raw insert` (what `_insert` uses) vs `rows: bulk_create` (model instances and
  `QuerySet.bulk_create(ignore_conflicts=True)`, what it used before);
- `fold` (dataaccess.rollups) vs `fold: per-record rows` (folding `_model_row` per record
  and granularity, what it did before);
- `stored ids: raw SQL` vs `stored ids: ORM id__in`.

    .venv/bin/python bench/logwriter_bench.py                      # embedded SQLite (temp)
    .venv/bin/python bench/logwriter_bench.py --database-url postgres://postgres@127.0.0.1:5432/gw_lw

The database must be empty or a throw-away one: it is migrated and written to.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BATCH = 500
REPEATS = 10

Batch = list[tuple[str, dict[str, Any]]]


def record() -> dict[str, Any]:
    """A record as proxy.llm builds it for a logged chat completion."""
    from django.utils import timezone

    return {
        "id": uuid.uuid4(),
        "started_at": timezone.now(),
        "endpoint": "chat/completions",
        "requested_model": "bench-openai/gpt-4o-mini",
        "status": 200,
        "error_type": "",
        "streaming": False,
        "input_tokens": 2,
        "output_tokens": 4,
        "metadata": {},
        "caller_type": "user",
        "caller_id": 1,
        "caller_name": "bench@example.com",
        "team_ids": "|",
        "teams": [],
        "provider_account": "bench-openai",
        "provider_model": "gpt-4o-mini",
        "ttft_ms": 0.81,
        "request_body": '{"model":"bench-openai/gpt-4o-mini","messages":[{"role":"user",'
        '"content":"hello bench"}]}',
        "response_body": '{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,'
        '"message":{"role":"assistant","content":"echo: hello bench"}}],'
        '"usage":{"prompt_tokens":2,"completion_tokens":4}}',
        "cost_usd": 0.0,
        "latency_ms": 0.9,
    }


def per_record_us(work: Callable[[Batch], object], atomic: bool) -> float:
    from django.db import transaction

    samples = []
    for _ in range(REPEATS):
        batch = [("request", record()) for _ in range(BATCH)]
        started = time.thread_time()
        if atomic:
            with transaction.atomic():
                work(batch)
        else:
            work(batch)
        samples.append((time.thread_time() - started) / BATCH * 1e6)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--database-url", default="", help="default: a temporary SQLite file")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    os.environ["GATEWAY_VAR_DIR"] = tempfile.mkdtemp(prefix="logwriter-bench-")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")
    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
    else:
        os.environ.pop("DATABASE_URL", None)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from dataaccess import rollups
    from proxy import logwriter
    from proxy.models import RequestLog

    call_command("migrate", verbosity=0)

    def bulk_create(batch: Batch) -> None:
        RequestLog.objects.bulk_create([RequestLog(**r) for _, r in batch], ignore_conflicts=True)

    def fold_per_record_rows(batch: Batch) -> None:
        out: dict[tuple[Any, ...], dict[str, Any]] = {}
        for kind, item in batch:
            base = rollups._model_row(kind, item)
            for granularity in ("minute", "hour"):
                bucket = rollups._bucket(item["started_at"], granularity)
                row = {**base, "granularity": granularity, "bucket": bucket}
                key = tuple(row[f] for f in rollups.KEY_FIELDS)
                if key in out:
                    for name in rollups.SUM_FIELDS:
                        out[key][name] += row[name]
                else:
                    out[key] = row

    def stored_ids_orm(batch: Batch) -> None:
        ids = [r["id"] for _, r in batch]
        list(RequestLog.objects.filter(id__in=ids).values_list("id", flat=True))

    cases: list[tuple[str, Callable[[Batch], object], bool]] = [
        ("_insert (whole batch)", logwriter._insert, False),
        ("rows: raw insert", lambda b: logwriter._REQUESTS.insert([r for _, r in b]), True),
        ("rows: bulk_create", bulk_create, True),
        ("fold", rollups.fold, False),
        ("fold: per-record rows", fold_per_record_rows, False),
        ("stored ids: raw SQL", logwriter._stored_ids, True),
        ("stored ids: ORM id__in", stored_ids_orm, True),
    ]
    out = sys.stdout
    out.write(f"Log writer, {connection.vendor}; CPU µs per record, batches of {BATCH}:\n\n")
    out.write("| step | CPU µs/record |\n|---|---|\n")
    for name, work, atomic in cases:
        out.write(f"| {name} | {per_record_us(work, atomic):.1f} |\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
