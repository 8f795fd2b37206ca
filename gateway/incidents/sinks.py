"""Incident sinks: a rotated JSON-lines file, a Redis stream, a webhook with an on-disk spool.

Each sink has its own queue and task, so a slow or broken sink never holds up the others or
the request path; a sink that fails keeps its incidents and retries with backoff.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import orjson

from gateway.errors import ConfigError, StateUnavailable
from gateway.incidents.config import (
    FileSinkConfig,
    IncidentsConfig,
    StreamSinkConfig,
    WebhookSinkConfig,
)
from gateway.logs import get_logger
from gateway.state import open_backend
from gateway.state.base import StateBackend

log = get_logger("datagate.incidents")


class Sink(Protocol):
    name: str

    async def start(self) -> None: ...

    async def close(self, grace: float = 5.0) -> None: ...

    def emit(self, line: bytes) -> None: ...

    @property
    def backlog(self) -> int: ...


class _Worker(abc.ABC):
    """A queue of lines and the task that drains it into `_deliver`, retrying with backoff."""

    name = "sink"

    def __init__(self, backoff_base: float = 0.2, backoff_cap: float = 30.0) -> None:
        self._queue: list[bytes] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self.failures = 0

    def emit(self, line: bytes) -> None:
        self._queue.append(line)
        self._wake.set()

    @property
    def backlog(self) -> int:
        return len(self._queue)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"incident-sink-{self.name}")

    async def close(self, grace: float = 5.0) -> None:
        """Deliver what is queued (for up to `grace` seconds), then stop."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), grace)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
                log.error("incident_sink_closed_with_backlog", sink=self.name, backlog=self.backlog)
            self._task = None

    @abc.abstractmethod
    async def _deliver(self, batch: list[bytes]) -> None:
        """Write `batch` or raise; on an exception the whole batch is tried again."""

    async def _run(self) -> None:
        delay = self._backoff_base
        while True:
            if not self._queue:
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = self._queue[:]
            try:
                await self._deliver(batch)
            except (OSError, StateUnavailable, aiohttp.ClientError, TimeoutError) as exc:
                self.failures += 1
                log.warning("incident_sink_failed", sink=self.name, error=str(exc), retry_in=delay)
                if self._stopping:
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._backoff_cap)
                continue
            del self._queue[: len(batch)]
            delay = self._backoff_base


