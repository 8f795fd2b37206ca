"""The revoked-token deny list: shared in the state backend, read from a local view."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable

import orjson

from gateway.errors import GatewayError, StateUnavailable
from gateway.logs import get_logger
from gateway.state.base import StateBackend

log = get_logger("datagate.identity")

REVOKED_HASH = "revoked_jti"  # field: jti, value: revoked-until (epoch seconds, ASCII)
REVOKED_CHANNEL = "revoked_jti"  # message: {"jti": ..., "until": ...}


class RevocationList:
    """Which token ids (jti) are revoked, checked on every request without a round trip.

    The view is loaded in full at start and every `reload_interval` seconds, and kept
    current in between by pub/sub. A view older than two reload intervals, or whose last
    reload failed, is not trusted: `check` then refuses with 503 (fail closed).
    """

    def __init__(
        self,
        backend: StateBackend,
        *,
        clock: Callable[[], float] = time.time,
        age_clock: Callable[[], float] = time.monotonic,
        reload_interval: float = 30.0,
        retry_interval: float = 1.0,
    ) -> None:
        self._backend = backend
        self._clock = clock
        # How old the view is, on a clock that wall-clock jumps do not move.
        self._age_clock = age_clock
        self._reload_interval = reload_interval
        self._retry_interval = retry_interval
        self._revoked: dict[str, float] = {}
        self._loaded_at: float | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Subscribe, then load (in this order, so no change falls between the two).

        With the backend down this still returns: the view stays untrusted (requests get
        503) until a reload succeeds; the backend keeps the subscription registered.
        """
        self._backend.on_reconnect(self.reload)
        try:
            await self._backend.subscribe(REVOKED_CHANNEL, self._on_message)
        except StateUnavailable as exc:
            log.error("revocation_subscribe_failed", error=str(exc))
        await self.reload()
        self._task = asyncio.create_task(self._reload_forever(), name="revocation-reload")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @property
    def trusted(self) -> bool:
        loaded = self._loaded_at
        return loaded is not None and self._age_clock() - loaded <= 2 * self._reload_interval

    def check(self, jti: str | None) -> None:
        """Raise 401 `revoked` for a revoked jti, 503 when the view cannot be trusted."""
        if not self.trusted:
            raise GatewayError(
                "unavailable",
                "the token revocation list cannot be read",
                reason="revocation_unavailable",
            )
        if jti is None:
            return
        until = self._revoked.get(jti)
        if until is not None and self._clock() < until:
            raise GatewayError(
                "unauthenticated",
                "the token has been revoked",
                reason="revoked",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )

    def revoked(self) -> dict[str, float]:
        """The current view: jti -> revoked until (epoch seconds), expired entries left out."""
        now = self._clock()
        return {jti: until for jti, until in self._revoked.items() if until > now}

    async def revoke(self, jti: str, until: float) -> None:
        """Revoke `jti` until `until` (epoch seconds; use the token's `exp`), in every
        process. Raises ValueError for a bad jti or a past `until`, StateUnavailable when
        the backend cannot store it."""
        if not isinstance(jti, str) or not jti:
            raise ValueError("jti must be a non-empty string")
        if isinstance(until, bool) or not isinstance(until, int | float) or math.isnan(until):
            raise ValueError("until must be a number of seconds since the epoch")
        if until <= self._clock():
            raise ValueError("until is in the past")
        await self._backend.hset(REVOKED_HASH, jti, repr(float(until)).encode())
        self._revoked[jti] = float(until)
        await self._backend.publish(
            REVOKED_CHANNEL, orjson.dumps({"jti": jti, "until": float(until)})
        )

    async def reload(self) -> None:
        """Replace the view with the backend's list and drop expired entries from both."""
        try:
            raw = await self._backend.hgetall(REVOKED_HASH)
        except StateUnavailable as exc:
            self._loaded_at = None
            log.error("revocation_reload_failed", error=str(exc))
            return
        now = self._clock()
        view: dict[str, float] = {}
        expired: list[str] = []
        for jti, value in raw.items():
            until = _parse_until(value)
            if until is None:
                # An entry we cannot read stays revoked: refusing a good token is the
                # safe side of the mistake.
                log.error("revocation_entry_unreadable", jti=jti)
                until = math.inf
            if until <= now:
                expired.append(jti)
            else:
                view[jti] = until
        self._revoked = view
        self._loaded_at = self._age_clock()
        for jti in expired:
            with contextlib.suppress(StateUnavailable):
                await self._backend.hdel(REVOKED_HASH, jti)

    async def _reload_forever(self) -> None:
        while True:
            wait = self._reload_interval if self._loaded_at is not None else self._retry_interval
            await asyncio.sleep(wait)
            await self.reload()

    def _on_message(self, message: bytes) -> None:
        try:
            doc = orjson.loads(message)
            jti, until = doc["jti"], float(doc["until"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.error("revocation_message_unreadable")
            return
        if isinstance(jti, str) and jti:
            self._revoked[jti] = max(until, self._revoked.get(jti, until))


def _parse_until(value: bytes) -> float | None:
    try:
        until = float(value)
    except ValueError:
        return None
    return None if math.isnan(until) else until
