"""The audit writer: cheap appends on the request path, sealed and written by a background task."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import checkpoints, keys
from gateway.audit.chain import GENESIS, seal
from gateway.audit.config import AuditConfig
from gateway.errors import ConfigError, StateUnavailable
from gateway.logs import get_logger

log = get_logger("datagate.audit")


_SEAL_SLICE = 64  # records sealed between two yields to the event loop


class AuditUnavailable(StateUnavailable):
    """The audit log cannot take more records (the disk has refused writes for too long)."""


class AuditWriter:
    """Appends access events and admin actions to the hash-chained log.

    `append` only numbers the record and queues it; a task seals (scrubs secrets, chains,
    hashes) and writes the queue every `flush_interval`, and signs a checkpoint every
    `checkpoint_interval`. A failed write keeps the records, marks the writer unhealthy and
    is retried (after cutting off any partly written line) on the next flush.
    """

    def __init__(
        self,
        config: AuditConfig,
        clock: Callable[[], float] = time.time,
        worker: int | None = None,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        # Told once per outage, when the disk starts refusing writes (the SOC's alarm).
        self._on_failure = on_failure
        self.failures = 0  # writes the disk refused, for the metrics
        # One chain per writing process: worker N of `datagate run --workers` writes
        # `audit.wN.jsonl` and `checkpoints.wN.jsonl`, each verified on its own.
        if worker is not None:
            config = dataclasses.replace(
                config,
                path=_per_worker(config.path, worker),
                checkpoints=_per_worker(config.checkpoints, worker)
                if config.checkpoints is not None
                else None,
            )
        self.config = config
        self.clock = clock
        self._lock_fd: int | None = None
        self._seq = 0  # last number handed out
        self._written = 0  # last number on disk
        self._head = GENESIS  # hash of the last sealed record
        self._queue: list[tuple[int, dict[str, Any], bool]] = []  # (seq, record, trusted)
        self._pending = b""  # sealed but not yet written
        self._pending_seq = 0
        self._good_size = 0  # file size after the last complete write
        self._checkpointed = 0
        self._last_checkpoint = 0.0
        self._error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._key: Ed25519PrivateKey | None = None
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()

    # ---- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Open (or continue) the log; raises ConfigError if its tail cannot be trusted."""
        cfg = self.config
        cfg.path.parent.mkdir(parents=True, exist_ok=True)
        if cfg.checkpoints is not None and cfg.signing_key is not None:
            self._key = keys.load_private(cfg.signing_key, cfg.generate_key)
            cfg.checkpoints.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(cfg.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        except OSError as exc:
            raise ConfigError(f"audit.path: cannot write {cfg.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ConfigError(
                f"audit.path: {cfg.path} is being written by another process; "
                "each gateway process needs its own audit log"
            ) from None
        try:
            self._seq, self._head, self._good_size = _read_tail(cfg.path)
        except ConfigError:
            os.close(fd)
            raise
        self._lock_fd = fd
        self._written = self._pending_seq = self._checkpointed = self._seq
        # Checkpoints are spaced on the monotonic clock: a wall clock set back must not
        # hold them off for the length of the jump.
        self._last_checkpoint = time.monotonic()
        self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def close(self) -> None:
        """Flush everything queued and sign a final checkpoint."""
        # Not cancel(): a write in its thread would go on while the final flush runs.
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self.flush()
        await self.checkpoint()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None

    # ---- the request path ------------------------------------------------------------------

    def append(self, record: dict[str, Any], *, trusted: bool = False) -> int:
        """Queue `record` (the writer owns it from now on) and return its sequence number.

        `trusted`: built by the gateway with keys and value types of its own (access events),
        so sealing skips the secret scrub (see `chain.seal`); records whose keys or types come
        from elsewhere (admin input) are never trusted."""
        queue = self._queue
        if len(queue) >= self.config.max_buffer:
            raise AuditUnavailable(f"audit log not writable: {self._error or 'backlog full'}")
        self._seq += 1
        queue.append((self._seq, record, trusted))
        return self._seq

    @property
    def healthy(self) -> bool:
        """False while the disk refuses writes, or if the writer task has died."""
        if self._error is not None:
            return False
        return self._task is None or not self._task.done()

    @property
    def error(self) -> str | None:
        return self._error

    @property
    def backlog(self) -> int:
        """Records numbered but not yet on disk."""
        return self._seq - self._written

    @property
    def written(self) -> int:
        """Sequence number of the last record known to be on disk."""
        return self._written

    # ---- background work ------------------------------------------------------------------

    async def flush(self) -> None:
        """Seal the queue and write it; on failure keep it, mark unhealthy, and retry later."""
        async with self._lock:
            batch, self._queue = self._queue, []
            if batch:
                parts = [self._pending]
                head = self._head
                for i, (seq, record, trusted) in enumerate(batch, start=1):
                    line, head = seal(record, seq, head, trusted=trusted)
                    parts.append(line)
                    if i % _SEAL_SLICE == 0:
                        # Let requests run between slices: sealing a busy interval's records
                        # in one go is a pause of milliseconds for every request in flight.
                        await asyncio.sleep(0)
                self._head = head
                self._pending = b"".join(parts)
                self._pending_seq = batch[-1][0]
            if not self._pending:
                return
            try:
                size = await asyncio.to_thread(self._write, self._pending)
            except OSError as exc:
                self.failures += 1
                first = self._error is None
                self._error = f"{self.config.path}: {exc.strerror or exc}"
                if first:
                    log.error("audit_write_failed", path=str(self.config.path), error=str(exc))
                    if self._on_failure is not None:
                        self._on_failure(self._error)
                return
            if self._error is not None:
                log.info("audit_write_recovered", path=str(self.config.path))
            self._error = None
            self._good_size = size
            self._pending = b""
            self._written = self._pending_seq

    async def checkpoint(self) -> None:
        """Sign the count and head of what is on disk, if it moved since the last checkpoint."""
        cfg = self.config
        if self._key is None or cfg.checkpoints is None or self._pending:
            return
        if self._written == self._checkpointed:
            return
        ts = dt.datetime.fromtimestamp(self.clock(), dt.UTC).isoformat(timespec="milliseconds")
        line = checkpoints.make(self._key, self._written, self._head, ts)
        try:
            await asyncio.to_thread(_append, cfg.checkpoints, line, cfg.fsync)
        except OSError as exc:
            self._error = f"{cfg.checkpoints}: {exc.strerror or exc}"
            log.error("audit_checkpoint_failed", path=str(cfg.checkpoints), error=str(exc))
            return
        self._checkpointed = self._written
        self._last_checkpoint = time.monotonic()

    def _write(self, data: bytes) -> int:
        # Cut off whatever a failed earlier attempt left half-written, then append.
        with open(self.config.path, "ab") as fh:
            if fh.tell() != self._good_size:
                fh.truncate(self._good_size)
            fh.write(data)
            fh.flush()
            if self.config.fsync:
                os.fsync(fh.fileno())
            return fh.tell()

    async def _run(self) -> None:
        cfg = self.config
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), cfg.flush_interval)
            await self.flush()
            if time.monotonic() - self._last_checkpoint >= cfg.checkpoint_interval:
                await self.checkpoint()


