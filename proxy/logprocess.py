"""The request-log writer as a process of its own, beside each proxy worker (the default).

Why: the writer's ~50 µs of CPU per record (row parameters, rollup folding, the driver binding
thousands of parameters) ran in bursts every 0.2 s in a thread of the worker, and calls that
needed a CPU during a burst waited for it: at one connection that was most of the proxy's p99
overhead. Shorter batch intervals did not help, nor did a separate process at normal priority
or at nice 19; a process at idle scheduling priority (SCHED_IDLE: any other runnable task
preempts it at once) did (README, Benchmark, "The writer is a process at idle priority").

The worker serialises each record (one `json.dumps`, on its event loop) and writes the lines
to the writer's pipe every `SEND_DELAY_SECONDS`; the writer process runs
`proxy.logwriter.LogWriter` (batches, rollups, spool, replay). When the machine's CPUs are
saturated the idle-priority writer falls behind: it stops reading past `MAX_QUEUED` records,
the pipe backs up, and the worker spools what it could not hand over within
`SPOOL_AFTER_SECONDS` to the same spool directory, which the writer replays once it runs
again. Memory stays bounded and nothing is dropped; logs are late by as long as the
saturation lasts.

Lifecycle: the worker starts the writer with its lifespan and, at shutdown, closes the pipe;
the writer writes (or spools) everything it has and exits, and the worker waits for that. The
writer ignores SIGINT and SIGTERM (a Ctrl-C or `kill` of the process group must not cut its
flush short) and stops at the end of its input, so a worker killed with `kill -9` loses only
the lines it had not yet sent (`SEND_DELAY_SECONDS`): the writer still writes what it
received. A writer that dies is replaced within `RESTART_DELAY_SECONDS`; what it held (see
`KILL_LOSS_WINDOW_SECONDS`) is lost, as with a `kill -9` of a writer thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from django.conf import settings

from proxy import db, logwriter, stats
from proxy.logwriter import LogWriter, decode, encode, spool_lines

logger = logging.getLogger(__name__)

# Lines gathered per pipe write. Writing each record as it came (one write per loop
# iteration) cost 30% more CPU per call at one connection (a writer wake-up per record).
SEND_DELAY_SECONDS = 0.01
PIPE_BUFFER_LIMIT_BYTES = 256 * 1024  # unsent bytes the worker lets queue on a slow pipe
SPOOL_AFTER_SECONDS = 1.0  # lines the writer has not taken by then go to the spool
MAX_QUEUED = 2 * logwriter.BATCH_SIZE  # records the writer holds before it stops reading
RESTART_DELAY_SECONDS = 1.0
STOP_TIMEOUT_SECONDS = 25.0  # the lifespan waits 30 s for each background task
MAX_LINE_BYTES = 1 << 30  # a record carries at most two logged bodies (GATEWAY_MAX_BODY_BYTES)
# A `kill -9` of the worker and its writer loses at most the calls answered this long before:
# those in the writer's hands (logwriter's window) and the lines not yet sent to it.
KILL_LOSS_WINDOW_SECONDS = logwriter.KILL_LOSS_WINDOW_SECONDS + SEND_DELAY_SECONDS


class LogProcess:
    """The worker's side: serialise records and hand them to the writer process."""

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        spool_dir: Path | None = None,
        command: Sequence[str] = (sys.executable, "-m", "proxy.logprocess_main"),
    ) -> None:
        self.env = dict(env) if env is not None else None  # None: this process's environment
        self.command = list(command)
        self.spool_dir = spool_dir or Path(settings.VAR_DIR) / "spool"
        self.process: asyncio.subprocess.Process | None = None
        self._pending: list[bytes] = []
        self._pending_since = 0.0
        self._send_scheduled = False
        self._spooling: set[asyncio.Future[None]] = set()

    def enqueue(self, kind: str, record: dict[str, Any]) -> None:
        """Hand a record over; never blocks the request."""
        try:
            line = encode(kind, record)
        except (TypeError, ValueError):  # a bug in what the proxy recorded: say so, loudly
            logger.exception("request logs: cannot serialise a %s record; not logged", kind)
            return
        if not self._pending:
            self._pending_since = time.monotonic()
        self._pending.append(line)
        self._schedule_send()

    def queued(self) -> int:
        """Records serialised but not yet written to the writer's pipe."""
        return len(self._pending)

    def _schedule_send(self) -> None:
        if not self._send_scheduled:
            self._send_scheduled = True
            asyncio.get_running_loop().call_later(SEND_DELAY_SECONDS, self._send)

    def _send(self) -> None:
        self._send_scheduled = False
        if not self._pending:
            return
        stdin = self._open_stdin()
        if stdin is not None:
            self._write_some(stdin)
            if not self._pending:
                return
        if time.monotonic() - self._pending_since >= SPOOL_AFTER_SECONDS:
            self._spool_pending()
        else:
            self._schedule_send()

    def _write_some(self, stdin: asyncio.StreamWriter) -> None:
        """Write pending lines while the pipe's unsent bytes stay under the limit."""
        room = PIPE_BUFFER_LIMIT_BYTES - stdin.transport.get_write_buffer_size()
        count = 0
        for line in self._pending:
            if room <= 0:
                break
            room -= len(line)
            count += 1
        if count:
            stdin.write(b"".join(self._pending[:count]))
            del self._pending[:count]
            self._pending_since = time.monotonic()  # the rest waits from now on

    def _open_stdin(self) -> asyncio.StreamWriter | None:
        """The writer's pipe, when a writer is running and the pipe open."""
        process = self.process
        if process is None or process.returncode is not None or process.stdin is None:
            return None
        return None if process.stdin.is_closing() else process.stdin

    def _spool_pending(self) -> None:
        """Spool the pending lines from a thread: the writer could not take them in time."""
        lines, self._pending = self._pending, []
        future = asyncio.get_running_loop().run_in_executor(
            None, spool_lines, self.spool_dir, lines
        )
        self._spooling.add(future)
        future.add_done_callback(lambda done: self._spooled(done, lines))

    def _spooled(self, future: asyncio.Future[None], lines: list[bytes]) -> None:
        self._spooling.discard(future)
        if future.cancelled() or future.exception() is None:
            return
        logger.error("request logs: cannot spool %d record(s): %s", len(lines), future.exception())
        if not self._pending:
            self._pending_since = time.monotonic()
        self._pending[:0] = lines  # kept, and tried again
        self._schedule_send()

    async def run(self, stop: asyncio.Event) -> None:
        """Keep a writer running until `stop`; then let it finish and wait for it."""
        while not stop.is_set():
            process = await self._start()  # also self.process, for _send
            if process is None or await _exits_before(process, stop):
                code = None if process is None else process.returncode
                self.process = None
                logger.error("request logs: the writer process exited (code %s); restarting", code)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=RESTART_DELAY_SECONDS)
        await self._finish()

    async def _start(self) -> asyncio.subprocess.Process | None:
        try:
            process = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.PIPE,
                env=self.env,
                cwd=settings.BASE_DIR,
            )
        except OSError:
            logger.exception("request logs: cannot start the writer process")
            return None
        self.process = process
        self._send()  # what queued while no writer ran
        return process

    async def _finish(self) -> None:
        """Close the pipe and wait for the writer to write everything; spool if none can."""
        if self._spooling:
            await asyncio.gather(*self._spooling, return_exceptions=True)
        if self._pending and self._open_stdin() is None:
            await self._start()
        stdin = self._open_stdin()
        if stdin is None:
            if self._pending:
                spool_lines(self.spool_dir, self._pending)  # replayed by the next writer
                self._pending.clear()
            return
        if self._pending:
            stdin.write(b"".join(self._pending))
            self._pending.clear()
        stdin.close()  # end of input: the writer writes what it has and exits
        await self._wait_for_exit()

    async def _wait_for_exit(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        try:
            await asyncio.wait_for(process.wait(), timeout=STOP_TIMEOUT_SECONDS)
        except TimeoutError:
            logger.error("request logs: writer pid %d still writing; left running", process.pid)
            return
        if process.returncode:
            logger.error("request logs: the writer exited with code %s", process.returncode)


async def _exits_before(process: asyncio.subprocess.Process, stop: asyncio.Event) -> bool:
    """Wait for the process to exit or `stop`, whichever is first: True when it exited."""
    exited = asyncio.ensure_future(process.wait())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if exited.done():
        return True
    exited.cancel()
    return False


def new_log_sink() -> LogWriter | LogProcess:
    """The request-log writer `GATEWAY_LOG_WRITER` selects."""
    return LogProcess() if settings.GATEWAY_LOG_WRITER == "process" else LogWriter()


# --- the writer process ---------------------------------------------------------------------


def lower_priority() -> None:
    """Idle scheduling priority: never in the way of the workers (Linux), else nice 19."""
    if hasattr(os, "SCHED_IDLE"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return
    with contextlib.suppress(OSError):
        os.nice(19)


async def write_from(reader: asyncio.StreamReader, writer: LogWriter) -> None:
    """Feed `writer` every record read until end of input, then let it flush, and return."""
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(writer.run(stop)),
        asyncio.create_task(stats.report(writer.queued, stop)),
    ]
    try:
        while line := await reader.readline():
            # Waits while MAX_QUEUED records are queued: the pipe backs up, the worker spools.
            await put_line(writer, line)
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def put_line(writer: LogWriter, line: bytes) -> None:
    if not line.endswith(b"\n"):  # the worker died mid-write: the rest never comes
        logger.warning("request logs: dropped a record cut short (%d bytes)", len(line))
        return
    try:
        kind, record = decode(line)
    except (ValueError, KeyError, TypeError):
        logger.warning("request logs: dropped a damaged record (%d bytes)", len(line))
        return
    await writer.put(kind, record)


async def serve_stdin() -> None:
    """The writer process's work: records from standard input to the database."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_LINE_BYTES)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    try:
        await write_from(reader, LogWriter(max_queued=MAX_QUEUED))
    finally:
        await loop.run_in_executor(None, db.shutdown)
