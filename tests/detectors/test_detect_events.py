"""Access events: parsing, validation, and the one-line errors for bad lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from detectors.events import event_from_dict, read_events, record_id_from_path
from gateway.errors import ConfigError


def _event(**changes: Any) -> dict[str, Any]:
    event = {
        "ts": "2026-03-20T10:00:00.000+08:00",
        "request_id": "r1",
        "principal": "alice",
        "department": "statistics",
        "client_ip": "10.0.0.1",
        "user_agent": "ua",
        "method": "GET",
        "path": "/api/population/persons/1234",
        "dataset": "population",
        "level": 3,
        "action": "read",
        "decision": "allow",
        "status": 200,
        "bytes_out": 300,
        "records_out": 1,
        "masked_fields": {},
        "latency_ms": 3.2,
        "prev_hash": "ab",
        "hash": "cd",
    }
    event.update(changes)
    return event


def test_parses_the_product_shape() -> None:
    event = event_from_dict(_event())
    assert event.ts == 1773972000.0
    assert event.principal == "alice"
    assert event.record_id == "1234"
    assert event.level == 3
    assert event.label is None


def test_unauthenticated_event_has_no_principal() -> None:
    event = event_from_dict(
        _event(principal=None, department=None, status=401, dataset=None, level=None)
    )
    assert event.principal is None
    assert event.level == 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ts": None}, "ts: expected an ISO 8601 string with offset"),
        ({"ts": "2026-03-20T10:00:00"}, "ts: needs a UTC offset"),
        ({"ts": "yesterday"}, "ts: Invalid isoformat string"),
        ({"request_id": ""}, "request_id: expected a non-empty string"),
        ({"status": "200"}, "status: expected a non-negative integer, got '200'"),
        ({"bytes_out": -1}, "bytes_out: expected a non-negative integer, got -1"),
        ({"level": 7}, "level: expected an integer 0..4 or null, got 7"),
        ({"principal": 5}, "principal: expected a string or null, got 5"),
        ({"label": ""}, "label: expected a non-empty string"),
    ],
)
def test_bad_fields_are_named(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        event_from_dict(_event(**changes))
    assert str(info.value).startswith(message)


def test_missing_ts_and_non_object() -> None:
    data = _event()
    del data["ts"]
    with pytest.raises(ValueError, match=r"^ts: missing$"):
        event_from_dict(data)
    with pytest.raises(ValueError, match=r"^expected a JSON object, got list$"):
        event_from_dict([])


def test_record_id_from_path() -> None:
    assert record_id_from_path("/api/population/persons/P000123") == "P000123"
    assert record_id_from_path("/api/population/persons.csv") is None
    assert record_id_from_path("/api/population/persons") is None


def test_file_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(orjson.dumps(_event()) + b"\n\n" + b"{not json\n")
    with pytest.raises(ConfigError, match=r"events.jsonl:3: not valid JSON"):
        list(read_events(path))
    path.write_bytes(orjson.dumps(_event()) + b"\n" + orjson.dumps(_event(status=-2)) + b"\n")
    with pytest.raises(ConfigError, match=r"events.jsonl:2: status: expected a non-negative"):
        list(read_events(path))


def test_missing_file_and_missing_label(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope.jsonl: cannot read events: No such file"):
        list(read_events(tmp_path / "nope.jsonl"))
    path = tmp_path / "events.jsonl"
    path.write_bytes(orjson.dumps(_event()) + b"\n")
    with pytest.raises(ConfigError, match=r"events.jsonl:1: label: missing"):
        list(read_events(path, require_label=True))
