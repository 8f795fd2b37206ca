"""The suspension stage: refuse callers and datasets whose breaker is open or unknown."""

from __future__ import annotations

import math
from collections.abc import Callable

from gateway.breaker.config import BreakerConfig
from gateway.breaker.core import BreakerState
from gateway.breaker.store import Breakers
from gateway.context import RequestContext
from gateway.errors import GatewayError, StateUnavailable

PROBES_KEY = "breaker_probes"  # ctx.extra key: half-open probes this request holds


class SuspensionStage:
    """Reads the process's local breaker view: no round trip unless a breaker is half-open.

    Sets `ctx.extra["breaker_probes"]` to the breakers this request probes; the record stage
    reports the outcome through `Responder.on_outcome` so clean probes close them.
    """

    name = "suspension"

    def __init__(
        self,
        breakers: Breakers,
        config: BreakerConfig,
        familiar: Callable[[str, str], bool] | None = None,
    ) -> None:
        self.breakers = breakers
        self.config = config
        # Whether a principal is known to use an address: an open address breaker refuses
        # only principals new to the address (without a detector, every one is new).
        self.familiar = familiar or (lambda principal, ip: False)

    async def __call__(self, ctx: RequestContext) -> None:
        breakers = self.breakers
        if not breakers.trusted:
            self._refuse_untrusted(ctx)
        if not breakers.active:
            return
        principal = ctx.principal
        hits = breakers.check(
            principal.subject if principal else None,
            principal.department if principal else None,
            ctx.dataset.id if ctx.dataset else None,
            ctx.client_ip,
        )
        if not hits:
            return
        if principal is not None:
            hits = [
                s
                for s in hits
                if s.scope != "address" or not self.familiar(principal.subject, ctx.client_ip)
            ]
            if not hits:
                return
        now = ctx.ts
        blocking = [s for s in hits if s.effective(now) in ("open", "forced_open")]
        if blocking:
            raise _suspended(max(blocking, key=lambda s: _until_rank(s)), now)
        reserved: list[str] = []
        for s in hits:  # all half-open: this request must hold a probe slot of each
            try:
                probe = await breakers.reserve_probe(s.field)
            except StateUnavailable:
                raise GatewayError(
                    "unavailable",
                    "breaker state is unavailable; sharing is paused",
                    reason="breaker_state_unavailable",
                ) from None
            if probe is None:
                for name in reserved:  # give back what we took: they did not run
                    await breakers.release_probe(name)
                raise _suspended(s, now)
            reserved.append(s.field)
        ctx.extra[PROBES_KEY] = reserved

    def _refuse_untrusted(self, ctx: RequestContext) -> None:
        level = ctx.dataset.level if ctx.dataset else 4
        if level >= 2 or not self.config.level1_fail_open:
            raise GatewayError(
                "unavailable",
                "breaker state is unavailable; sharing is paused",
                reason="breaker_state_unavailable",
            )


def _until_rank(s: BreakerState) -> float:
    return math.inf if s.state == "forced_open" or s.until is None else s.until


def _suspended(s: BreakerState, now: float) -> GatewayError:
    headers: dict[str, str] = {}
    if s.state != "forced_open" and s.until is not None:
        headers["Retry-After"] = str(max(1, math.ceil(s.until - now)))
    extra = {"incident_id": s.incident_id} if s.incident_id else {}
    return GatewayError(
        "sharing_suspended",
        f"sharing is suspended for this {_SCOPE_WORDS.get(s.scope, s.scope)}",
        reason=s.state,
        headers=headers,
        extra=extra,
    )


_SCOPE_WORDS = {
    "principal": "caller",
    "department": "department",
    "dataset": "dataset",
    "pair": "caller and dataset",
    "address": "address",
}
