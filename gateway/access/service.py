"""Access requests in the state backend: create, decide, withdraw, lapse, expire; atomically."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import structlog

from gateway.access import model
from gateway.access.config import AccessConfig
from gateway.access.events import event
from gateway.access.model import AccessError, Officer, conflict, refused
from gateway.errors import StateUnavailable
from gateway.identity.principal import Principal
from gateway.incidents.sinks import Sinks
from gateway.policy.catalog import Catalog
from gateway.policy.config import GrantLifetimes
from gateway.policy.grants import GrantError, GrantStore, iso

log = structlog.get_logger("datagate.access")

HASH = "access-requests"
_ATTEMPTS = 5  # compare-and-set rounds before giving up under contention
AUTOMATION = "automation"

AuditAppend = Callable[[dict[str, Any]], Any]


def not_found(request_id: str) -> AccessError:
    return AccessError(404, "not_found", "unknown_request", f"no access request {request_id!r}")


class AccessRequests:
    """The workflow. Every change is one compare-and-set on the request's hash field, so
    two officers approving at once, or an approval racing a withdrawal, leave exactly one
    outcome; every step is appended to the audit log and sent to the event sinks."""

    def __init__(
        self,
        backend: Any,
        *,
        config: AccessConfig,
        catalog: Callable[[], Catalog],
        lifetimes: GrantLifetimes,
        grants: GrantStore,
        clock: Callable[[], float],
        events: Sinks,
        audit: AuditAppend | None = None,
    ) -> None:
        self._backend = backend
        self.config = config
        self._catalog = catalog
        self._lifetimes = lifetimes
        self._grants = grants
        self._clock = clock
        self._events = events
        self._audit = audit
        self.officer = Officer(config.officer_role)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._events.start()
        self._task = asyncio.create_task(self._sweep_loop(), name="access-sweep")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._events.close()

    # ---- reading ---------------------------------------------------------------------------

    def visible(self, request: dict[str, Any], principal: Principal, everything: bool) -> bool:
        """The requester sees its own; an owner's data officer its department's; the SOC
        (`everything`, on the admin listener) all."""
        return (
            everything
            or request["requester"] == principal.subject
            or (self.officer.role in principal.roles and request["owner"] == principal.department)
        )

    async def get(self, request_id: str, principal: Principal, everything: bool = False) -> dict:
        raw = await self._backend.hget(HASH, request_id)
        if raw is None:
            raise not_found(request_id)
        request = orjson.loads(raw)
        if not self.visible(request, principal, everything):
            raise not_found(request_id)  # not even its existence is told
        return request

    async def search(
        self,
        principal: Principal,
        *,
        everything: bool = False,
        state: str | None = None,
        dataset: str | None = None,
    ) -> list[dict[str, Any]]:
        found = []
        for raw in (await self._backend.hgetall(HASH)).values():
            request = orjson.loads(raw)
            if not self.visible(request, principal, everything):
                continue
            if state is not None and request["state"] != state:
                continue
            if dataset is not None and request["dataset"] != dataset:
                continue
            found.append(request)
        return sorted(found, key=lambda r: (r["created_ts"], r["id"]), reverse=True)

    # ---- changes ---------------------------------------------------------------------------

    async def create(self, body: Any, principal: Principal) -> dict[str, Any]:
        now = self._clock()
        request = model.new_request(
            body,
            principal,
            catalog=self._catalog(),
            lifetimes=self._lifetimes,
            deadline=self.config.decision_deadline,
            now=now,
        )
        pending = await self.search(principal, state="pending")
        mine = [r for r in pending if r["requester"] == principal.subject]
        if len(mine) >= self.config.max_pending:
            raise AccessError(
                429,
                "rate_limited",
                "too_many_pending",
                f"you have {len(mine)} pending requests (at most {self.config.max_pending}): "
                "withdraw one or wait for a decision",
            )
        if not await self._backend.hcas(HASH, request["id"], None, orjson.dumps(request)):
            raise StateUnavailable("access request id collision; try again")
        self._stepped("request", request, principal.subject, "")
        return request

    async def approve(self, request_id: str, officer: Principal, note: str) -> dict[str, Any]:
        def check(request: dict[str, Any]) -> None:
            self.officer.check(officer, request)

        raw, approved = await self._transition(request_id, "approve", officer.subject, note, check)
        body: dict[str, Any] = {
            "principal": approved["requester"],
            "dataset": approved["dataset"],
            "actions": approved["actions"],
            "purpose": approved["purpose"],
            "duration": approved["duration"],
            "reason": f"access request {request_id}: {approved['justification']}",
        }
        if approved["grant_clearance"] is not None:
            body["clearance"] = approved["grant_clearance"]
        encoded = orjson.dumps(approved)
        try:
            grant = await self._grants.add(body, officer.subject)
        except (GrantError, StateUnavailable) as exc:
            # No grant, no approval: the request is pending again (nobody else could change
            # it meanwhile: every step starts from pending, which it was not).
            await self._backend.hcas(HASH, request_id, encoded, raw)
            if isinstance(exc, GrantError):
                raise refused("grant_refused", f"the grant was refused: {exc}") from None
            raise
        done = {
            **approved,
            "grant_id": grant.id,
            "grant_expires_at": iso(grant.expires_at),
            "grant_expires_ts": grant.expires_at,
        }
        await self._backend.hcas(HASH, request_id, encoded, orjson.dumps(done))
        self._stepped("approve", done, officer.subject, note)
        return done

    async def reject(self, request_id: str, officer: Principal, note: str) -> dict[str, Any]:
        if not note.strip():
            raise model.bad("missing_note", "note: rejecting a request needs a reason")

        def check(request: dict[str, Any]) -> None:
            self.officer.check(officer, request)

        _, rejected = await self._transition(request_id, "reject", officer.subject, note, check)
        self._stepped("reject", rejected, officer.subject, note)
        return rejected

    async def withdraw(self, request_id: str, requester: Principal, note: str) -> dict[str, Any]:
        def check(request: dict[str, Any]) -> None:
            if request["requester"] != requester.subject:
                raise refused("not_requester", "only the requester may withdraw its request")

        _, withdrawn = await self._transition(
            request_id, "withdraw", requester.subject, note, check
        )
        self._stepped("withdraw", withdrawn, requester.subject, note)
        return withdrawn

    async def _transition(
        self,
        request_id: str,
        name: str,
        by: str,
        note: str,
        check: Callable[[dict[str, Any]], None],
    ) -> tuple[bytes, dict[str, Any]]:
        """Check and apply step `name` with one compare-and-set; returns the old raw value
        and the new request. A pending request past its deadline lapses here (and the step is
        refused) even before the sweep has seen it."""
        start, _ = model.STEPS[name]
        for _ in range(_ATTEMPTS):
            raw = await self._backend.hget(HASH, request_id)
            if raw is None:
                raise not_found(request_id)
            request = orjson.loads(raw)
            check(request)
            now = self._clock()
            if model.lapsed(request, now):
                await self._apply(request_id, raw, request, "lapse", AUTOMATION, "", now)
                raise conflict(
                    "request_lapsed",
                    f"access request {request_id} lapsed: it was not decided by "
                    f"{request['decide_by']}",
                )
            if request["state"] != start:
                raise conflict(
                    f"not_{start}",
                    f"access request {request_id} is {request['state']}, not {start}",
                )
            new = model.step(request, name, by, note, now)
            if await self._backend.hcas(HASH, request_id, raw, orjson.dumps(new)):
                return raw, new
        raise StateUnavailable(f"access request {request_id}: too much contention to change it")

    async def _apply(
        self,
        request_id: str,
        raw: bytes,
        request: dict[str, Any],
        name: str,
        by: str,
        note: str,
        now: float,
    ) -> bool:
        """An automatic step (lapse, expire); only the process whose write wins reports it."""
        new = model.step(request, name, by, note, now)
        if await self._backend.hcas(HASH, request_id, raw, orjson.dumps(new)):
            self._stepped(name, new, by, note)
            return True
        return False

    async def sweep(self) -> int:
        """Lapse undecided requests past their deadline and mark approved ones whose grant
        ended (the grant itself stops working at its end by itself); returns the changes."""
        now = self._clock()
        changed = 0
        for request_id, raw in (await self._backend.hgetall(HASH)).items():
            request = orjson.loads(raw)
            if model.lapsed(request, now):
                changed += await self._apply(request_id, raw, request, "lapse", AUTOMATION, "", now)
            elif model.grant_ended(request, now):
                changed += await self._apply(
                    request_id, raw, request, "expire", AUTOMATION, "", now
                )
        return changed

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.sweep_interval)
            try:
                await self.sweep()
            except StateUnavailable as exc:
                log.warning("access_sweep_failed", error=str(exc))

    def _stepped(self, name: str, request: dict[str, Any], by: str, note: str) -> None:
        at = request["history"][-1]["at"]
        log.info("access_request_step", step=name, request_id=request["id"], by=by)
        if self._audit is not None:
            self._audit(
                {
                    "type": "access_request",
                    "ts": at,
                    "step": name,
                    "actor": by,
                    "request": {k: v for k, v in request.items() if k != "history"},
                }
            )
        self._events.emit(event(name, request, by, at, note))
