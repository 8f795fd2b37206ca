"""The upstream client: pooled keep-alive HTTP/1.1 connections, responses parsed by llhttp.

The forward stage sends every request through one `UpstreamPool` per configured upstream.
It is a client for exactly what a reverse proxy needs, and nothing more: a request with an
already-validated target and headers goes out on an idle connection (or a new one, up to the
pool size), and the response comes back as a status, headers and a body that is read whole or
streamed with back-pressure. Parsing is httptools (the llhttp parser, strict: conflicting
Content-Length and Transfer-Encoding, bad chunking or obs-fold in a response are errors).
aiohttp's general-purpose ClientSession spent as much CPU per proxied request as the rest of
the gateway's own transport work; this client spends a fraction of it.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from urllib.parse import urlsplit

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.errors import ConfigError
from gateway.policy.catalog import Timeouts

# What a response may carry before it is refused: bounds a hostile or broken upstream.
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADERS = 128
TOO_MANY_HEADERS = "the upstream sent too many or too large headers"
# Body bytes buffered before the connection stops reading (resumed below LOW_WATER).
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024
KEEPALIVE_SECONDS = 30.0
# Requests that may be sent again when a reused connection turns out to be closed.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})
# Methods whose requests carry a body by definition: without one, `Content-Length: 0`.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class UpstreamFailure(Exception):
    """The upstream could not be reached or answered badly; `kind` is "error" or "timeout"."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class _Stale(UpstreamFailure):
    """A reused connection was closed by the upstream before any response byte came."""

    def __init__(self) -> None:
        super().__init__("error", "the upstream closed a kept-alive connection")


