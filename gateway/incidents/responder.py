"""Turns detections and request outcomes into incidents and breaker trips (observe/record)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from gateway.breaker.config import BreakerConfig
from gateway.breaker.core import pair_key
from gateway.breaker.store import Breakers
from gateway.context import RequestContext
from gateway.errors import StateUnavailable
from gateway.incidents.model import DetectionLike
from gateway.incidents.service import Incidents
from gateway.logs import get_logger
from gateway.stages.suspension import PROBES_KEY

log = get_logger("datagate.responder")


@dataclasses.dataclass(frozen=True, slots=True)
class RateDetection:
    """The breaker's own finding: too many anomalous requests over the window."""

    principal: str | None
    department: str | None
    dataset: str | None
    severity: int
    score: float
    evidence: dict[str, Any]
    rule: str = "anomaly_rate"
    title: str = "Anomalous request rate over the breaker window"


class Responder:
    """The observe stage calls `on_detections`; after each response, `on_outcome`."""

    def __init__(self, breakers: Breakers, incidents: Incidents, config: BreakerConfig) -> None:
        self.breakers = breakers
        self.incidents = incidents
        self.config = config

    async def on_detections(self, ctx: RequestContext, detections: Iterable[DetectionLike]) -> None:
        """Raise (or update) an incident per detection; trip at once at `trip_severity`.

        Sets `ctx.incident_id` to the incident of the most severe detection."""
        worst = 0
        for detection in detections:
            incident_id = await self._respond(ctx, detection, trip=self._trips(detection))
            if detection.severity > worst:
                worst, ctx.incident_id = detection.severity, incident_id

    def _trips_address(self, detection: DetectionLike) -> bool:
        """A severe finding about an address acts on the address breaker."""
        return (
            getattr(detection, "scope", None) == "address"
            and detection.severity >= self.config.trip_severity
            and bool(getattr(detection, "key", ""))
        )

    def _trips(self, detection: DetectionLike) -> bool:
        """Severe enough, and about the principal (or its token)."""
        return detection.severity >= self.config.trip_severity and _about_principal(detection)

    async def on_outcome(self, ctx: RequestContext, anomalous: bool | None = None) -> None:
        """After the response: settle half-open probes and count the request for the rate rule.

        `anomalous` defaults to "a high-confidence detection about this principal was made".
        No await unless this request held a probe or the rate rule fires."""
        bad = anomalous
        if bad is None:
            # Lower-confidence findings raise incidents only: they must not suspend through
            # the rate rule either.
            bad = any(self._trips(d) for d in ctx.detections)
        probes = ctx.extra.pop(PROBES_KEY, None)
        if probes:
            for name in probes:
                try:
                    await self.breakers.probe_done(name, clean=not bad)
                except StateUnavailable as exc:
                    log.warning("breaker_probe_unrecorded", breaker=name, error=str(exc))
        target = self._target(
            ctx.principal.subject if ctx.principal else None,
            ctx.principal.department if ctx.principal else None,
            ctx.dataset.id if ctx.dataset else None,
        )
        if target is None:
            return
        counts = self.breakers.count_outcome(target[0], target[1], bad, ctx.ts)
        if counts is None:
            return
        total, anomalies = counts
        detection = RateDetection(
            principal=ctx.principal.subject if ctx.principal else None,
            department=ctx.principal.department if ctx.principal else None,
            dataset=ctx.dataset.id if ctx.dataset else None,
            severity=self.config.trip_severity,
            score=anomalies / total,
            evidence={
                "observed": {"anomaly_rate": anomalies / total, "requests": total},
                "baseline": {
                    "anomaly_rate": self.config.anomaly_rate,
                    "min_requests": self.config.anomaly_min_requests,
                },
                "features": {"window_seconds": self.config.anomaly_window},
                "sample_request_ids": [ctx.request_id],
            },
        )
        await self._respond(ctx, detection, trip=True)

    async def on_model_detection(
        self,
        detection: DetectionLike,
        *,
        client_ip: str,
        path: str,
        request_id: str,
        level: int | None,
    ) -> str:
        """A finding of the batch-scored model, after its request was answered: raise the
        incident, and trip at `trip_severity` so the caller's next requests are refused."""
        return await self._raise(
            detection,
            trip=self._trips(detection),
            client_ip=client_ip,
            path=path,
            request_id=request_id,
            department=getattr(detection, "department", None),
            level=level,
        )

    async def _respond(self, ctx: RequestContext, detection: DetectionLike, trip: bool) -> str:
        return await self._raise(
            detection,
            trip=trip,
            client_ip=ctx.client_ip,
            path=ctx.path,
            request_id=ctx.request_id,
            department=ctx.principal.department if ctx.principal else None,
            level=ctx.dataset.level if ctx.dataset else None,
        )

    async def _raise(
        self,
        detection: DetectionLike,
        *,
        trip: bool,
        client_ip: str | None,
        path: str | None,
        request_id: str | None,
        department: str | None,
        level: int | None,
    ) -> str:
        incident = await self.incidents.raise_detection(
            detection,
            client_ip=client_ip,
            path=path,
            request_id=request_id,
            department=department,
            level=level,
        )
        incident_id: str = incident["finding_info"]["uid"]
        target = self._target(
            detection.principal, getattr(detection, "department", None), detection.dataset
        )
        if self._trips_address(detection):
            target, trip = ("address", str(getattr(detection, "key", ""))), True
        if not trip or target is None:
            return incident_id
        scope, key = target
        try:
            state = await self.breakers.trip(
                scope, key, f"{detection.rule}: {detection.title}", incident_id
            )
            if state is not None and incident["unmapped"].get("stored", True):
                await self.incidents.set_action(incident_id, scope, key, state.state, state.until)
        except StateUnavailable as exc:
            # The views go untrusted with the store, so classified routes refuse anyway.
            log.error("breaker_trip_failed", breaker=f"{scope}:{key}", error=str(exc))
        return incident_id

    def _target(
        self, principal: str | None, department: str | None, dataset: str | None
    ) -> tuple[str, str] | None:
        scope = self.config.trip_scope
        if scope == "principal":
            return (scope, principal) if principal else None
        if scope == "department":
            return (scope, department) if department else None
        if scope == "dataset":
            return (scope, dataset) if dataset else None
        return (scope, pair_key(principal, dataset)) if principal and dataset else None


def _about_principal(detection: DetectionLike) -> bool:
    """Whether a finding is about the principal (or its token). A finding about a client IP
    shared by many principals (a failed-authentication burst behind a NAT) must neither
    suspend, nor count against, whichever of them happened to send the next request."""
    return getattr(detection, "scope", "principal") in ("principal", "token")
