"""The state backend protocol: what every process-shared piece of state is built on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from gateway.errors import StateUnavailable

__all__ = ["MessageHandler", "ReconnectListener", "StateBackend", "StateUnavailable"]

MessageHandler = Callable[[bytes], Awaitable[None] | None]
ReconnectListener = Callable[[], Awaitable[None] | None]


class StateBackend(Protocol):
    """Shared state: counters, key-value, hashes, pub/sub and streams.

    Every method raises `StateUnavailable` when the store cannot answer, so callers fail
    closed; bad arguments raise TypeError/ValueError with a one-line message. Keys are given
    without the backend's prefix; the backend adds it. Counters, key-values, hashes and
    streams are separate namespaces (the same name in two of them never collides).
    Values are bytes. `now` is seconds since the epoch from the caller's clock.
    """

    name: str

    async def start(self) -> None:
        """Prepare (Redis: load the Lua scripts). Raises StateUnavailable if the store does
        not answer; the backend stays usable and works as soon as the store does."""

    async def close(self) -> None:
        """Stop the pub/sub listener and release connections."""

    async def ping(self) -> None:
        """Return if the store answers (for `/readyz`), else raise StateUnavailable."""

    async def count(
        self, hits: Sequence[tuple[str, float]], now: float, amount: int = 1
    ) -> list[int]:
        """Sliding-window counters: add `amount` to each (key, window_seconds) and return the
        count over the last window for each, all in one round trip (`amount=0` only reads).

        The count is the two-fixed-bucket approximation, in integer milliseconds: buckets
        are `window` long and aligned to the epoch; the answer is this bucket's count plus
        the previous bucket's count times the share of the window still overlapping it,
        floored (`current + previous * remaining_ms // window_ms`). It equals the exact
        sliding count when hits are spread evenly, never exceeds current + previous, and
        forgets a bucket entirely two windows after it began. Both backends give identical
        answers for the same calls, as long as `now` never goes back by more than one
        bucket. Windows are rounded to whole milliseconds (at least 1 ms).
        """

    async def get(self, key: str) -> bytes | None:
        """The value, or None when missing or expired."""

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store `value`; `ttl` (seconds, > 0) makes it expire, None keeps it until replaced.
        TTLs run on the store's clock (memory: monotonic), not on `now`."""

    async def delete(self, key: str) -> bool:
        """Remove the key; True if it existed."""

    async def compare_and_set(
        self, key: str, expected: bytes | None, new: bytes, ttl: float | None = None
    ) -> bool:
        """Atomically store `new` if the current value is `expected` (None: only if missing,
        i.e. create-only) and return True; otherwise change nothing and return False.
        The new value gets `ttl` like `set` (None: no expiry)."""

    # Hashes: named collections (grants, breakers, incidents); fields never expire.
    async def hget(self, name: str, field: str) -> bytes | None: ...

    async def hset(self, name: str, field: str, value: bytes) -> None: ...

    async def hdel(self, name: str, field: str) -> bool: ...

    async def hgetall(self, name: str) -> dict[str, bytes]: ...

    async def hcas(self, name: str, field: str, expected: bytes | None, new: bytes) -> bool:
        """`compare_and_set` for one hash field (expected None: create-only)."""

    async def publish(self, channel: str, message: bytes) -> None:
        """Send `message` to every subscriber of `channel` (Redis: in every process).

        Delivery is at most once: a process that is disconnected from Redis when a message
        is published never sees it, so treat messages as hints to re-read state.
        """

    def on_reconnect(self, listener: ReconnectListener) -> None:
        """Call `listener()` (sync or async) each time the pub/sub connection is back after a
        loss (a restarted Redis, a Sentinel failover): messages published meanwhile were
        missed, so the listener re-reads the state it keeps a view of. Memory never loses it."""

    async def subscribe(self, channel: str, handler: MessageHandler) -> None:
        """Call `handler(message)` (sync or async) for every later message on `channel`.

        Handlers run on the event loop in one task per backend, after `publish` returns,
        one message at a time in publishing order; an exception in a handler is logged and
        delivery goes on. Subscribing the same handler twice delivers once. Redis: returns
        once the subscription is confirmed; resubscribes by itself after a reconnect.
        """

    async def xadd(self, stream: str, value: bytes, maxlen: int | None = None) -> str:
        """Append `value` and return its id, `"<ms>-<seq>"`, increasing like Redis ids.
        With `maxlen`, older entries are trimmed: at least the newest `maxlen` are kept
        (memory trims exactly; Redis trims approximately, in whole blocks)."""

    async def xrange(
        self, stream: str, after: str = "0", count: int = 100
    ) -> list[tuple[str, bytes]]:
        """Up to `count` entries with ids strictly after `after` (`"<ms>"` or
        `"<ms>-<seq>"`), oldest first. Page with `after=page[-1][0]`."""
