"""Incidents in the state backend (hash `incidents`), deduplicated, escalated, sent to sinks."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from gateway.errors import StateUnavailable
from gateway.incidents import model
from gateway.incidents.config import IncidentsConfig
from gateway.incidents.model import DetectionLike
from gateway.incidents.sinks import Sinks
from gateway.logs import get_logger
from gateway.state.base import StateBackend

HASH = "incidents"
KEYS = "incident_keys"  # dedup_key -> incident id
_ATTEMPTS = 16
_MAX_UNSTORED = 10_000  # incidents kept in memory for dedup while the store is down

log = get_logger("datagate.incidents")


def _load(raw: bytes) -> dict[str, Any]:
    """A stored incident, in today's shape even if an older DataGate stored it."""
    return model.upgrade(orjson.loads(raw))


def new_id() -> str:
    return f"inc-{uuid.uuid4().hex[:16]}"


class IncidentNotFound(KeyError):
    """No incident has this id."""


class Incidents:
    """Raise, update and list incidents; every change goes to the sinks.

    Changes are compare-and-set on the `incidents` hash, so several processes can raise and
    update the same incident. If the backend is down an incident is still built and sent to
    the sinks (so the SOC sees it), only not stored; repeats meanwhile update it in this
    process's memory, as the store would, so an outage does not flood the sinks.
    """

    def __init__(
        self,
        backend: StateBackend,
        config: IncidentsConfig,
        sinks: Sinks,
        clock: Callable[[], float] = time.time,
        make_id: Callable[[], str] = new_id,
    ) -> None:
        self.backend = backend
        self.config = config
        self.sinks = sinks
        self.clock = clock
        self.make_id = make_id
        self._task: asyncio.Task[None] | None = None
        self._unstored: dict[str, dict[str, Any]] = {}  # dedup_key -> incident, oldest first

    async def start(self) -> None:
        await self.sinks.start()
        self._task = asyncio.create_task(self._escalation_loop(), name="incident-escalation")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.sinks.close()

    # ---- raising -------------------------------------------------------------------------

    async def raise_detection(
        self,
        detection: DetectionLike,
        *,
        client_ip: str | None = None,
        path: str | None = None,
        request_id: str | None = None,
        department: str | None = None,
        level: int | None = None,
    ) -> dict[str, Any]:
        """A new incident, or the open one with the same dedup_key updated (count, last seen)."""
        cfg = self.config
        now = self.clock()
        key = model.dedup_key(detection.rule, detection.principal, detection.dataset)

        def fresh() -> dict[str, Any]:
            return model.build(
                detection,
                incident_id=self.make_id(),
                now=now,
                client_ip=client_ip,
                path=path,
                request_id=request_id,
                department=department,
                level=level,
                sla_seconds=cfg.sla_seconds,
                max_samples=cfg.max_samples,
            )

        try:
            for _ in range(_ATTEMPTS):
                raw_id = await self.backend.hget(KEYS, key)
                raw = await self.backend.hget(HASH, raw_id.decode()) if raw_id else None
                if raw is not None:
                    current = _load(raw)
                    last = current["finding_info"]["last_seen_time"] / 1000
                    if model.state_of(current) != "resolved" and now - last <= cfg.dedup_window:
                        updated = model.repeat(current, detection, now, request_id, cfg.max_samples)
                        encoded = orjson.dumps(updated)
                        uid = current["finding_info"]["uid"]
                        if await self.backend.hcas(HASH, uid, raw, encoded):
                            if model.worth_emitting(updated["count"]):
                                self.sinks.emit(updated, encoded)
                            return updated
                        continue
                incident = fresh()
                uid = incident["finding_info"]["uid"]
                encoded = orjson.dumps(incident)
                await self.backend.hset(HASH, uid, encoded)
                if await self.backend.hcas(KEYS, key, raw_id, uid.encode()):
                    self._unstored.pop(key, None)
                    self._raised(incident, encoded)
                    return incident
                await self.backend.hdel(HASH, uid)  # another process raised it first
            raise StateUnavailable(f"incident {key}: too much contention to record it")
        except StateUnavailable as exc:
            return self._raise_unstored(key, detection, now, request_id, fresh, str(exc))

    def _raise_unstored(
        self,
        key: str,
        detection: DetectionLike,
        now: float,
        request_id: str | None,
        fresh: Callable[[], dict[str, Any]],
        error: str,
    ) -> dict[str, Any]:
        """The store is down: dedup in memory, send to the sinks, never lose the incident."""
        cfg = self.config
        current = self._unstored.get(key)
        if current is not None and now - current["finding_info"]["last_seen_time"] / 1000 <= (
            cfg.dedup_window
        ):
            updated = model.repeat(current, detection, now, request_id, cfg.max_samples)
            self._unstored[key] = updated
            if model.worth_emitting(updated["count"]):
                self.sinks.emit(updated)
            return updated
        incident = fresh()
        incident["unmapped"]["stored"] = False
        log.error("incident_not_stored", incident_id=incident["finding_info"]["uid"], error=error)
        self._unstored.pop(key, None)
        self._unstored[key] = incident
        if len(self._unstored) > _MAX_UNSTORED:
            del self._unstored[next(iter(self._unstored))]
        self._raised(incident)
        return incident

    async def store_unstored(self) -> int:
        """Write the incidents raised while the store was down into it, once it answers again,
        so the admin API and `datagate incidents` list them too (the sinks have them already).
        Repeats then find them by their dedup key, unless one raised meanwhile took the key.
        Returns how many were stored; raises StateUnavailable if the store is still down."""
        stored = 0
        for key, incident in list(self._unstored.items()):
            kept = {
                **incident,
                "unmapped": {k: v for k, v in incident["unmapped"].items() if k != "stored"},
            }
            uid = kept["finding_info"]["uid"]
            await self.backend.hset(HASH, uid, orjson.dumps(kept))
            await self.backend.hcas(KEYS, key, None, uid.encode())
            del self._unstored[key]
            stored += 1
        if stored:
            log.info("incidents_stored_after_outage", incidents=stored)
        return stored

    def _raised(self, incident: dict[str, Any], encoded: bytes | None = None) -> None:
        self.sinks.emit(incident, encoded)
        log.warning(
            "incident_raised",
            incident_id=incident["finding_info"]["uid"],
            rule=model.rule_of(incident),
            severity=incident["severity_id"],
            principal=model.principal_of(incident),
        )

    # ---- changes ---------------------------------------------------------------------------

    async def set_action(
        self, incident_id: str, scope: str, key: str, state: str, until: float | None
    ) -> dict[str, Any]:
        now = self.clock()
        return await self._update(
            incident_id, lambda i: model.with_action(i, scope, key, state, until, now)
        )

    async def acknowledge(self, incident_id: str, by: str, note: str = "") -> dict[str, Any]:
        now = self.clock()
        return await self._update(incident_id, lambda i: model.acknowledge(i, by, note, now))

    async def resolve(self, incident_id: str, by: str, note: str) -> dict[str, Any]:
        if not note.strip():
            raise model.WorkflowError("note: resolving an incident requires a note")
        now = self.clock()
        return await self._update(incident_id, lambda i: model.resolve(i, by, note, now))

    async def escalate_overdue(self) -> list[dict[str, Any]]:
        """Escalate every incident whose deadline passed while it was still new."""
        now = self.clock()
        escalated = []
        for raw in (await self.backend.hgetall(HASH)).values():
            incident = _load(raw)
            if not model.overdue(incident, now):
                continue
            uid = incident["finding_info"]["uid"]
            done = model.escalate(incident, now)
            if await self.backend.hcas(HASH, uid, raw, orjson.dumps(done)):
                self.sinks.emit(done)
                log.error(
                    "incident_escalated",
                    incident_id=uid,
                    due_at=model.sla_of(done)["due_at"],
                    principal=model.principal_of(done),
                    severity=done["severity_id"],
                )
                escalated.append(done)
        return escalated

    async def _update(
        self, incident_id: str, fn: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> dict[str, Any]:
        for _ in range(_ATTEMPTS):
            raw = await self.backend.hget(HASH, incident_id)
            if raw is None:
                raise IncidentNotFound(incident_id)
            new = fn(_load(raw))
            encoded = orjson.dumps(new)
            if await self.backend.hcas(HASH, incident_id, raw, encoded):
                self.sinks.emit(new, encoded)
                return new
        raise StateUnavailable(f"incident {incident_id}: too much contention to change it")

    # ---- reading ----------------------------------------------------------------------------

    async def get(self, incident_id: str) -> dict[str, Any]:
        raw = await self.backend.hget(HASH, incident_id)
        if raw is None:
            raise IncidentNotFound(incident_id)
        return _load(raw)

    async def search(
        self,
        *,
        status: str | None = None,
        min_severity: int | None = None,
        principal: str | None = None,
        dataset: str | None = None,
        since: float | None = None,
    ) -> list[dict[str, Any]]:
        """Matching incidents, most recently seen first."""
        out = []
        for raw in (await self.backend.hgetall(HASH)).values():
            i = _load(raw)
            if status is not None and model.state_of(i) != status:
                continue
            if min_severity is not None and i["severity_id"] < min_severity:
                continue
            if principal is not None and model.principal_of(i) != principal:
                continue
            if dataset is not None and dataset not in [r["uid"] for r in i["resources"]]:
                continue
            if since is not None and i["finding_info"]["last_seen_time"] < since * 1000:
                continue
            out.append(i)
        out.sort(key=lambda i: i["finding_info"]["last_seen_time"], reverse=True)
        return out

    async def _escalation_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.escalation_interval)
            try:
                if self._unstored:
                    await self.store_unstored()
                await self.escalate_overdue()
            except StateUnavailable as exc:
                log.warning("incident_escalation_skipped", error=str(exc))
