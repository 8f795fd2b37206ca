"""Breakers in the shared state backend, with a local view so the request path never waits."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from gateway.breaker import core
from gateway.breaker.config import SCOPES, BreakerConfig
from gateway.breaker.core import AUTOMATION, BreakerState, pair_key
from gateway.errors import StateUnavailable
from gateway.logs import get_logger
from gateway.state.base import StateBackend

HASH = "breakers"
CHANNEL = "breakers"
_ATTEMPTS = 16  # compare-and-set retries before giving up under contention

log = get_logger("datagate.breaker")

Transition = Callable[[BreakerState], BreakerState | None]


class Breakers:
    """Shared breaker state plus this process's view of it.

    Every change is one compare-and-set on the `breakers` hash (the stored bytes carry the
    version, so a concurrent change makes the write fail and the transition is recomputed)
    and is then published on the `breakers` channel. The view applies published changes,
    reloads the whole hash every `reload_interval`, and is trusted only while both the
    reloads and this process's own heartbeat messages keep arriving.
    """

    def __init__(
        self,
        backend: StateBackend,
        config: BreakerConfig,
        clock: Callable[[], float] = time.time,
        age_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.config = config
        self.clock = clock
        # How fresh the view is, on a clock that wall-clock jumps do not move.
        self.age_clock = age_clock
        self._versions: dict[str, int] = {}
        self._on_reset: list[Callable[[BreakerState], None]] = []
        # Only breakers that can refuse or admit probes; empty in the common case.
        self.active: dict[str, BreakerState] = {}
        # The same breakers by scope then key, so a check builds no strings.
        self._index: dict[str, dict[str, BreakerState]] = {scope: {} for scope in SCOPES}
        self._windows: dict[str, core.AnomalyWindow] = {}
        self._reload_ok = float("-inf")
        self._beat_ok = float("-inf")
        self._fresh_until = float("-inf")
        self._beat_id = f"{os.getpid()}-{id(self):x}"
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe, load the shared state and start the refresh loop.

        A backend that is down at start leaves the view untrusted (fail closed) and the
        loop keeps retrying."""
        self._beat_ok = self.age_clock()
        self.backend.on_reconnect(self._resync)
        # A corrupt record leaves the view untrusted too: we cannot know what it said.
        with contextlib.suppress(StateUnavailable, ValueError):
            # If Redis is down, its backend keeps the handler and subscribes it on return.
            await self.backend.subscribe(CHANNEL, self._on_message)
            await self.reload()
        self._task = asyncio.create_task(self._refresh_loop(), name="breaker-refresh")

    async def close(self) -> None:
        # The flag as well as cancel(): a client library may swallow a cancellation.
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # ---- the request path (no awaits) ----------------------------------------------------

    @property
    def trusted(self) -> bool:
        """True while the view is known to be current: reloads and heartbeats are arriving."""
        return self.age_clock() < self._fresh_until

    def _refreshed(self) -> None:
        self._fresh_until = min(self._reload_ok, self._beat_ok) + self.config.stale_after

    def check(
        self,
        subject: str | None,
        department: str | None,
        dataset: str | None,
        client_ip: str | None = None,
    ) -> Sequence[BreakerState]:
        """The non-closed breakers for this caller, dataset and client address; empty in the
        common case."""
        if not self.active:
            return ()
        index = self._index
        hits = []
        addresses = index["address"]
        if client_ip and addresses:
            for key in core.address_keys(client_ip):
                if (s := addresses.get(key)) is not None:
                    hits.append(s)
        if subject and (s := index["principal"].get(subject)) is not None:
            hits.append(s)
        if department and (s := index["department"].get(department)) is not None:
            hits.append(s)
        if dataset:
            if (s := index["dataset"].get(dataset)) is not None:
                hits.append(s)
            pairs = index["pair"]
            if subject and pairs and (s := pairs.get(pair_key(subject, dataset))) is not None:
                hits.append(s)
        return hits

    # ---- transitions ---------------------------------------------------------------------

    async def transition(self, scope: str, key: str, fn: Transition) -> BreakerState | None:
        """Apply `fn` atomically to one breaker; None when `fn` made no change."""
        name = core.field_name(scope, key)
        for _ in range(_ATTEMPTS):
            raw = await self.backend.hget(HASH, name)
            current = BreakerState.from_bytes(raw) if raw else BreakerState(scope, key)
            new = fn(current)
            if new is None:
                return None
            if await self.backend.hcas(HASH, name, raw, new.to_bytes()):
                self._apply(new)
                try:
                    await self.backend.publish(
                        CHANNEL, orjson.dumps({"type": "state", **new.to_dict()})
                    )
                except StateUnavailable as exc:  # stored; other views catch up on reload
                    log.warning("breaker_publish_failed", breaker=name, error=str(exc))
                log.info(
                    "breaker_changed",
                    breaker=name,
                    state=new.state,
                    version=new.version,
                    by=new.by,
                    reason=new.reason,
                    until=new.until,
                )
                return new
        raise StateUnavailable(f"breaker {name}: too much contention to change it")

    async def trip(
        self, scope: str, key: str, reason: str, incident_id: str | None
    ) -> BreakerState | None:
        now = self.clock()
        return await self.transition(
            scope, key, lambda s: core.trip(s, self.config, now, reason, incident_id)
        )

    async def reserve_probe(self, name: str) -> BreakerState | None:
        """Atomically take a half-open probe slot of breaker `name`; None if none is free."""
        scope, key = name.split(":", 1)
        now = self.clock()
        return await self.transition(scope, key, lambda s: core.reserve_probe(s, self.config, now))

    async def release_probe(self, name: str) -> BreakerState | None:
        """Give back a probe slot whose request never ran (refused by another breaker)."""
        scope, key = name.split(":", 1)
        now = self.clock()
        return await self.transition(scope, key, lambda s: core.release_probe(s, now))

    async def probe_done(self, name: str, clean: bool) -> BreakerState | None:
        scope, key = name.split(":", 1)
        now = self.clock()
        return await self.transition(
            scope, key, lambda s: core.probe_result(s, self.config, now, clean)
        )

    async def soc_open(
        self, scope: str, key: str, by: str, note: str, until: float | None, forced: bool
    ) -> BreakerState:
        core.check_target(scope, key)
        now = self.clock()
        if not forced and (until is None or until <= now):
            raise ValueError("until: must be a time in the future")
        new = await self.transition(
            scope, key, lambda s: core.soc_open(s, now, by, note, until, forced)
        )
        assert new is not None  # soc_open always changes the record
        return new

    async def reset(self, scope: str, key: str, by: str, note: str) -> BreakerState:
        core.check_target(scope, key)
        if not note.strip():
            raise ValueError("note: a reset requires a note")
        now = self.clock()
        new = await self.transition(scope, key, lambda s: core.reset(s, now, by, note))
        assert new is not None  # reset always changes the record
        return new

    async def list_all(self) -> list[BreakerState]:
        """Every breaker ever changed, read from the shared state (not the local view)."""
        raw = await self.backend.hgetall(HASH)
        return sorted((BreakerState.from_bytes(v) for v in raw.values()), key=lambda s: s.field)

    async def get(self, scope: str, key: str) -> BreakerState | None:
        raw = await self.backend.hget(HASH, core.field_name(scope, key))
        return BreakerState.from_bytes(raw) if raw else None

    # ---- anomaly rate ----------------------------------------------------------------------

    def count_outcome(
        self, scope: str, key: str, anomalous: bool, now: float
    ) -> tuple[int, int] | None:
        """Count one finished request for the rate rule; (requests, anomalous) when it trips.

        Counted per process: each process trips on what it sees, and a trip anywhere is
        shared with all. The window restarts after a trip so one burst trips once."""
        name = core.field_name(scope, key)
        window = self._windows.get(name)
        if window is None:
            window = self._windows[name] = core.AnomalyWindow(self.config.anomaly_window)
        total, anomalies = window.add(now, anomalous)
        if core.rate_exceeded(total, anomalies, self.config):
            del self._windows[name]
            return total, anomalies
        return None

    # ---- the view ----------------------------------------------------------------------------

    async def reload(self) -> None:
        """Reload the whole hash; changes newer than the snapshot (published meanwhile) win.

        Raises StateUnavailable, or ValueError for a corrupt record; either way the view
        is not marked fresh."""
        raw = await self.backend.hgetall(HASH)
        for value in raw.values():
            self._apply(BreakerState.from_bytes(value))
        self._reload_ok = self.age_clock()
        self._refreshed()

    async def _resync(self) -> None:
        """After a lost pub/sub connection: the changes published meanwhile were missed."""
        with contextlib.suppress(StateUnavailable, ValueError):  # the loop retries
            await self.reload()

    def on_reset(self, listener: Callable[[BreakerState], None]) -> None:
        """Call `listener(state)` when this view learns that the SOC closed a breaker."""
        self._on_reset.append(listener)

    def _apply(self, s: BreakerState) -> None:
        name = s.field
        if s.version <= self._versions.get(name, -1):
            return
        self._versions[name] = s.version
        if s.state in ("open", "half_open", "forced_open"):
            self.active[name] = s
            self._index[s.scope][s.key] = s
        else:
            was_open = self.active.pop(name, None) is not None
            self._index[s.scope].pop(s.key, None)
            if was_open and s.state == "closed" and s.by != AUTOMATION:
                for listener in self._on_reset:
                    listener(s)

    async def _reanchor(self) -> None:
        """The clock was set back past some breakers' times: start their cool-downs again
        from now (one atomic change each, seen by every process)."""
        now = self.clock()
        for s in list(self.active.values()):
            if core.reanchor(s, now) is None:
                continue
            log.warning("breaker_clock_set_back", breaker=s.field, opened_at=s.opened_at, now=now)
            await self.transition(s.scope, s.key, lambda current: core.reanchor(current, now))

    async def _on_message(self, message: bytes) -> None:
        try:
            data: dict[str, Any] = orjson.loads(message)
            if data.get("type") == "beat":
                if data.get("id") == self._beat_id:
                    self._beat_ok = self.age_clock()
                    self._refreshed()
                return
            data.pop("type", None)
            self._apply(BreakerState.from_dict(data))
        except (ValueError, TypeError) as exc:
            log.warning("breaker_bad_message", error=str(exc))

    async def _refresh_loop(self) -> None:
        while not self._stopping:
            try:
                await self.backend.publish(
                    CHANNEL, orjson.dumps({"type": "beat", "id": self._beat_id})
                )
                await self.reload()
                await self._reanchor()
            except StateUnavailable as exc:
                log.warning("breaker_view_stale", error=str(exc))
            except ValueError as exc:  # a corrupt record: stay untrusted, keep trying
                log.error("breaker_bad_record", error=str(exc))
            now = self.clock()
            for name in [n for n, w in self._windows.items() if w.idle(now)]:
                del self._windows[name]
            await asyncio.sleep(self.config.reload_interval)