def _per_worker(path: Path, worker: int) -> Path:
    return path.with_name(f"{path.stem}.w{worker}{path.suffix}")


def _append(path: Path, data: bytes, fsync: bool) -> None:
    with open(path, "ab") as fh:
        fh.write(data)
        fh.flush()
        if fsync:
            os.fsync(fh.fileno())


def _read_tail(path: Path) -> tuple[int, str, int]:
    """(last seq, last hash, file size) of an existing log, to continue its chain."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0, GENESIS, 0
    if size == 0:
        return 0, GENESIS, 0
    with open(path, "rb") as fh:
        chunk = 4096
        while True:
            start = max(size - chunk, 0)
            fh.seek(start)
            data = fh.read(size - start)
            if not data.endswith(b"\n"):
                raise ConfigError(
                    f"audit.path: {path} ends with a partial line; check it with "
                    "`datagate audit verify` and move it aside"
                )
            cut = data.rfind(b"\n", 0, len(data) - 1)
            if cut >= 0 or start == 0:
                last = data[cut + 1 :]
                break
            chunk *= 4
    try:
        record = orjson.loads(last)
        seq, digest = record["seq"], record["hash"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise ConfigError(
            f"audit.path: the last line of {path} is not an audit record; check it with "
            "`datagate audit verify`"
        ) from None
    if not isinstance(seq, int) or not isinstance(digest, str):
        raise ConfigError(f"audit.path: the last line of {path} has a bad seq or hash")
    return seq, digest, size
