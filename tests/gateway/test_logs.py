"""Log lines: JSON objects (structlog's keys, or ECS), secrets redacted, request lines
buffered, errors written at once."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest
import structlog

from gateway import logs
from gateway.config import parse_config
from gateway.errors import ConfigError
from tests.gateway.conftest import REPO, identity_section


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


def test_json_lines_keep_structlogs_event_key_as_a_string() -> None:
    """The documented `json` format: `event` is the event's name (docs/siem.md)."""
    stream = CountingStream()
    try:
        logs.configure("info", stream)
        logs.get_logger("t").info("policy_loaded", version="abc")
        [line] = map(orjson.loads, stream.getvalue().splitlines())
        assert line["event"] == "policy_loaded" and line["level"] == "info"
    finally:
        structlog.reset_defaults()


def test_ecs_lines_have_an_event_object_and_ecs_fields() -> None:
    stream = CountingStream()
    try:
        logs.configure("info", stream, fmt="ecs")
        log = logs.get_logger("t")
        # Keys whose plain values would clash with ECS objects (url, error, rule).
        log.warning("upstream_tls_unverified", url="https://up", rule="r", token="eyJ-secret")
        log.error("audit_write_failed", path="/var/audit.jsonl", error="disk full")
        try:
            raise ZeroDivisionError("boom")
        except ZeroDivisionError:
            log.exception("policy_watch_failed")
        fields = {"request_id": "r1", "principal": "alice", "route": "open", "method": "GET"}
        fields |= {"path": "/api/open/1", "status": 200, "decision": "allow"}
        logs.request_line({**fields, "latency_ms": 1.5})
        logs.flush()
        tls, audit, failed, request = map(orjson.loads, stream.getvalue().splitlines())
    finally:
        structlog.reset_defaults()
        logs._OUT = None
        logs._ECS = False
    for line in (tls, audit, failed, request):
        assert isinstance(line["event"], dict), "ECS `event` is an object"
        assert line["message"] == line["event"]["action"]
        # ecs-logging writes these two dotted, as Elastic's own loggers do.
        assert line["ecs.version"] and line["@timestamp"].endswith("Z")
        assert line["log.level"] and "level" not in line
    assert tls["log.level"] == "warning" and tls["event"]["kind"] == "event"
    assert tls["datagate"] == {"url": "https://up", "rule": "r", "token": "[redacted]"}
    assert "url" not in tls and b"eyJ-secret" not in stream.getvalue()
    assert audit["error"] == {"message": "disk full"}
    assert audit["datagate"]["path"] == "/var/audit.jsonl" and "url" not in audit
    assert "ZeroDivisionError: boom" in failed["error"]["stack_trace"]
    assert request["http"] == {
        "request": {"id": "r1", "method": "GET"},
        "response": {"status_code": 200},
    }
    assert request["url"] == {"path": "/api/open/1"} and request["user"] == {"id": "alice"}
    assert request["event"]["duration"] == 1_500_000, "ECS durations are nanoseconds"
    assert request["datagate"] == {"route": "open", "decision": "allow", "latency_ms": 1.5}


def test_ecs_request_lines_render_like_structlog_lines() -> None:
    stream = CountingStream()
    try:
        logs.configure("info", stream, fmt="ecs")
        fields = {"request_id": "r1", "principal": "alice", "status": 200, "latency_ms": 1.5}
        logs.request_line(dict(fields))
        logs.get_logger("datagate.access").info("request", **fields)
        direct, via_structlog = (orjson.loads(line) for line in stream.getvalue().splitlines())
        assert direct.pop("@timestamp")[:10] == via_structlog.pop("@timestamp")[:10]
        assert direct == via_structlog
    finally:
        structlog.reset_defaults()
        logs._OUT = None
        logs._ECS = False


def test_an_unknown_log_format_is_refused() -> None:
    with pytest.raises(ValueError, match=r"logging\.format: must be one of json, ecs, got 'gelf'"):
        logs.configure("info", CountingStream(), fmt="gelf")


def test_the_config_offers_the_ecs_format_and_refuses_others(tmp_path: Path) -> None:
    base = {
        "upstreams": {"up": {"url": "http://127.0.0.1:9"}},
        "identity": identity_section(),
        "policy": {"dir": str(REPO / "policies")},
    }
    config = parse_config({**base, "logging": {"format": "ecs"}}, base_dir=tmp_path, environ={})
    assert config.logging.format == "ecs"
    assert parse_config(base, base_dir=tmp_path, environ={}).logging.format == "json"
    with pytest.raises(ConfigError, match=r"logging\.format"):
        parse_config({**base, "logging": {"format": "gelf"}}, base_dir=tmp_path, environ={})
