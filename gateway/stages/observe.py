"""Observe stage: hard rate limits, the caller's behaviour features, rules and detections; a
detection that trips the breaker refuses this very request."""

from __future__ import annotations

from detectors import AccessEvent, Detector
from gateway.context import RequestContext
from gateway.incidents.responder import Responder
from gateway.limits import RateLimiter
from gateway.stages.suspension import SuspensionStage

EVENT_KEY = "detector_event"  # ctx.extra key: the detector's view of this request


def detector_event(ctx: RequestContext) -> AccessEvent:
    """The request as the detector sees it, from what the stages so far have found."""
    principal, dataset = ctx.principal, ctx.dataset
    return AccessEvent(
        ts=ctx.ts,
        request_id=ctx.request_id,
        client_ip=ctx.client_ip,
        method=ctx.method,
        path=ctx.path or ctx.request.path,
        principal=principal.subject if principal else None,
        department=principal.department if principal else None,
        user_agent=ctx.request.headers.get("User-Agent", ""),
        token_id=principal.token_id if principal else None,
        dataset=dataset.id if dataset else None,
        level=dataset.level if dataset else 0,
        action=ctx.action,
        record_id=ctx.record_id,
    )


class ObserveStage:
    name = "observe"

    def __init__(
        self,
        limiter: RateLimiter,
        detector: Detector | None,
        responder: Responder,
        suspension: SuspensionStage,
    ) -> None:
        self._limiter = limiter
        self._detector = detector
        self._responder = responder
        self._suspension = suspension

    async def __call__(self, ctx: RequestContext) -> None:
        await self._limiter.check(ctx)
        if self._detector is None:
            return
        event = ctx.extra[EVENT_KEY] = detector_event(ctx)
        assessment = self._detector.observe(event)
        ctx.score = assessment.score
        # What acts (severity >= detection.act_severity) raises incidents now and counts as
        # anomalous in the breaker's window; milder findings only raise the score.
        ctx.detections = list(assessment.act)
        if ctx.detections:
            await self._responder.on_detections(ctx, ctx.detections)
            # A trip takes effect at once: the local view already holds the open breaker.
            await self._suspension(ctx)
