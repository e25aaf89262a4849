"""A lean HTTP/1.1 transport under the proxy's shared `httpx.AsyncClient`.

Why not httpx's default transport (httpcore): profiled under the benchmark (README
"Benchmark"), httpcore's pool dominated the event loop. On every request *and* every response
close, `AsyncConnectionPool._assign_requests_to_connections` walks every pooled connection,
polls each idle socket (`has_expired` -> `is_socket_readable`, through anyio's typed
attributes) and, for each idle one, counts all connections again: O(connections²) per call.
With 64 concurrent calls and a 50 ms provider it took ~10 ms of CPU per request and the gateway
collapsed to ~90 req/s (the provider alone does ~1,200). At 16 concurrent calls with a 0 ms
provider it was still ~45% of the loop's time.

This transport keeps httpx's API (the client, `Request`/`Response`, timeouts, exceptions), and
replaces only the pool and the HTTP/1.1 exchange:

- per origin, a LIFO stack of idle connections: acquire and release are O(1); the least
  recently used end is expired lazily (keep-alive expiry, 5 s as httpx's default);
- each connection is an `asyncio.Protocol` that always reads, so a peer that closes an idle
  connection is noticed by the loop (`connection_lost`) instead of by polling sockets;
- responses are parsed by httptools (llhttp, in C), which uvicorn[standard] already brings and
  `gateway serve` already runs on (`--http httptools`): no new dependency;
- a request's head and body leave in one `write`.

Scope: HTTP/1.1 over TCP or TLS (httpx's default certifi context), no proxies (the client is
built with trust_env=False), no HTTP/2, no `Expect: 100-continue`. Failures are httpx's own
exceptions (ConnectError, ConnectTimeout, ReadTimeout, WriteTimeout, PoolTimeout, ReadError,
RemoteProtocolError, LocalProtocolError), so callers keep catching `httpx.TimeoutException` and
`httpx.TransportError`. As with httpcore, a request is never retried here: a keep-alive
connection the server closed at the same moment fails with RemoteProtocolError and the
caller's retry policy decides.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, cast

import httptools
import httpx

Origin = tuple[str, str, int]  # scheme, host, port

DEFAULT_PORTS = {"http": 80, "https": 443}
HIGH_WATER = 256 * 1024  # response bytes buffered before reading pauses
LOW_WATER = 64 * 1024
_BAD_HEADER_BYTES = (b"\r", b"\n", b"\0")


def _timeout(timeouts: dict[str, Any], name: str) -> float | None:
    value = timeouts.get(name)
    return None if value is None else float(value)


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection; one request at a time; fed by the event loop."""

    def __init__(self, pool: LeanTransport, origin: Origin) -> None:
        self.pool = pool
        self.origin = origin
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.active = False  # a request is in flight (not in the idle stack)
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._writing_paused = False
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.until_eof = False  # no length, not chunked: the body ends when the peer closes
        self.got_bytes = False
        self.error: httpx.TransportError | None = None
        self.chunks: deque[bytes] = deque()
        self.buffered = 0

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if not self.active:
            self.close()  # bytes nobody asked for: the connection cannot be trusted any more
            return
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.error = httpx.RemoteProtocolError(f"Invalid HTTP response: {exc}")
            self.close()
        if self.buffered > HIGH_WATER and not self._reading_paused and not self.closed:
            self._reading_paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]
        self._wake()

    def eof_received(self) -> bool | None:
        return None  # let the transport close; connection_lost ends what was in flight

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.active and not self.complete and self.error is None:
            if self.headers_done and self.until_eof:
                self.complete = True  # a body delimited by the close itself
            elif exc is not None:
                self.error = httpx.ReadError(str(exc) or type(exc).__name__)
            elif not self.got_bytes:
                self.error = httpx.RemoteProtocolError(
                    "Server disconnected without sending a response."
                )
            else:
                self.error = httpx.RemoteProtocolError(
                    "peer closed connection without sending complete message body"
                )
        self._wake()
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)
        self.pool._forget(self)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    # -- httptools callbacks --------------------------------------------------------------

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:
            return  # an interim 1xx answer: the real one follows
        self.status = status
        self.headers_done = True
        if status not in (204, 304):
            names = {name.lower() for name, _ in self.headers}
            self.until_eof = b"content-length" not in names and b"transfer-encoding" not in names

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)

    def on_message_complete(self) -> None:
        if not self.headers_done:  # the end of an interim answer
            self.headers.clear()
            self.reason = b""
            return
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()

    # -- the exchange ---------------------------------------------------------------------

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, limit: float | None, error: type[httpx.TimeoutException]) -> None:
        """Until the loop hands this connection bytes, an end or an error (or `limit` s).

        A timer on a future rather than asyncio.wait_for/timeout: no extra task or scope per
        wait on the hot path.
        """
        waiter = self.loop.create_future()
        self._waiter = waiter
        timer = None
        if limit is not None:
            timer = self.loop.call_later(limit, _expire, waiter)
        try:
            await waiter
        except TimeoutError as exc:
            raise error("Timed out waiting for the server.") from exc
        finally:
            if timer is not None:
                timer.cancel()

    async def send(self, request: httpx.Request, timeouts: dict[str, Any]) -> httpx.Response:
        self._reset()
        self.active = True
        transport = self.transport
        assert transport is not None  # noqa: S101 - set by connection_made
        head = [request.method.encode("ascii"), b" ", request.url.raw_path, b" HTTP/1.1\r\n"]
        chunked = False
        for name, value in request.headers.raw:
            if any(bad in name or bad in value for bad in _BAD_HEADER_BYTES):
                raise httpx.LocalProtocolError(f"Illegal header {name!r}.")
            if name.lower() == b"transfer-encoding" and value.lower() == b"chunked":
                chunked = True
            head += [name, b": ", value, b"\r\n"]
        head.append(b"\r\n")
        try:
            body = request.content  # bytes bodies are known (httpx reads ByteStream ahead)
        except httpx.RequestNotRead:
            transport.write(b"".join(head))
            await self._stream_body(request, chunked, _timeout(timeouts, "write"))
        else:
            head.append(body)
            transport.write(b"".join(head))
        if self._writing_paused:
            await self._drain(_timeout(timeouts, "write"))
        read_timeout = _timeout(timeouts, "read")
        while not self.headers_done:
            if self.error is not None:
                raise self.error
            if self.closed:
                raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
            await self.wait(read_timeout, httpx.ReadTimeout)
        if request.method == "HEAD":
            self.complete, self.keep_alive = True, False
        return httpx.Response(
            self.status,
            headers=self.headers,
            stream=_ResponseBody(self, read_timeout),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": self.reason},
        )

    async def _stream_body(
        self, request: httpx.Request, chunked: bool, limit: float | None
    ) -> None:
        transport = self.transport
        assert transport is not None  # noqa: S101
        stream: Any = request.stream
        async for part in stream:
            if self.closed:
                raise httpx.WriteError("The server closed the connection.")
            if part:
                transport.write(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
            if self._writing_paused:
                await self._drain(limit)
        if chunked:
            transport.write(b"0\r\n\r\n")

    async def _drain(self, limit: float | None) -> None:
        while self._writing_paused and not self.closed:
            drained = self.loop.create_future()
            self._drained = drained
            try:
                await asyncio.wait_for(drained, limit)
            except TimeoutError as exc:
                raise httpx.WriteTimeout("Timed out sending the request.") from exc
        if self.closed:
            raise httpx.WriteError("The server closed the connection.")

    def take(self) -> bytes:
        """Everything buffered (joined), resuming reading once the buffer is drained."""
        chunks = self.chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.buffered = 0
        if self._reading_paused and not self.closed:
            self._reading_paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]
        return data

    def finish(self) -> None:
        """The response is done with: reuse the connection if it can be, else close it."""
        if not self.active:
            return
        if self.complete and self.keep_alive and self.error is None and not self.closed:
            self.active = False
            self.chunks.clear()
            self.pool._release(self)
        else:
            self.close()  # while still active: it is in no idle stack
            self.active = False

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True
        self.pool._forget(self)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class _ResponseBody(httpx.AsyncByteStream):
    """The body as it arrives; the connection goes back to the pool when fully read/closed."""

    def __init__(self, connection: _Connection, read_timeout: float | None) -> None:
        self.connection = connection
        self.read_timeout = read_timeout
        self.done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self.connection
        try:
            while True:
                if connection.chunks:
                    yield connection.take()
                elif connection.complete:
                    break
                elif connection.error is not None:
                    raise connection.error
                elif connection.closed:
                    raise httpx.ReadError("The connection closed.")
                else:
                    await connection.wait(self.read_timeout, httpx.ReadTimeout)
        except BaseException:
            self.done = True
            connection.close()
            raise
        await self.aclose()

    async def aclose(self) -> None:
        if not self.done:
            self.done = True
            self.connection.finish()


