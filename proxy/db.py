"""Database work for the async proxy runs on a small dedicated thread pool, never on the loop.

A dedicated pool (not asyncio's default) lets shutdown close every thread's connection.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from django.db import close_old_connections, connections

P = ParamSpec("P")
T = TypeVar("T")
THREADS = 4

_executor: ThreadPoolExecutor | None = None


def _fresh(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
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
    for _ in range(THREADS):
        executor.submit(connections.close_all)
    executor.shutdown(wait=True)