class FileSink(_Worker):
    """JSON lines, rotated to `<path>.<n>` between whole lines; nothing is dropped or split.

    Several processes may append to one file (`datagate run --workers N`): each batch is
    checked against `max_bytes`, rotated and appended under an exclusive lock on the file's
    folder, so lines from different processes never interleave, rotated files hold whole
    lines only, and a shipper (Filebeat's ndjson parser) reads one file in write order.
    """

    name = "file"

    def __init__(self, config: FileSinkConfig) -> None:
        super().__init__()
        self.config = config

    async def start(self) -> None:
        self.config.path.parent.mkdir(parents=True, exist_ok=True)
        await super().start()

    async def _deliver(self, batch: list[bytes]) -> None:
        written, error = await asyncio.to_thread(self._write, batch)
        if error is not None:
            del self._queue[:written]  # those are on disk: retry only the rest
            raise error

    def _write(self, batch: list[bytes]) -> tuple[int, OSError | None]:
        """Append `batch`; the number of lines written, and the error that stopped it."""
        written = 0
        try:
            folder = os.open(self.config.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            return written, exc
        try:
            fcntl.flock(folder, fcntl.LOCK_EX)
            path, limit = self.config.path, self.config.max_bytes
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                size = os.fstat(fd).st_size
                chunk: list[bytes] = []
                for line in batch:
                    if size > 0 and size + len(line) > limit:
                        _append(fd, chunk)
                        written += len(chunk)
                        chunk = []
                        os.close(fd)
                        fd = -1
                        self._rotate()
                        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
                        size = os.fstat(fd).st_size
                    chunk.append(line)
                    size += len(line)
                _append(fd, chunk)
                written += len(chunk)
            finally:
                if fd >= 0:
                    os.close(fd)
        except OSError as exc:
            return written, exc
        finally:
            os.close(folder)  # releases the lock
        return written, None

    def _rotate(self) -> None:
        # Under the folder lock; link + unlink, never replace, so a rotated file is never
        # overwritten, even by a process that does not take the lock.
        path = self.config.path
        numbers = rotated_numbers(path)
        n = (numbers[-1] if numbers else 0) + 1
        while True:
            try:
                os.link(path, path.with_name(f"{path.name}.{n}"))
                break
            except FileExistsError:
                n += 1
            except FileNotFoundError:
                return
        path.unlink(missing_ok=True)
        if self.config.keep:
            numbers = rotated_numbers(path)
            for old in numbers[: max(len(numbers) - self.config.keep, 0)]:
                path.with_name(f"{path.name}.{old}").unlink(missing_ok=True)


def _append(fd: int, lines: list[bytes]) -> None:
    """Write whole lines or none: a failed write is cut back to where it started."""
    if not lines:
        return
    start = os.fstat(fd).st_size
    try:
        _write_all(fd, b"".join(lines))
    except OSError:
        with contextlib.suppress(OSError):  # e.g. a device that cannot be truncated
            os.ftruncate(fd, start)
        raise


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def rotated_numbers(path: Path) -> list[int]:
    """The numbers of the rotated files of `path`, oldest first."""
    prefix = path.name + "."
    return sorted(
        int(p.name[len(prefix) :])
        for p in path.parent.glob(f"{path.name}.*")
        if p.name[len(prefix) :].isdigit()
    )


class StreamSink(_Worker):
    """XADD to a stream of the state backend (Redis), kept in memory while it is down."""

    name = "stream"

    def __init__(
        self, config: StreamSinkConfig, backend: StateBackend, owned: bool = False
    ) -> None:
        super().__init__()
        self.config = config
        self.backend = backend
        self.owned = owned  # opened for this sink (stream.url): started and closed with it

    async def start(self) -> None:
        if self.owned:
            with contextlib.suppress(StateUnavailable):  # it works once Redis answers
                await self.backend.start()
        await super().start()

    async def close(self, grace: float = 5.0) -> None:
        await super().close(grace)
        if self.owned:
            await self.backend.close()

    async def _deliver(self, batch: list[bytes]) -> None:
        for i, line in enumerate(batch):
            try:
                await self.backend.xadd(self.config.stream, line.rstrip(b"\n"), self.config.maxlen)
            except StateUnavailable:
                del self._queue[:i]  # those went through
                raise


class WebhookSink(_Worker):
    """POST each incident as JSON. Lines go to an on-disk spool first and leave it only once
    the receiver answers 2xx, so a receiver (or a gateway) that is down loses nothing.

    The spool is `<spool>/pending.jsonl` plus `<spool>/offset` (bytes delivered). A permanent
    refusal (4xx other than 408/429) is logged and skipped; a full spool refuses new lines.
    """

    name = "webhook"

    def __init__(
        self, config: WebhookSinkConfig, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(config.backoff_base, config.backoff_cap)
        self.config = config
        self.monotonic = monotonic
        self.spool = config.spool / "pending.jsonl"
        self._offset_path = config.spool / "offset"
        self._session: aiohttp.ClientSession | None = None
        self._sender: asyncio.Task[None] | None = None
        self._spooled = asyncio.Event()
        self._spool_lock = asyncio.Lock()  # appends and compaction never overlap
        self.dropped = 0
        self.delivered = 0

    async def start(self) -> None:
        self.config.spool.mkdir(parents=True, exist_ok=True)
        self.spool.touch(exist_ok=True)
        headers = {"Content-Type": "application/json"}
        if self.config.token is not None:
            headers["Authorization"] = f"Bearer {self.config.token.reveal()}"
        self._session = aiohttp.ClientSession(
            headers=headers, timeout=aiohttp.ClientTimeout(total=self.config.timeout)
        )
        await super().start()
        self._spooled.set()  # deliver what an earlier run left in the spool
        self._sender = asyncio.create_task(self._send_loop(), name="incident-webhook-sender")

    async def close(self, grace: float = 5.0) -> None:
        await super().close(grace)  # everything queued is now in the spool
        if self._sender is not None:
            deadline = self.monotonic() + grace
            while self.pending_bytes() > 0 and self.monotonic() < deadline:
                await asyncio.sleep(0.02)
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
            self._sender = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def pending_bytes(self) -> int:
        """Bytes in the spool not yet delivered (kept across restarts)."""
        try:
            return self.spool.stat().st_size - self._read_offset()
        except FileNotFoundError:
            return 0

    async def _deliver(self, batch: list[bytes]) -> None:
        async with self._spool_lock:
            await asyncio.to_thread(self._spool_lines, batch)
        self._spooled.set()

    def _spool_lines(self, batch: list[bytes]) -> None:
        size = self.spool.stat().st_size
        keep: list[bytes] = []
        for line in batch:
            if size + len(line) > self.config.spool_max_bytes:
                self.dropped += 1
                log.error("incident_webhook_spool_full", spool=str(self.spool), dropped=1)
                continue
            keep.append(line)
            size += len(line)
        with open(self.spool, "ab") as fh:
            fh.write(b"".join(keep))
            fh.flush()
            os.fsync(fh.fileno())

    def _read_offset(self) -> int:
        try:
            return int(self._offset_path.read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def _write_offset(self, offset: int) -> None:
        tmp = self._offset_path.with_suffix(".tmp")
        tmp.write_text(str(offset))
        os.replace(tmp, self._offset_path)

    async def _send_loop(self) -> None:
        delay = self.config.backoff_base
        while True:
            await self._spooled.wait()
            self._spooled.clear()
            while True:
                offset = self._read_offset()
                line = _read_line(self.spool, offset)
                if line is None:
                    if offset:
                        async with self._spool_lock:
                            await asyncio.to_thread(self._compact, offset)
                    break
                if await self._post(line):
                    self._write_offset(offset + len(line))
                    delay = self.config.backoff_base
                    continue
                self.failures += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.config.backoff_cap)

    def _compact(self, offset: int) -> None:
        # Everything delivered: start the spool afresh.
        if self.spool.stat().st_size == offset:
            self.spool.write_bytes(b"")
            self._write_offset(0)

    async def _post(self, line: bytes) -> bool:
        assert self._session is not None
        try:
            async with self._session.post(self.config.url, data=line.rstrip(b"\n")) as resp:
                await resp.read()
                if 200 <= resp.status < 300:
                    self.delivered += 1
                    return True
                if 400 <= resp.status < 500 and resp.status not in (408, 429):
                    log.error("incident_webhook_rejected", status=resp.status, url=self.config.url)
                    return True  # permanent: retrying cannot help
                log.warning("incident_webhook_failed", status=resp.status)
                return False
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("incident_webhook_down", error=str(exc) or type(exc).__name__)
            return False


def _read_line(path: Path, offset: int) -> bytes | None:
    with open(path, "rb") as fh:
        fh.seek(offset)
        line = fh.readline()
    return line if line.endswith(b"\n") else None


class Sinks:
    """Fan-out: each incident serialised once and queued on every sink."""

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = list(sinks)

    def emit(self, incident: dict[str, Any], encoded: bytes | None = None) -> None:
        """Queue `incident` on every sink; `encoded` is its orjson bytes if already made."""
        line = (encoded or orjson.dumps(incident)) + b"\n"
        for sink in self.sinks:
            sink.emit(line)

    async def start(self) -> None:
        for sink in self.sinks:
            await sink.start()

    async def close(self, grace: float = 5.0) -> None:
        """Give each sink up to `grace` seconds to deliver what it holds (spools persist)."""
        for sink in self.sinks:
            await sink.close(grace)

    @property
    def backlog(self) -> int:
        return sum(s.backlog for s in self.sinks)


def build_sinks(config: IncidentsConfig, backend: StateBackend | None) -> Sinks:
    """The sinks `config` names. The stream goes to `stream.url` if set, else to `backend`
    (the gateway's state backend)."""
    sinks: list[Sink] = []
    if config.file is not None:
        sinks.append(FileSink(config.file))
    if config.stream is not None:
        if config.stream.url is not None:
            sinks.append(StreamSink(config.stream, open_backend(config.stream.url), owned=True))
        elif backend is None:
            raise ConfigError("incidents.stream: needs a url or a state backend")
        else:
            sinks.append(StreamSink(config.stream, backend))
    if config.webhook is not None:
        sinks.append(WebhookSink(config.webhook))
    return Sinks(sinks)
