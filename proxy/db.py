"""Database work for the async proxy runs on a small dedicated thread pool, never on the loop.

A dedicated pool (not asyncio's default) lets shutdown close every thread's connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from django.db import DEFAULT_DB_ALIAS, close_old_connections, connections

P = ParamSpec("P")
T = TypeVar("T")
THREADS = 4

_executor: ThreadPoolExecutor | None = None


def _fresh(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    db = connections[DEFAULT_DB_ALIAS]
    if db.vendor == "sqlite":
        # Embedded SQLite has no CONN_MAX_AGE (0: a connection per request, right for web
        # requests), which made these threads reconnect, re-running the WAL pragmas, on every
        # log batch and auth poll (~2% of the gateway's CPU under load). A local file needs no
        # ageing: keep it; broken connections are still dropped below.
        db.close_at = None
    close_old_connections()  # drop connections that broke or aged out, as Django's requests do
    return fn(*args, **kwargs)


async def run(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run `fn` on the proxy's database threads."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="proxy-db")
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor, functools.partial(_fresh, fn, *args, **kwargs))


def shutdown() -> None:
    """Close each thread's connections and stop the threads."""
    global _executor
    executor, _executor = _executor, None
    if executor is None:
        return
    # Every thread must close its own connections: a barrier keeps each task on its own thread.
    barrier = threading.Barrier(THREADS, timeout=10)

    def close_mine() -> None:
        connections.close_all()
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()

    for _ in range(THREADS):
        executor.submit(close_mine)
    executor.shutdown(wait=True)
