"""Structured JSON logging (structlog): one event dict through a readable list of processors."""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import io
import logging
import sys
import time
from collections.abc import MutableMapping
from typing import Any, BinaryIO

import orjson
import structlog

from gateway.lines import escape_separators

# Keys whose values never reach a log line, whatever stage put them there.
SECRET_KEYS = frozenset(
    {
        "authorization",
        "token",
        "access_token",
        "id_token",
        "cookie",
        "set-cookie",
        "password",
        "secret",
        "signing_key",
        "proxy-authorization",
    }
)


def drop_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if key.lower() in SECRET_KEYS:
            event[key] = "[redacted]"
    return event


def _dumps(obj: Any, default: Any = None) -> bytes:
    return escape_separators(orjson.dumps(obj, default=default or str))


class BufferedLineLogger:
    """Writes each rendered line into a buffer instead of flushing it at once: one write
    per request line is as costly as the rest of the log call. Warnings and errors flush
    at once; `flush()` empties the buffer (the gateway does it every 200 ms, and at exit)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def msg(self, message: bytes) -> None:
        self._stream.write(message + b"\n")

    def urgent(self, message: bytes) -> None:
        self._stream.write(message + b"\n")
        self._stream.flush()

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._stream.flush()

    debug = info = log = msg
    warn = warning = error = err = critical = fatal = exception = failure = urgent


_OUT: BufferedLineLogger | None = None
_INFO = True  # info lines are written at the configured level
_second: tuple[int, str] = (-1, "")  # the last whole second formatted: (second, ISO prefix)


def request_line(fields: dict[str, Any]) -> None:
    """Write one request's log line (`event: "request"`, at info), exactly as the configured
    processors render it, without running them: this happens for every request, and the
    processor chain cost as much as the rest of the record stage. The fields are the gateway's
    own (no secrets to drop, no exceptions to format)."""
    if _OUT is None:
        structlog.get_logger("datagate.access").info("request", **fields)
        return
    if not _INFO:
        return
    global _second
    now = time.time()
    whole = int(now // 1)
    cached = _second
    if cached[0] != whole:
        prefix = dt.datetime.fromtimestamp(whole, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
        cached = _second = (whole, prefix)
    fields["event"] = "request"
    fields["level"] = "info"
    fields["timestamp"] = f"{cached[1]}.{int((now - whole) * 1e6):06d}Z"
    _OUT.msg(_dumps(fields))


def flush() -> None:
    """Write out buffered log lines."""
    if _OUT is not None:
        _OUT.flush()


def configure(level: str = "info", stream: BinaryIO | None = None) -> None:
    """JSON lines on stderr (or the binary `stream`), with ISO timestamps, secrets dropped."""
    global _OUT, _INFO
    if stream is None:
        stream = io.BufferedWriter(io.FileIO(sys.stderr.fileno(), "w", closefd=False), 1 << 16)
    _OUT = BufferedLineLogger(stream)
    levelno = logging.getLevelNamesMapping()[level.upper()]
    _INFO = levelno <= logging.INFO
    atexit.register(flush)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            drop_secrets,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(levelno),
        logger_factory=lambda *_: _OUT,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)
