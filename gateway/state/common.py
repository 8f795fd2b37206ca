"""Shared by both state backends: the sliding-window arithmetic, argument checks, delivery."""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Awaitable, Callable, Sequence

import structlog

log = structlog.get_logger("datagate.state")

_STREAM_ID = re.compile(r"(\d{1,20})(?:-(\d{1,20}))?")


def window_ms(window: float) -> int:
    """A window in whole milliseconds: the arithmetic below is exact integer arithmetic."""
    return round(window * 1000)


def window_position(now: float, window: int) -> tuple[int, int]:
    """The fixed bucket that `now` falls in, and how much of it is still to come (ms).

    `window` is in milliseconds. Buckets are aligned to the epoch: bucket `i` covers
    `[i * window, (i + 1) * window)` ms. The part of the bucket still to come is the part
    of the sliding window `(now - window, now]` that overlaps the previous bucket.
    """
    now_ms = round(now * 1000)
    index = now_ms // window
    return index, (index + 1) * window - now_ms


def estimate(current: int, previous: int, remaining: int, window: int) -> int:
    """The sliding-window count: this bucket in full plus the previous one pro rata, floored."""
    return current + previous * remaining // window


def check_key(kind: str, key: object) -> None:
    if not isinstance(key, str):
        raise TypeError(f"{kind} must be a string, got {type(key).__name__}")
    if not key:
        raise ValueError(f"{kind} must not be empty")


def check_value(value: object) -> None:
    if not isinstance(value, bytes):
        raise TypeError(f"value must be bytes, got {type(value).__name__}")


def check_expected(expected: object) -> None:
    if expected is not None and not isinstance(expected, bytes):
        raise TypeError(f"expected must be bytes or None, got {type(expected).__name__}")


def _check_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


def check_ttl(ttl: object) -> None:
    if ttl is not None and _check_number("ttl", ttl) <= 0:
        raise ValueError(f"ttl must be positive seconds or None, got {ttl!r}")


def check_count_args(hits: Sequence[tuple[str, float]], now: object, amount: object) -> None:
    _check_number("now", now)
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError(f"amount must be an integer, got {type(amount).__name__}")
    if amount < 0:
        raise ValueError(f"amount must be >= 0, got {amount}")
    for hit in hits:
        if not isinstance(hit, tuple) or len(hit) != 2:
            raise TypeError(f"each hit must be a (key, window_seconds) tuple, got {hit!r}")
        key, window = hit
        check_key("counter key", key)
        if _check_number("window", window) < 0.001:
            raise ValueError(f"window must be at least 0.001 seconds, got {window!r}")


def check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


def parse_stream_id(value: object) -> tuple[int, int]:
    """Parse `"<ms>"` or `"<ms>-<seq>"` into a pair; a bare `"<ms>"` means `"<ms>-0"`."""
    if not isinstance(value, str):
        raise TypeError(f"stream id must be a string, got {type(value).__name__}")
    match = _STREAM_ID.fullmatch(value)
    if match is None:
        raise ValueError(f"stream id must look like '<ms>' or '<ms>-<seq>', got {value!r}")
    ms, seq = int(match[1]), int(match[2] or 0)
    if ms >= 2**64 or seq >= 2**64:
        raise ValueError(f"stream id out of range: {value!r}")
    return ms, seq


async def deliver(
    handlers: Sequence[Callable[..., Awaitable[None] | None]], channel: str, *message: bytes
) -> None:
    """Run each handler on `message` (reconnect listeners: on nothing) in turn; a failing
    handler is logged, never fatal."""
    for handler in handlers:
        try:
            result = handler(*message)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("state.handler_failed", channel=channel)
