"""Access events: the detector's input, parsed and validated from JSON lines."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from gateway.errors import ConfigError

__all__ = ["AccessEvent", "event_from_dict", "read_events", "record_id_from_path"]

_REQUIRED_STR = ("request_id", "client_ip", "method", "path")
_OPTIONAL_STR = ("principal", "department", "user_agent", "dataset", "action", "decision")
_INTS = ("status", "bytes_out", "records_out")


@dataclasses.dataclass(slots=True)
class AccessEvent:
    """One request as the detector sees it.

    The fields before `status` are known before forwarding (the observe stage); the rest
    after the response (the record stage). `principal` is None for unauthenticated requests.
    """

    ts: float  # seconds since the epoch
    request_id: str
    client_ip: str
    method: str
    path: str
    principal: str | None = None
    department: str | None = None
    user_agent: str = ""
    token_id: str | None = None
    dataset: str | None = None
    level: int = 0
    action: str = "read"
    record_id: str | None = None
    status: int = 0
    bytes_out: int = 0
    records_out: int = 0
    decision: str | None = None
    label: str | None = None  # ground truth in labelled files: "normal" or a scenario name


def record_id_from_path(path: str) -> str | None:
    """The record id a path addresses: its last segment when that holds a digit and no dot."""
    segment = path.rstrip("/").rsplit("/", 1)[-1]
    if "." in segment or not any(c.isdigit() for c in segment):
        return None
    return segment


def _parse_ts(value: Any) -> float:
    if not isinstance(value, str):
        raise ValueError("expected an ISO 8601 string with offset")
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"needs a UTC offset, got {value!r}")
    return parsed.timestamp()


def event_from_dict(data: Any) -> AccessEvent:
    """Validate one decoded access event; ValueError names the bad field."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    if "ts" not in data:
        raise ValueError("ts: missing")
    try:
        ts = _parse_ts(data["ts"])
    except ValueError as exc:
        raise ValueError(f"ts: {exc}") from None
    values: dict[str, Any] = {}
    for name in _REQUIRED_STR:
        value = data.get(name)
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name}: expected a non-empty string, got {value!r}")
        values[name] = value
    for name in _OPTIONAL_STR:
        value = data.get(name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name}: expected a string or null, got {value!r}")
        if value:
            values[name] = value
    for name in _INTS:
        value = data.get(name, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name}: expected a non-negative integer, got {value!r}")
        values[name] = value
    level = data.get("level")
    if level is None:
        level = 0
    if not isinstance(level, int) or isinstance(level, bool) or not 0 <= level <= 4:
        raise ValueError(f"level: expected an integer 0..4 or null, got {level!r}")
    token_id = data.get("token_id")
    if token_id is not None and not isinstance(token_id, str):
        raise ValueError(f"token_id: expected a string or null, got {token_id!r}")
    record_id = data.get("record_id")
    if record_id is not None and not isinstance(record_id, str):
        raise ValueError(f"record_id: expected a string or null, got {record_id!r}")
    label = data.get("label")
    if label is not None and (not isinstance(label, str) or not label):
        raise ValueError(f"label: expected a non-empty string, got {label!r}")
    return AccessEvent(
        ts=ts,
        level=level,
        token_id=token_id or None,
        record_id=record_id or record_id_from_path(values["path"]),
        label=label,
        **values,
    )


def read_events(path: Path, *, require_label: bool = False) -> Iterator[AccessEvent]:
    """Events of a JSON-lines file; a bad line raises ConfigError naming file, line and field."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read events: {exc.strerror}") from None
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                event = event_from_dict(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise ConfigError(f"{path}:{number}: not valid JSON: {exc}") from None
            except ValueError as exc:
                raise ConfigError(f"{path}:{number}: {exc}") from None
            if require_label and event.label is None:
                raise ConfigError(
                    f"{path}:{number}: label: missing (expected 'normal' or a scenario)"
                )
            yield event
