"""Observe stage: hard rate limits, the caller's behaviour counters and detections; a
detection that trips the breaker refuses this very request."""

from __future__ import annotations

from gateway.context import RequestContext
from gateway.incidents.responder import Responder
from gateway.limits import RateLimiter
from gateway.stages.suspension import SuspensionStage


class ObserveStage:
    name = "observe"

    def __init__(
        self, limiter: RateLimiter, responder: Responder, suspension: SuspensionStage
    ) -> None:
        self._limiter = limiter
        self._responder = responder
        self._suspension = suspension

    async def __call__(self, ctx: RequestContext) -> None:
        await self._limiter.check(ctx)
        if ctx.detections:
            await self._responder.on_detections(ctx, ctx.detections)
            # A trip takes effect at once: the local view already holds the open breaker.
            await self._suspension(ctx)