class LeanTransport(httpx.AsyncBaseTransport):
    """Keep-alive pool: per origin a LIFO stack of idle connections (O(1) in and out)."""

    def __init__(
        self,
        *,
        max_connections: int = 2000,
        max_keepalive_connections: int = 500,
        keepalive_expiry: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.max_keepalive = max_keepalive_connections
        self.keepalive_expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self._idle: dict[Origin, deque[_Connection]] = {}
        self._idle_count = 0
        self._open: set[_Connection] = set()  # every open connection, idle or busy
        self._connecting = 0  # connections being opened, counted against the limit too
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"Unsupported URL protocol {scheme!r}.")
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        origin = (scheme, url.host, url.port or DEFAULT_PORTS[scheme])
        connection = await self._acquire(origin, timeouts)
        try:
            return await connection.send(request, timeouts)
        except BaseException:
            connection.active = True  # so finish() cannot pool it
            connection.close()
            raise

    async def _acquire(self, origin: Origin, timeouts: dict[str, Any]) -> _Connection:
        while True:
            stack = self._idle.get(origin)
            now = asyncio.get_running_loop().time()
            while stack:
                connection = stack.pop()
                self._idle_count -= 1
                if connection.closed or now - connection.idle_since > self.keepalive_expiry:
                    connection.close()
                    continue
                return connection
            if len(self._open) + self._connecting >= self.max_connections:
                self._close_one_idle()  # full of idle connections to other hosts: make room
            if len(self._open) + self._connecting < self.max_connections:
                return await self._connect(origin, _timeout(timeouts, "connect"))
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, _timeout(timeouts, "pool"))
            except TimeoutError as exc:
                raise httpx.PoolTimeout("No connection became free in time.") from exc
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    async def _connect(self, origin: Origin, limit: float | None) -> _Connection:
        scheme, host, port = origin
        ssl_context = None
        if scheme == "https":
            if self._ssl_context is None:
                self._ssl_context = httpx.create_ssl_context(trust_env=False)
            ssl_context = self._ssl_context
        loop = asyncio.get_running_loop()
        self._connecting += 1
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(self, origin),
                    host,
                    port,
                    ssl=ssl_context,
                    server_hostname=host if ssl_context else None,
                ),
                limit,
            )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"Timed out connecting to {host}:{port}.") from exc
        except OSError as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        finally:
            self._connecting -= 1
            self._wake_waiter()
        if not connection.closed:
            self._open.add(connection)
        return connection

    def _close_one_idle(self) -> None:
        for stack in self._idle.values():
            if stack:
                oldest = stack.popleft()
                self._idle_count -= 1
                oldest.close()
                return

    def _release(self, connection: _Connection) -> None:
        stack = self._idle.setdefault(connection.origin, deque())
        now = connection.loop.time()
        while stack and now - stack[0].idle_since > self.keepalive_expiry:
            stale = stack.popleft()  # the least recently used end: expire it now
            self._idle_count -= 1
            stale.close()
        if self._idle_count >= self.max_keepalive:
            connection.close()
            return
        connection.idle_since = now
        stack.append(connection)
        self._idle_count += 1
        self._wake_waiter()

    def _forget(self, connection: _Connection) -> None:
        """A connection closed: free its slot (and its idle entry, if it was idle)."""
        if connection not in self._open:
            return
        self._open.discard(connection)
        if not connection.active:
            stack = self._idle.get(connection.origin)
            if stack is not None and connection in stack:
                stack.remove(connection)
                self._idle_count -= 1
        self._wake_waiter()

    def _wake_waiter(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def aclose(self) -> None:
        for connection in list(self._open):
            connection.active = True
            connection.close()
        self._idle.clear()
        self._idle_count = 0
