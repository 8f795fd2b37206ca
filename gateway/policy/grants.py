"""Temporary grants: auto-expiring authorisations in the state backend, with a local view."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import math
import re
import secrets
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog

from gateway.errors import StateUnavailable
from gateway.policy.catalog import Catalog
from gateway.policy.config import GrantLifetimes
from gateway.policy.rules import ACTIONS
from gateway.state.base import StateBackend

log = structlog.get_logger("datagate.grants")

GRANTS_HASH = "grants"
GRANTS_CHANNEL = "grants-changed"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")
_FIELDS = frozenset(
    {
        "principal",
        "department",
        "dataset",
        "actions",
        "purpose",
        "not_before",
        "expires_at",
        "duration",
        "reason",
        "clearance",
    }
)

OnChange = Callable[[str, "Grant", str], Awaitable[None] | None]


class GrantError(ValueError):
    """A grant request that cannot be accepted; `problems` names every bad field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclasses.dataclass(frozen=True, slots=True)
class Grant:
    """A temporary authorisation of one principal or department on one dataset, for a purpose.

    It works from `not_before` (inclusive) until `expires_at` (exclusive), both epoch seconds.
    `clearance`, when set, is the clearance the grantee reads this dataset with.
    """

    id: str
    dataset: str
    actions: frozenset[str]
    purpose: str
    not_before: float
    expires_at: float
    reason: str
    granted_by: str
    created_at: float
    principal: str | None = None
    department: str | None = None
    clearance: int | None = None

    def covers(self, subject: str, department: str, action: str, purpose: str | None) -> bool:
        """Whether this grant is for this caller, action and purpose (time aside)."""
        return (
            action in self.actions
            and purpose == self.purpose
            and (self.principal == subject if self.principal else self.department == department)
        )

    def active(self, ts: float) -> bool:
        return self.not_before <= ts < self.expires_at

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "principal": self.principal,
            "department": self.department,
            "dataset": self.dataset,
            "actions": sorted(self.actions),
            "purpose": self.purpose,
            "not_before": iso(self.not_before),
            "expires_at": iso(self.expires_at),
            "reason": self.reason,
            "granted_by": self.granted_by,
            "created_at": iso(self.created_at),
            "clearance": self.clearance,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Grant:
        return cls(
            id=data["id"],
            dataset=data["dataset"],
            actions=frozenset(data["actions"]),
            purpose=data["purpose"],
            not_before=parse_time(data["not_before"], "not_before"),
            expires_at=parse_time(data["expires_at"], "expires_at"),
            reason=data["reason"],
            granted_by=data["granted_by"],
            created_at=parse_time(data["created_at"], "created_at"),
            principal=data.get("principal"),
            department=data.get("department"),
            clearance=data.get("clearance"),
        )


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def parse_time(value: Any, name: str) -> float:
    """Epoch seconds, or ISO 8601 with an offset; a time that `iso` can write back."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        ts = float(value)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{name}: not an ISO 8601 time: {value!r}") from None
        if parsed.tzinfo is None:
            raise ValueError(f"{name}: needs a UTC offset (e.g. +08:00 or Z): {value!r}")
        ts = parsed.timestamp()
    else:
        raise ValueError(f"{name}: expected an ISO 8601 time or epoch seconds, got {value!r}")
    try:
        iso(ts)
    except (OverflowError, ValueError, OSError):
        raise ValueError(f"{name}: not a time in the years 1 to 9999 (UTC): {value!r}") from None
    return ts


def new_grant(
    body: Any,
    *,
    catalog: Catalog,
    lifetimes: GrantLifetimes,
    granted_by: str,
    now: float,
) -> Grant:
    """Validate a grant request (the admin API's JSON body); every bad field is named."""
    if not isinstance(body, dict):
        raise GrantError(["body: expected a JSON object"])
    problems = [f"{k}: unknown field" for k in sorted(set(body) - _FIELDS)]

    def name(key: str, required: bool) -> str | None:
        value = body.get(key)
        if value is None:
            if required:
                problems.append(f"{key}: is required")
            return None
        if not isinstance(value, str) or not _NAME.match(value):
            problems.append(f"{key}: expected a name (letters, digits, _ . @ -), got {value!r}")
            return None
        return value

    principal, department = name("principal", False), name("department", False)
    if ("principal" in body) == ("department" in body):
        problems.append("principal/department: give exactly one of them")
    dataset_id = name("dataset", True)
    dataset = catalog.datasets.get(dataset_id) if dataset_id else None
    if dataset_id and dataset is None:
        problems.append(f"dataset: unknown dataset {dataset_id!r}")
    if dataset is not None and dataset.sharing == "none":
        problems.append(
            f"dataset: {dataset.id!r} has sharing none: only its owner department may use it"
        )
    purpose = name("purpose", True)
    actions = body.get("actions")
    if (
        not isinstance(actions, list)
        or not actions
        or not all(isinstance(a, str) and a in ACTIONS for a in actions)
    ):
        problems.append(f"actions: expected a non-empty list of {', '.join(ACTIONS)}")
        actions = []
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        problems.append("reason: is required (why this grant is needed)")
    clearance = body.get("clearance")
    if clearance is not None and (
        not isinstance(clearance, int) or isinstance(clearance, bool) or not 1 <= clearance <= 4
    ):
        problems.append(f"clearance: expected an integer 1..4, got {clearance!r}")
        clearance = None
    if clearance is not None and dataset is not None and clearance > dataset.level:
        problems.append(f"clearance: must be <= the dataset level {dataset.level}")
    not_before = now
    if body.get("not_before") is not None:
        try:
            not_before = parse_time(body["not_before"], "not_before")
        except ValueError as exc:
            problems.append(str(exc))
    expires_at: float | None = None
    if ("expires_at" in body) == ("duration" in body):
        problems.append("expires_at/duration: give exactly one of them")
    elif "duration" in body:
        duration = body["duration"]
        if (
            isinstance(duration, int | float)
            and not isinstance(duration, bool)
            and math.isfinite(duration)
            and duration > 0
        ):
            expires_at = not_before + duration
        else:
            problems.append(f"duration: expected seconds > 0, got {duration!r}")
    else:
        try:
            expires_at = parse_time(body["expires_at"], "expires_at")
        except ValueError as exc:
            problems.append(str(exc))
    if expires_at is not None:
        if expires_at <= max(now, not_before):
            problems.append("expires_at: must be later than now and than not_before")
        elif dataset is not None:
            cap = lifetimes.for_level(dataset.level)
            if expires_at - not_before > cap:
                problems.append(
                    f"expires_at: a grant on level-{dataset.level} dataset {dataset.id!r} may "
                    f"last at most {_human(cap)} (asked {_human(expires_at - not_before)})"
                )
    if problems:
        raise GrantError(problems)
    assert dataset_id is not None and purpose is not None and expires_at is not None
    return Grant(
        id="g-" + secrets.token_hex(8),
        dataset=dataset_id,
        actions=frozenset(actions),
        purpose=purpose,
        not_before=not_before,
        expires_at=expires_at,
        reason=str(reason).strip(),
        granted_by=granted_by,
        created_at=now,
        principal=principal,
        department=department,
        clearance=clearance,
    )


def _human(seconds: float) -> str:
    if seconds >= 86400 and seconds % 3600 == 0:
        return f"{seconds / 86400:g} days" if seconds % 86400 == 0 else f"{seconds / 3600:g} h"
    if seconds >= 3600:
        return f"{seconds / 3600:.4g} h"
    return f"{seconds:.0f} s"


class GrantStore:
    """Grants in the state backend hash `grants`, read through a local view.

    The view is reloaded when any instance announces a change on the `grants-changed`
    channel (and every `resync_interval` seconds, in case a notice was lost), so a
    request never waits on the backend. `version` changes whenever the view does.
    """

    def __init__(
        self,
        backend: StateBackend,
        *,
        catalog: Callable[[], Catalog],
        lifetimes: GrantLifetimes,
        clock: Callable[[], float],
        on_change: OnChange | None = None,
        resync_interval: float = 30.0,
    ) -> None:
        self._backend = backend
        self._catalog = catalog
        self._lifetimes = lifetimes
        self._clock = clock
        self._on_change = on_change
        self._resync_interval = resync_interval
        self._by_dataset: dict[str, tuple[Grant, ...]] = {}
        self._all: dict[str, Grant] = {}
        self._listeners: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None
        self.version = 0

    def on_refresh(self, listener: Callable[[], None]) -> None:
        """Call `listener` after every change of the local view (the decision cache clears)."""
        self._listeners.append(listener)

    async def start(self) -> None:
        await self.refresh()
        self._backend.on_reconnect(self._reconnected)
        await self._backend.subscribe(GRANTS_CHANNEL, self._notice)
        self._task = asyncio.create_task(self._resync(), name="grants-resync")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _notice(self, message: bytes) -> None:
        await self.refresh()

    async def _reconnected(self) -> None:
        # Notices published while the backend was away were missed: reload now.
        try:
            await self.refresh()
        except StateUnavailable as exc:
            log.warning("grants_resync_failed", error=str(exc))

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self._resync_interval)
            try:
                await self.refresh()
            except StateUnavailable as exc:
                log.warning("grants_resync_failed", error=str(exc))

    async def refresh(self) -> None:
        """Reload the local view from the backend."""
        raw = await self._backend.hgetall(GRANTS_HASH)
        grants: dict[str, Grant] = {}
        for gid, value in raw.items():
            try:
                grants[gid] = Grant.from_json(orjson.loads(value))
            except (ValueError, KeyError, TypeError) as exc:
                log.error("grant_unreadable", grant_id=gid, error=str(exc))
        self._set(grants.values())

    def _set(self, grants: Iterable[Grant]) -> None:
        all_ = {g.id: g for g in grants}
        if all_ == self._all:
            return
        by_dataset: dict[str, list[Grant]] = {}
        for g in all_.values():
            by_dataset.setdefault(g.dataset, []).append(g)
        self._all = all_
        self._by_dataset = {k: tuple(v) for k, v in by_dataset.items()}
        self.version += 1
        for listener in self._listeners:
            listener()

    def for_dataset(self, dataset: str) -> tuple[Grant, ...]:
        return self._by_dataset.get(dataset, ())

    def all_grants(self) -> list[Grant]:
        return sorted(self._all.values(), key=lambda g: (g.created_at, g.id))

    def get(self, grant_id: str) -> Grant | None:
        return self._all.get(grant_id)

    async def add(self, body: Any, actor: str) -> Grant:
        """Validate and store a grant request; raises GrantError naming every bad field."""
        grant = new_grant(
            body,
            catalog=self._catalog(),
            lifetimes=self._lifetimes,
            granted_by=actor,
            now=self._clock(),
        )
        await self._backend.hset(GRANTS_HASH, grant.id, orjson.dumps(grant.to_json()))
        await self._changed("add", grant, actor)
        return grant

    async def revoke(self, grant_id: str, actor: str) -> Grant | None:
        """Remove a grant at once on every instance; None when there is no such grant."""
        await self.refresh()
        grant = self._all.get(grant_id)
        if grant is None or not await self._backend.hdel(GRANTS_HASH, grant_id):
            return None
        await self._changed("revoke", grant, actor)
        return grant

    async def _changed(self, action: str, grant: Grant, actor: str) -> None:
        await self.refresh()
        await self._backend.publish(GRANTS_CHANNEL, grant.id.encode())
        log.info("grant_changed", action=action, grant_id=grant.id, actor=actor)
        if self._on_change is not None:
            result = self._on_change(action, grant, actor)
            if inspect.isawaitable(result):
                await result
