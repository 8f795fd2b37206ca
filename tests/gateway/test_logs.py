"""Log lines: JSON objects, secrets redacted, request lines buffered, errors written at once."""

from __future__ import annotations

import io

import orjson
import structlog

from gateway import logs


class CountingStream(io.BytesIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def test_lines_are_json_with_secrets_redacted_and_errors_flushed_at_once() -> None:
    stream = CountingStream()
    try:
        logs.configure("info", stream)
        log = logs.get_logger("t")
        log.info("request", token="eyJ-secret", Authorization="Bearer x", path="/a")
        assert stream.flushes == 0, "request lines wait for the periodic flush"
        log.error("broken", cookie="s=1")
        assert stream.flushes == 1, "errors are written at once"
        log.debug("hidden")
        lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
        assert [line["event"] for line in lines] == ["request", "broken"]
        assert lines[0]["token"] == "[redacted]" and lines[0]["Authorization"] == "[redacted]"
        assert lines[1]["cookie"] == "[redacted]" and lines[1]["level"] == "error"
        assert b"eyJ-secret" not in stream.getvalue() and b"s=1" not in stream.getvalue()
        logs.flush()
        assert stream.flushes == 2
    finally:
        structlog.reset_defaults()


def test_request_lines_render_like_structlog_lines() -> None:
    """The request line skips the processor chain but reads like every other line."""
    stream = CountingStream()
    try:
        logs.configure("info", stream)
        fields = {"request_id": "r1", "principal": "alice", "status": 200, "latency_ms": 1.5}
        logs.request_line(dict(fields))
        logs.get_logger("datagate.access").info("request", **fields)
        direct, via_structlog = (orjson.loads(line) for line in stream.getvalue().splitlines())
        assert list(direct) == list(via_structlog)
        assert direct.pop("timestamp")[:10] == via_structlog.pop("timestamp")[:10]
        assert direct == via_structlog == {**fields, "event": "request", "level": "info"}
        logs.configure("warning", stream)
        logs.request_line(dict(fields))
        assert len(stream.getvalue().splitlines()) == 2, "info lines are off at warning"
    finally:
        structlog.reset_defaults()
        logs._OUT = None
