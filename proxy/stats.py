"""Process statistics for soak runs: asyncio tasks, open file descriptors, queued log records.

Off unless `GATEWAY_STATS_DIR` is set: then each worker process writes `<dir>/<pid>.json` every
`GATEWAY_STATS_SECONDS` (atomically, by rename), which `bench/soak.py` reads to tell whether the
gateway's resources stay flat under a steady load. Nothing is served over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings


def open_fds() -> int:
    """File descriptors this process holds (sockets included)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def snapshot(queued_logs: int) -> dict[str, float | int]:
    return {
        "pid": os.getpid(),
        "at": time.time(),
        "tasks": len(asyncio.all_tasks()),
        "fds": open_fds(),
        "queued_logs": queued_logs,
    }


def write_atomically(path: Path, payload: dict[str, float | int]) -> None:
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(payload))
    partial.replace(path)


async def report(queued_logs: Callable[[], int], stop: asyncio.Event) -> None:
    """Write this process's statistics until `stop` (returns at once when stats are off)."""
    directory = settings.GATEWAY_STATS_DIR
    if not directory:
        return
    path = Path(directory) / f"{os.getpid()}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    interval = float(settings.GATEWAY_STATS_SECONDS)
    while not stop.is_set():
        with contextlib.suppress(OSError):
            write_atomically(path, snapshot(queued_logs()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
