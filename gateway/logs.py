"""Structured JSON logging (structlog): one event dict through a readable list of processors.

Two line formats (`logging.format`): `json` keeps structlog's keys (`event` is the event's
name, a string; `level`, `timestamp`); `ecs` writes Elastic Common Schema lines, where
`event` is an object (`event.action` is the name, `message` repeats it), so they go into an
ECS index (Filebeat, Elastic Agent) without a mapping clash. See docs/siem.md."""

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

import ecs_logging
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


FORMATS = ("json", "ecs")
# The gateway's own log keys that ECS has a field for; every other key goes under
# `datagate.` (ECS's advice for custom fields), so none can clash with an ECS field's type
# (a string `url`, `error` or `rule` where ECS maps an object).
ECS_FIELDS = {
    "request_id": "http.request.id",
    "method": "http.request.method",
    "status": "http.response.status_code",
    "principal": "user.id",
    "department": "user.group.name",
    "client_ip": "client.ip",
    "user_agent": "user_agent.original",
    "error": "error.message",
}
# `path` is the request's URL path only on request lines (elsewhere it names a file).
_ECS_REQUEST_FIELDS = {**ECS_FIELDS, "path": "url.path"}
# Keys the ECS formatter itself reads (structlog's `event`, an exception's text).
_ECS_OWN = frozenset({"event", "exception", "message"})


def ecs_fields(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Rename the gateway's keys to ECS fields (dotted; the formatter nests them)."""
    out: dict[str, Any] = {
        "event.action": event.get("event"),
        "event.dataset": "datagate.log",
        "event.kind": "event",
    }
    names = _ECS_REQUEST_FIELDS if event.get("event") == "request" else ECS_FIELDS
    for key, value in event.items():
        if key in _ECS_OWN:
            out[key] = value
        elif key == "latency_ms" and isinstance(value, int | float):
            out["event.duration"] = int(value * 1_000_000)  # ECS: nanoseconds
            out["datagate.latency_ms"] = value
        else:
            out[names.get(key, f"datagate.{key}")] = value
    return out


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
_ECS = False  # the `ecs` format
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
    if _ECS:
        # What ecs-logging's formatter makes of it, built directly (the formatter costs
        # twenty times the rest of the line).
        line: dict[str, Any] = {
            "@timestamp": f"{cached[1]}.{int((now - whole) * 1e3):03d}Z",
            "log.level": "info",
            "message": "request",
            "ecs.version": ecs_logging.ECS_VERSION,
        }
        for key, value in ecs_fields(None, "info", fields).items():
            if key != "event":
                _nest(line, key, value)
        _OUT.msg(_dumps(line))
        return
    fields["level"] = "info"
    fields["timestamp"] = f"{cached[1]}.{int((now - whole) * 1e6):06d}Z"
    _OUT.msg(_dumps(fields))


def _nest(into: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        into = into.setdefault(part, {})
    into[last] = value


def flush() -> None:
    """Write out buffered log lines."""
    if _OUT is not None:
        _OUT.flush()


def configure(level: str = "info", stream: BinaryIO | None = None, fmt: str = "json") -> None:
    """JSON lines (structlog's keys, or ECS with `fmt="ecs"`) on stderr (or the binary
    `stream`), with ISO timestamps, secrets dropped."""
    global _OUT, _INFO, _ECS
    if fmt not in FORMATS:
        raise ValueError(f"logging.format: must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if stream is None:
        stream = io.BufferedWriter(io.FileIO(sys.stderr.fileno(), "w", closefd=False), 1 << 16)
    _OUT = BufferedLineLogger(stream)
    levelno = logging.getLevelNamesMapping()[level.upper()]
    _INFO = levelno <= logging.INFO
    atexit.register(flush)
    shared: list[Any] = [structlog.contextvars.merge_contextvars]
    if fmt == "ecs":
        _ECS = True
        ecs = ecs_logging.StructlogFormatter(ensure_ascii=False)
        processors = [
            *shared,
            drop_secrets,
            structlog.processors.format_exc_info,
            ecs_fields,
            # ecs-logging adds @timestamp, log.level, ecs.version and nests dotted keys.
            lambda logger, name, event: ecs(logger, name, event).encode(),
        ]
    else:
        _ECS = False
        processors = [
            *shared,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            drop_secrets,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_dumps),
        ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(levelno),
        logger_factory=lambda *_: _OUT,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)
