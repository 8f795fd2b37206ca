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