class _Connection(asyncio.Protocol):
    """One connection; it carries at most one exchange (request and response) at a time."""

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.idle_since = 0.0
        self.reused = False
        self.timer: asyncio.TimerHandle | None = None  # the total timeout of the exchange
        self.body_pending = False  # the request body is not all sent: never reused
        self._aborted = False  # closed by the gateway, not by the upstream
        self._loop = asyncio.get_running_loop()
        self._drained: asyncio.Future[None] | None = None
        self._reset()

    def _reset(self) -> None:
        self.response: UpstreamResponse | None = None
        self._head_only = False
        self._interim = False
        self._headers: list[tuple[str, str]] = []
        self._header_bytes = 0
        self._head_fed = 0  # bytes fed while the answer's headers are still incomplete
        self._got_bytes = False
        self._headers_done: asyncio.Future[UpstreamResponse] | None = None

    # -- asyncio callbacks ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        response = self.response
        if (response is None and self._headers_done is None) or (
            response is not None and response.complete
        ):
            # Bytes nobody asked for (on an idle connection, or after a whole answer): the
            # connection cannot be trusted any more.
            self.close()
            return
        self._got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            cause = exc.__context__ if isinstance(exc.__context__, UpstreamFailure) else None
            self._fail(cause or UpstreamFailure("error", f"malformed upstream response: {exc}"))
            self.close()
            return
        if self.response is None:
            # llhttp joins a header's pieces before `on_header` sees it: bound what an
            # unfinished header can grow to.
            self._head_fed += len(data)
            if self._head_fed > MAX_HEADER_BYTES:
                self._fail(UpstreamFailure("error", TOO_MANY_HEADERS))
                self.close()

    def eof_received(self) -> bool:
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.pool._lost(self)
        response = self.response
        if self._aborted:
            self._fail(UpstreamFailure("error", "the connection to the upstream was closed"))
        elif (
            exc is None and response is not None and response._until_close and not response.complete
        ):
            response._finish(keep_alive=False)  # the end of a close-delimited body
        elif self._headers_done is not None or (response is not None and not response.complete):
            if self.reused and not self._got_bytes:
                self._fail(_Stale())
            else:
                self._fail(UpstreamFailure("error", "the upstream closed the connection early"))
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def pause_writing(self) -> None:
        if self._drained is None or self._drained.done():
            self._drained = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # -- llhttp callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._headers_done is None:
            # An answer nobody asked for (bytes after the last one, in the same read).
            raise UpstreamFailure("error", "the upstream sent a response nobody asked for")
        self._headers = []
        self._header_bytes = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > MAX_HEADER_BYTES or len(self._headers) >= MAX_HEADERS:
            raise UpstreamFailure("error", TOO_MANY_HEADERS)
        self._headers.append((name.decode("latin-1"), value.decode("utf-8", "surrogateescape")))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if not 100 <= status <= 599:
            raise UpstreamFailure("error", f"the upstream sent an invalid status {status}")
        if 100 <= status < 200:
            if status == 101:
                raise UpstreamFailure("error", "the upstream switched protocols")
            self._interim = True  # 100 Continue, 103 Early Hints: the answer comes next
            return
        headers = CIMultiDictProxy(CIMultiDict(self._headers))
        response = UpstreamResponse(self, status, headers)
        self.response = response
        if self._head_only:
            # No body follows a HEAD answer; llhttp would wait for one, so the connection
            # is not used again.
            response._finish(keep_alive=False)
        else:
            response._until_close = (
                status not in (204, 304)
                and "content-length" not in headers
                and "transfer-encoding" not in headers
            )
        waiter, self._headers_done = self._headers_done, None
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    def on_body(self, body: bytes) -> None:
        if self.response is not None and not self._head_only:
            self.response._feed(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if self.response is not None and not self.response.complete:
            self.response._finish(keep_alive=self.parser.should_keep_alive())

    # -- the exchange -----------------------------------------------------------------------

    def _fail(self, failure: UpstreamFailure) -> None:
        waiter, self._headers_done = self._headers_done, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(failure)
        if self.response is not None:
            self.response._broken(failure)

    async def exchange(
        self,
        head: bytes,
        body: AsyncGenerator[bytes, None] | None,
        chunked: bool,
        head_only: bool,
        deadline: float,
    ) -> UpstreamResponse:
        transport = self.transport
        if transport is None or transport.is_closing():
            raise _Stale()
        self._reset()
        self._head_only = head_only
        waiter: asyncio.Future[UpstreamResponse] = self._loop.create_future()
        self._headers_done = waiter
        transport.write(head)
        try:
            if body is not None:
                # The total timeout covers the upload too: a client that stalls its body
                # must not hold an upstream connection.
                try:
                    async with asyncio.timeout_at(deadline):
                        await self._send_body(body, chunked)
                except TimeoutError:
                    raise UpstreamFailure(
                        "timeout", "the request body did not arrive in time"
                    ) from None
            return await waiter
        except BaseException:
            waiter.cancel()  # nobody will wait for the answer now
            raise

    async def _send_body(self, body: AsyncGenerator[bytes, None], chunked: bool) -> None:
        self.body_pending = True
        try:
            async for chunk in body:
                transport = self.transport
                if transport is None:
                    return  # lost: the response (or its absence) says what happened
                if self.response is not None and self.response.complete:
                    return  # answered already (an early refusal): the rest is not wanted
                if chunk:
                    transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                if self._drained is not None and not self._drained.done():
                    await self._drained
            if chunked and self.transport is not None:
                self.transport.write(b"0\r\n\r\n")
            self.body_pending = False
        finally:
            await body.aclose()

    def wake_sender(self) -> None:
        """The answer is complete: a body upload waiting for the socket to drain stops."""
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def close(self) -> None:
        self._aborted = True
        if self.transport is not None:
            self.transport.abort()


class UpstreamResponse:
    """The status and headers of an upstream answer; the body is read whole or streamed.

    `release()` must be called when done: the connection goes back to the pool if the body
    was read to its end and the upstream keeps it alive, and is closed otherwise."""

    __slots__ = (
        "_buffered",
        "_chunks",
        "_conn",
        "_failure",
        "_keep_alive",
        "_paused",
        "_released",
        "_until_close",
        "_wake",
        "complete",
        "content_length",
        "headers",
        "status",
    )

    def __init__(self, conn: _Connection, status: int, headers: CIMultiDictProxy[str]) -> None:
        self._conn = conn
        self.status = status
        self.headers = headers
        length = headers.get("Content-Length")
        self.content_length = int(length) if length is not None and length.isdigit() else None
        self.complete = False
        self._until_close = False
        self._keep_alive = False
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._paused = False
        self._failure: UpstreamFailure | None = None
        self._wake: asyncio.Future[None] | None = None
        self._released = False

    # -- fed by the connection ------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > HIGH_WATER and not self._paused:
            transport = self._conn.transport
            if transport is not None:
                transport.pause_reading()
                self._paused = True
        self._notify()

    def _finish(self, *, keep_alive: bool) -> None:
        self.complete = True
        self._keep_alive = keep_alive
        self._conn.pool._exchange_done(self._conn)
        self._conn.wake_sender()
        self._notify()

    def _broken(self, failure: UpstreamFailure) -> None:
        if not self.complete and self._failure is None:  # the first failure says what happened
            self._failure = failure
            self._notify()

    def _notify(self) -> None:
        wake, self._wake = self._wake, None
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def _wait(self) -> None:
        self._wake = self._conn._loop.create_future()
        await self._wake

    # -- read by the forward stage ----------------------------------------------------------

    async def read(self) -> bytes:
        """The whole body."""
        while not self.complete:
            if self._failure is not None:
                raise self._failure
            self._resume()
            await self._wait()
        if self._failure is not None:
            raise self._failure
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        return data

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives, in the pieces the upstream sent it."""
        chunks = self._chunks
        while True:
            if chunks:
                data = chunks.popleft()
                self._buffered -= len(data)
                if self._paused and self._buffered < LOW_WATER:
                    self._resume()
                yield data
                continue
            if self._failure is not None:
                raise self._failure
            if self.complete:
                return
            self._resume()
            await self._wait()

    def _resume(self) -> None:
        if self._paused:
            self._paused = False
            transport = self._conn.transport
            if transport is not None:
                transport.resume_reading()

    def release(self) -> None:
        """Give the connection back (reusable only if the whole body was read)."""
        if self._released:
            return
        self._released = True
        conn = self._conn
        self._resume()  # a connection going back to the pool must be reading
        reusable = self.complete and self._keep_alive and not self._chunks
        reusable = reusable and self._failure is None and not conn.body_pending
        conn.pool._release(conn, reusable)


class UpstreamPool:
    """Keep-alive connections to one upstream (`http://` or `https://`), at most `size` open.

    `request` sends one request and returns the response once its headers are in; a request
    that finds the pool full waits for a connection. The total timeout runs from the call to
    the end of the body (like aiohttp's `ClientTimeout.total`)."""

    def __init__(
        self,
        name: str,
        url: str,
        size: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        keepalive: float = KEEPALIVE_SECONDS,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"upstreams.{name}.url: expected http://host[:port], got {url!r}")
        self.name = name
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        default_port = self.port == (443 if parts.scheme == "https" else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if default_port else f"{host}:{self.port}"
        self.base_path = parts.path.rstrip("/")
        self.ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self.ssl = ssl_context or ssl.create_default_context()
        self.size = size
        self.keepalive = keepalive
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()
        self._busy: set[_Connection] = set()
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False

    async def request(
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]],
        body: AsyncGenerator[bytes, None] | None,
        *,
        length: int | None,
        timeouts: Timeouts,
    ) -> UpstreamResponse:
        """Send `method target` with `headers` (no Host, framing or hop-by-hop ones: they are
        set here) and `body` (of `length` bytes when known, else chunked)."""
        loop = asyncio.get_running_loop()
        head, chunked = self._head(method, target, headers, body is not None, length)
        deadline = loop.time() + timeouts.total
        retry = body is None and method in IDEMPOTENT
        while True:
            conn = await self._acquire(timeouts.connect, deadline)
            conn.timer = loop.call_at(deadline, self._expire, conn)
            try:
                response = await conn.exchange(head, body, chunked, method == "HEAD", deadline)
            except _Stale:
                self._release(conn, False)
                if retry:
                    retry = False
                    continue
                raise
            except BaseException:
                self._release(conn, False)
                raise
            if response.complete:
                self._exchange_done(conn)
            return response

    def _head(
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]],
        has_body: bool,
        length: int | None,
    ) -> tuple[bytes, bool]:
        lines = [f"{method} {self.base_path}{target} HTTP/1.1", f"Host: {self.host_header}"]
        lines += [f"{name}: {value}" for name, value in headers]
        chunked = False
        if has_body:
            if length is None:
                chunked = True
                lines.append("Transfer-Encoding: chunked")
            else:
                lines.append(f"Content-Length: {length}")
        elif method in BODY_METHODS:
            lines.append("Content-Length: 0")
        text = "\r\n".join(lines)
        # A CR or LF inside a name or value would start a header (or a request) of its own.
        if text.count("\n") != len(lines) - 1 or text.count("\r") != len(lines) - 1:
            raise UpstreamFailure("error", "a request header holds a line break")
        return (text + "\r\n\r\n").encode("utf-8", "surrogateescape"), chunked

    # -- connections ------------------------------------------------------------------------

    async def _acquire(self, connect_timeout: float, deadline: float) -> _Connection:
        loop = asyncio.get_running_loop()
        while True:
            if self._closed:
                raise UpstreamFailure("error", "the gateway is shutting down")
            now = time.monotonic()
            while self._idle:
                conn = self._idle.pop()
                if conn.transport is None or now - conn.idle_since > self.keepalive:
                    conn.close()
                    self._open.discard(conn)
                    continue
                conn.reused = True
                self._busy.add(conn)
                return conn
            if len(self._open) < self.size:
                return await self._connect(min(connect_timeout, deadline - loop.time()))
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except BaseException as exc:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # this turn was given to us: pass it on
                if isinstance(exc, TimeoutError):
                    raise UpstreamFailure(
                        "timeout", "no upstream connection came free in time"
                    ) from None
                raise

    async def _connect(self, timeout: float) -> _Connection:
        loop = asyncio.get_running_loop()
        conn = _Connection(self)
        self._open.add(conn)
        try:
            async with asyncio.timeout(max(timeout, 0.0)):
                await loop.create_connection(
                    lambda: conn,
                    self.host,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=self.host if self.ssl is not None else None,
                )
        except TimeoutError:
            self._open.discard(conn)
            self._wake_one()
            raise UpstreamFailure("timeout", "connecting to the upstream timed out") from None
        except ssl.SSLCertVerificationError as exc:
            self._open.discard(conn)
            self._wake_one()
            raise UpstreamFailure(
                "error", f"the upstream's certificate failed verification ({exc.verify_message})"
            ) from None
        except (OSError, ssl.SSLError) as exc:
            self._open.discard(conn)
            self._wake_one()
            raise UpstreamFailure(
                "error", f"cannot connect to the upstream: {type(exc).__name__}"
            ) from None
        except BaseException:
            self._open.discard(conn)
            self._wake_one()
            conn.close()
            raise
        self._busy.add(conn)
        return conn

    def _expire(self, conn: _Connection) -> None:
        """The total timeout passed: fail what is waiting and drop the connection."""
        conn.timer = None
        conn._fail(UpstreamFailure("timeout", "the upstream did not answer in time"))
        conn.close()

    def _exchange_done(self, conn: _Connection) -> None:
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None

    def _release(self, conn: _Connection, reusable: bool) -> None:
        self._exchange_done(conn)
        self._busy.discard(conn)
        transport = conn.transport
        if reusable and transport is not None and not transport.is_closing() and not self._closed:
            conn.response = None
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()
            self._open.discard(conn)
        self._wake_one()

    def _lost(self, conn: _Connection) -> None:
        if conn not in self._busy:
            self._open.discard(conn)
            if conn in self._idle:
                self._idle.remove(conn)
            self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def close(self) -> None:
        self._closed = True
        for conn in list(self._open):
            conn.close()  # a response still coming fails, never ends early
        self._open.clear()
        self._idle.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
