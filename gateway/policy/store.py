"""The running policy: loaded, validated before every swap, watched, and reloaded everywhere."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import tzinfo
from pathlib import Path
from typing import Literal

import structlog

from gateway.errors import ConfigError, StateUnavailable
from gateway.policy.bundle import (
    FILES,
    TESTS_DIR,
    PolicyBundle,
    parse_bundle,
    read_sources,
    version_of,
)
from gateway.policy.cases import case_files, load_cases, run_cases
from gateway.policy.config import PolicyConfig
from gateway.state.base import StateBackend

log = structlog.get_logger("datagate.policy")

OnRejected = Callable[[str], Awaitable[None] | None]


@dataclasses.dataclass(frozen=True, slots=True)
class ReloadResult:
    status: Literal["loaded", "unchanged", "rejected"]
    version: str  # the running version after the attempt
    message: str = ""


def validate(directory: Path, loaded_at: float, tz: tzinfo) -> PolicyBundle:
    """Parse the bundle in `directory` and run its test cases; ConfigError on any problem."""
    texts = read_sources(directory)
    bundle = parse_bundle(directory, texts, loaded_at)
    cases = [c for f in case_files(directory / TESTS_DIR) for c in load_cases(f)]
    failures = run_cases(bundle, cases, tz)
    if failures:
        more = f" (and {len(failures) - 1} more failing case(s))" if len(failures) > 1 else ""
        raise ConfigError(f"policy test failed: {failures[0]}{more}")
    return bundle


class PolicyStore:
    """Holds the current PolicyBundle and replaces it only with a validated one.

    The constructor loads the policy and raises ConfigError if it is invalid, so a gateway
    never starts without one. After `start()`, the files are polled every `watch_interval`
    seconds (when `watch`), and with a state backend each successful reload is announced on
    the reload channel so the other instances reload too.
    """

    def __init__(
        self,
        config: PolicyConfig,
        *,
        backend: StateBackend | None = None,
        clock: Callable[[], float] = time.time,
        on_rejected: OnRejected | None = None,
        validators: Sequence[Callable[[PolicyBundle], None]] = (),
    ) -> None:
        self._config = config
        # Checks other rooms make before a bundle may be used (mask strategies, upstream
        # names); each raises ConfigError.
        self._validators = tuple(validators)
        self._dir = config.dir
        self._backend = backend
        self._clock = clock
        self._on_rejected = on_rejected
        self._listeners: list[Callable[[PolicyBundle], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._current = self._validated(validate(self._dir, clock(), config.tz))
        self._seen = self._signature()

    def _validated(self, bundle: PolicyBundle) -> PolicyBundle:
        for check in self._validators:
            check(bundle)
        return bundle

    @property
    def current(self) -> PolicyBundle:
        return self._current

    def on_swap(self, listener: Callable[[PolicyBundle], None]) -> None:
        """Call `listener(new_bundle)` after every successful swap (the decision cache clears)."""
        self._listeners.append(listener)

    async def start(self) -> None:
        if self._backend is not None:
            await self._backend.subscribe(self._config.reload_channel, self._notice)
        if self._config.watch:
            self._task = asyncio.create_task(self._watch(), name="policy-watch")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def reload(self, trigger: str = "api") -> ReloadResult:
        """Re-read the files; swap only if they parse and their test cases pass."""
        async with self._lock:
            current = self._current
            try:
                texts = read_sources(self._dir)
                if version_of(texts) == current.version:
                    return ReloadResult("unchanged", current.version)
                bundle = self._validated(
                    await asyncio.to_thread(validate, self._dir, self._clock(), self._config.tz)
                )
            except ConfigError as exc:
                message = f"policy change rejected, keeping version {current.version}: {exc}"
                log.error(
                    "policy_rejected", trigger=trigger, version=current.version, error=str(exc)
                )
                await self._report(message)
                return ReloadResult("rejected", current.version, message)
            self._current = bundle
            for listener in self._listeners:
                listener(bundle)
            log.info(
                "policy_loaded", trigger=trigger, version=bundle.version, previous=current.version
            )
        if self._backend is not None and trigger != "notice":
            try:
                await self._backend.publish(self._config.reload_channel, bundle.version.encode())
            except StateUnavailable as exc:
                log.warning("policy_reload_notice_failed", error=str(exc))
        return ReloadResult("loaded", bundle.version)

    async def _report(self, message: str) -> None:
        if self._on_rejected is None:
            return
        result = self._on_rejected(message)
        if inspect.isawaitable(result):
            await result

    async def _notice(self, message: bytes) -> None:
        if message.decode(errors="replace") != self._current.version:
            await self.reload("notice")

    def _signature(self) -> tuple[tuple[str, float, int], ...]:
        paths = [self._dir / f for f in FILES] + case_files(self._dir / TESTS_DIR)
        out = []
        for path in paths:
            try:
                st = path.stat()
            except OSError:
                out.append((str(path), -1.0, -1))
            else:
                out.append((str(path), st.st_mtime, st.st_size))
        return tuple(out)

    async def _watch(self) -> None:
        # Reload once the files have stopped changing for one interval, so an editor's
        # half-written save is not mistaken for a bad policy.
        previous = self._seen
        while True:
            await asyncio.sleep(self._config.watch_interval)
            signature = await asyncio.to_thread(self._signature)
            if signature != self._seen and signature == previous:
                self._seen = signature
                try:
                    await self.reload("watch")
                except Exception:  # the watcher must outlive any one bad change
                    log.exception("policy_watch_failed", version=self._current.version)
            previous = signature
