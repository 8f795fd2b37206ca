"""The in-process state backend: the default for one process, the demo and tests."""

from __future__ import annotations

import asyncio
import bisect
import math
import time
from collections.abc import Callable, Sequence

from gateway.state.base import MessageHandler, ReconnectListener
from gateway.state.common import (
    check_count_args,
    check_expected,
    check_key,
    check_positive_int,
    check_ttl,
    check_value,
    deliver,
    estimate,
    parse_stream_id,
    window_ms,
    window_position,
)

__all__ = ["MemoryBackend"]

# How often (in seconds of the relevant clock) stale counters and expired keys are swept.
_SWEEP_INTERVAL = 60.0

_StreamEntry = tuple[int, int, bytes]


class MemoryBackend:
    """State in this process's memory, with the same answers as `RedisBackend`.

    `clock` (monotonic seconds) drives key TTLs; `wall` (epoch seconds) makes stream ids.
    Counter windows use the `now` the caller passes, as in Redis. Nothing here awaits
    between reading and writing, so every method is atomic on the event loop.
    """

    name = "memory"

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._wall = wall
        # (key, window ms) -> {bucket index: count}; only the newest three buckets are kept.
        self._counters: dict[tuple[str, int], dict[int, int]] = {}
        self._counters_swept = -math.inf
        # key -> (value, expires_at on `clock` or None)
        self._values: dict[str, tuple[bytes, float | None]] = {}
        self._values_swept = clock()
        self._hashes: dict[str, dict[str, bytes]] = {}
        self._streams: dict[str, list[_StreamEntry]] = {}
        self._handlers: dict[str, list[MessageHandler]] = {}
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self._dispatcher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Nothing to connect; the pub/sub dispatcher starts with the first subscription."""

    async def close(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            await asyncio.gather(self._dispatcher, return_exceptions=True)
            self._dispatcher = None

    async def ping(self) -> None:
        """Always answers: the state is in this process."""

    # -- counters ---------------------------------------------------------------------------

    async def count(
        self, hits: Sequence[tuple[str, float]], now: float, amount: int = 1
    ) -> list[int]:
        check_count_args(hits, now, amount)
        if now - self._counters_swept >= _SWEEP_INTERVAL:
            self._sweep_counters(now)
        results = []
        for key, window_seconds in hits:
            window = window_ms(window_seconds)
            index, remaining = window_position(now, window)
            buckets = self._counters.get((key, window))
            if amount:
                if buckets is None:
                    buckets = self._counters[(key, window)] = {}
                buckets[index] = buckets.get(index, 0) + amount
                # Keep the buckets a call up to one bucket late still reads (as Redis does).
                # Older is judged from this call's bucket, not the newest one: after the
                # clock is set back, the newest lie ahead and this one must stay.
                if len(buckets) > 3:
                    for old in [i for i in buckets if i < index - 2]:
                        del buckets[old]
            if buckets is None:
                results.append(0)
                continue
            current, previous = buckets.get(index, 0), buckets.get(index - 1, 0)
            results.append(estimate(current, previous, remaining, window))
        return results

    def _sweep_counters(self, now: float) -> None:
        self._counters_swept = now
        stale = [
            name
            for name, buckets in self._counters.items()
            if max(buckets) < window_position(now, name[1])[0] - 1
        ]
        for name in stale:
            del self._counters[name]

    # -- key-value --------------------------------------------------------------------------

    def _live(self, key: str) -> bytes | None:
        entry = self._values.get(key)
        if entry is None:
            return None
        value, expires = entry
        if expires is not None and expires <= self._clock():
            del self._values[key]
            return None
        return value

    def _store(self, key: str, value: bytes, ttl: float | None) -> None:
        now = self._clock()
        if now - self._values_swept >= _SWEEP_INTERVAL:
            self._values_swept = now
            expired = [k for k, (_, exp) in self._values.items() if exp is not None and exp <= now]
            for k in expired:
                del self._values[k]
        self._values[key] = (value, None if ttl is None else now + ttl)

    async def get(self, key: str) -> bytes | None:
        check_key("key", key)
        return self._live(key)

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        check_key("key", key)
        check_value(value)
        check_ttl(ttl)
        self._store(key, value, ttl)

    async def delete(self, key: str) -> bool:
        check_key("key", key)
        existed = self._live(key) is not None
        self._values.pop(key, None)
        return existed

    async def compare_and_set(
        self, key: str, expected: bytes | None, new: bytes, ttl: float | None = None
    ) -> bool:
        check_key("key", key)
        check_expected(expected)
        check_value(new)
        check_ttl(ttl)
        if self._live(key) != expected:
            return False
        self._store(key, new, ttl)
        return True

    # -- hashes -----------------------------------------------------------------------------

    async def hget(self, name: str, field: str) -> bytes | None:
        check_key("hash name", name)
        check_key("hash field", field)
        return self._hashes.get(name, {}).get(field)

    async def hset(self, name: str, field: str, value: bytes) -> None:
        check_key("hash name", name)
        check_key("hash field", field)
        check_value(value)
        self._hashes.setdefault(name, {})[field] = value

    async def hdel(self, name: str, field: str) -> bool:
        check_key("hash name", name)
        check_key("hash field", field)
        fields = self._hashes.get(name)
        if fields is None or field not in fields:
            return False
        del fields[field]
        if not fields:
            del self._hashes[name]
        return True

    async def hgetall(self, name: str) -> dict[str, bytes]:
        check_key("hash name", name)
        return dict(self._hashes.get(name, {}))

    async def hcas(self, name: str, field: str, expected: bytes | None, new: bytes) -> bool:
        check_key("hash name", name)
        check_key("hash field", field)
        check_expected(expected)
        check_value(new)
        if self._hashes.get(name, {}).get(field) != expected:
            return False
        self._hashes.setdefault(name, {})[field] = new
        return True

    # -- publish/subscribe ------------------------------------------------------------------

    async def publish(self, channel: str, message: bytes) -> None:
        check_key("channel", channel)
        check_value(message)
        if self._handlers.get(channel):
            self._queue.put_nowait((channel, message))

    def on_reconnect(self, listener: ReconnectListener) -> None:
        """Nothing to do: one process's memory is never disconnected."""

    async def subscribe(self, channel: str, handler: MessageHandler) -> None:
        check_key("channel", channel)
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {type(handler).__name__}")
        handlers = self._handlers.setdefault(channel, [])
        if handler not in handlers:
            handlers.append(handler)
        if self._dispatcher is None:
            self._dispatcher = asyncio.create_task(self._dispatch(), name="state-memory-pubsub")

    async def _dispatch(self) -> None:
        # Handlers run here, after `publish` returns, as they do with Redis.
        while True:
            channel, message = await self._queue.get()
            await deliver(list(self._handlers.get(channel, ())), channel, message)

    # -- streams ----------------------------------------------------------------------------

    async def xadd(self, stream: str, value: bytes, maxlen: int | None = None) -> str:
        check_key("stream", stream)
        check_value(value)
        if maxlen is not None:
            check_positive_int("maxlen", maxlen)
        entries = self._streams.setdefault(stream, [])
        ms = int(self._wall() * 1000)
        if entries and ms <= entries[-1][0]:
            ms, seq = entries[-1][0], entries[-1][1] + 1
        else:
            seq = 0
        entries.append((ms, seq, value))
        if maxlen is not None and len(entries) > maxlen:
            del entries[: len(entries) - maxlen]
        return f"{ms}-{seq}"

    async def xrange(
        self, stream: str, after: str = "0", count: int = 100
    ) -> list[tuple[str, bytes]]:
        check_key("stream", stream)
        start = parse_stream_id(after)
        check_positive_int("count", count)
        entries = self._streams.get(stream, [])
        first = bisect.bisect_right(entries, start, key=lambda e: (e[0], e[1]))
        return [(f"{ms}-{seq}", value) for ms, seq, value in entries[first : first + count]]
