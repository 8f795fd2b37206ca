"""The running policy: loaded, validated before every swap, watched, and reloaded everywhere."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import tzinfo
from pathlib import Path
from typing import Any, Literal

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
from gateway.policy.distribution import (
    Activation,
    BundleRefused,
    Distribution,
    bundle_root,
    load_public_keys,
    load_signing_key,
    materialise,
    sign_bundle,
    verify_record,
)
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
        self.source = config.source
        # The store's activation sequence in force, and the last one refused (not retried).
        self.seq: int | None = None
        self._refused: int | None = None
        if config.source == "store":
            if backend is None:
                raise ConfigError("policy.source: store needs a state backend")
            self._distribution = Distribution(backend, config.reload_channel)
            self._public_keys = load_public_keys(config.public_keys)
            # Loaded in start(): the store is asynchronous. Until then there is no policy.
            self._current_or_none: PolicyBundle | None = None
            return
        self._current_or_none = self._validated(validate(self._dir, clock(), config.tz))
        self._seen = self._signature()

    def _validated(self, bundle: PolicyBundle) -> PolicyBundle:
        for check in self._validators:
            check(bundle)
        return bundle

    @property
    def current(self) -> PolicyBundle:
        if self._current_or_none is None:
            raise ConfigError("policy: no bundle loaded from the store yet")
        return self._current_or_none

    @property
    def _current(self) -> PolicyBundle:
        return self.current

    @_current.setter
    def _current(self, bundle: PolicyBundle) -> None:
        self._current_or_none = bundle

    def on_swap(self, listener: Callable[[PolicyBundle], None]) -> None:
        """Call `listener(new_bundle)` after every successful swap (the decision cache clears)."""
        self._listeners.append(listener)

    async def start(self) -> None:
        if self.source == "store":
            await self._start_from_store()
            return
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
        """Re-read the files (or the store's active bundle); swap only if they parse, their
        test cases pass and, from the store, the signature verifies."""
        if self.source == "store":
            return await self._reload_from_store(trigger)
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

    # --- policy.source: store ---------------------------------------------------------------

    async def _start_from_store(self) -> None:
        """Load the active bundle; no active bundle, or one that fails, stops the start-up:
        there is no last good policy yet, and a stale local copy could run a policy the
        fleet has moved on from."""
        try:
            active = await self._distribution.active()
        except StateUnavailable as exc:
            raise ConfigError(
                f"policy.source store: the state backend is unreachable: {exc}"
            ) from None
        if active is None:
            raise ConfigError(
                "policy.source store: no policy bundle in the store (push one with "
                "`datagate policy push DIR`)"
            )
        seq, version = active
        self._current = await self._fetch(seq, version)
        self.seq = seq
        for listener in self._listeners:
            listener(self._current)
        log.info("policy_loaded", trigger="start", version=version, seq=seq, source="store")
        await self._backend.subscribe(self._config.reload_channel, self._store_notice)  # type: ignore[union-attr]
        self._task = asyncio.create_task(self._poll_store(), name="policy-store-check")

    async def _fetch(self, seq: int, version: str) -> PolicyBundle:
        raw = await self._distribution.record(version)
        if raw is None:
            raise BundleRefused(f"bundle {version} (sequence {seq}) is not in the store")
        record = verify_record(raw, self._public_keys)
        directory = await asyncio.to_thread(materialise, record, bundle_root())
        return self._validated(
            await asyncio.to_thread(validate, directory, self._clock(), self._config.tz)
        )

    async def _reload_from_store(self, trigger: str) -> ReloadResult:
        async with self._lock:
            current = self._current
            try:
                active = await self._distribution.active()
            except StateUnavailable as exc:
                log.warning("policy_store_check_failed", error=str(exc), version=current.version)
                return ReloadResult("unchanged", current.version, str(exc))
            if active is None or active[0] in (self.seq, self._refused):
                return ReloadResult("unchanged", current.version)
            seq, version = active
            try:
                bundle = await self._fetch(seq, version)
            except ConfigError as exc:
                self._refused = seq
                message = (
                    f"policy bundle {version} (sequence {seq}) refused, keeping version "
                    f"{current.version}: {exc}"
                )
                log.error(
                    "policy_rejected",
                    trigger=trigger,
                    version=current.version,
                    refused=version,
                    seq=seq,
                    source="store",
                    error=str(exc),
                )
                await self._report(message)
                return ReloadResult("rejected", current.version, message)
            self._current = bundle
            self.seq = seq
            for listener in self._listeners:
                listener(bundle)
            log.info(
                "policy_loaded",
                trigger=trigger,
                version=version,
                seq=seq,
                previous=current.version,
                source="store",
            )
            return ReloadResult("loaded", version)

    async def push(self, content: dict[str, Any], *, by: str, message: str) -> Activation:
        """Validate and test `content` as the gateway would load it, sign it with
        policy.signing_key and make it the active bundle (the admin API's push).
        ConfigError: not store-sourced, no usable key, or the bundle fails."""
        if self.source != "store":
            raise ConfigError("policy.source is files: bundles are pushed to a store")
        key = load_signing_key(self._config.signing_key)
        with tempfile.TemporaryDirectory(prefix="datagate-push-") as tmp:
            directory = await asyncio.to_thread(
                materialise, {"version": "candidate", **content}, Path(tmp)
            )
            self._validated(
                await asyncio.to_thread(validate, directory, self._clock(), self._config.tz)
            )
        record = sign_bundle(content, key, by=by, at=self._clock(), message=message)
        return await self._distribution.push(record)

    async def history(self) -> tuple[list[Activation], tuple[int, str] | None]:
        if self.source != "store":
            raise ConfigError("policy.source is files: there is no bundle history")
        return await self._distribution.history(), await self._distribution.active()

    async def _store_notice(self, _: bytes) -> None:
        await self._reload_from_store("notice")

    async def _poll_store(self) -> None:
        # The pub/sub notice is the fast path; this catches a notice lost while disconnected.
        while True:
            await asyncio.sleep(self._config.store_interval)
            try:
                await self._reload_from_store("check")
            except Exception:  # the checker must outlive any one bad bundle
                log.exception("policy_store_check_failed", version=self.current.version)
