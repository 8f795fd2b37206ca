"""The state backend protocol: what every process-shared piece of state is built on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from gateway.errors import StateUnavailable

__all__ = ["MessageHandler", "StateBackend", "StateUnavailable"]

MessageHandler = Callable[[bytes], Awaitable[None] | None]


class StateBackend(Protocol):
    """Shared state: counters, key-value, hashes, pub/sub and streams.

    Every method raises `StateUnavailable` when the store cannot answer, so callers fail
    closed. Keys are given without the backend's prefix; the backend adds it.
    Values are bytes. `now` is seconds since the epoch from the caller's clock.
    """

    name: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None: ...

    # Sliding-window counters: add `amount` to each (key, window_seconds) and return the
    # count over the last window for each, all in one round trip.
    async def count(
        self, hits: Sequence[tuple[str, float]], now: float, amount: int = 1
    ) -> list[int]: ...

    # Key-value with optional TTL (seconds).
    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None: ...

    async def delete(self, key: str) -> bool: ...

    async def compare_and_set(
        self, key: str, expected: bytes | None, new: bytes, ttl: float | None = None
    ) -> bool: ...

    # Hashes: named collections (grants, breakers, incidents).
    async def hget(self, name: str, field: str) -> bytes | None: ...

    async def hset(self, name: str, field: str, value: bytes) -> None: ...

    async def hdel(self, name: str, field: str) -> bool: ...

    async def hgetall(self, name: str) -> dict[str, bytes]: ...

    async def hcas(self, name: str, field: str, expected: bytes | None, new: bytes) -> bool: ...

    # Publish/subscribe: handlers run on the event loop for every message on the channel.
    async def publish(self, channel: str, message: bytes) -> None: ...

    async def subscribe(self, channel: str, handler: MessageHandler) -> None: ...

    # Append-only streams: xadd returns the entry id; xrange returns entries after an id.
    async def xadd(self, stream: str, value: bytes, maxlen: int | None = None) -> str: ...

    async def xrange(
        self, stream: str, after: str = "0", count: int = 100
    ) -> list[tuple[str, bytes]]: ...
