"""Hard rate limits per principal and per dataset route, atomic across gateway processes."""

from __future__ import annotations

import dataclasses
import math

from gateway.configtree import field
from gateway.context import RequestContext
from gateway.errors import GatewayError, StateUnavailable
from gateway.state.base import StateBackend


@dataclasses.dataclass(frozen=True, slots=True)
class Limit:
    requests: int = field(min=1)
    window: float = field(60.0, min=1.0, max=86400.0)


@dataclasses.dataclass(frozen=True, slots=True)
class LimitsConfig:
    """`per_principal` counts each principal's requests; `per_dataset` all requests to one
    dataset's route. Null switches a limit off."""

    per_principal: Limit | None = field(Limit(600, 60.0))
    per_dataset: Limit | None = field(Limit(20000, 60.0))


class RateLimiter:
    """One state round trip per request: the backend's sliding-window counters, incremented and
    read atomically, so N processes together allow at most the limit in each window."""

    def __init__(self, backend: StateBackend, config: LimitsConfig) -> None:
        self._backend = backend
        self._limits: list[tuple[str, Limit]] = []
        if config.per_principal is not None:
            self._limits.append(("p", config.per_principal))
        if config.per_dataset is not None:
            self._limits.append(("d", config.per_dataset))

    async def check(self, ctx: RequestContext) -> None:
        if not self._limits or ctx.principal is None or ctx.dataset is None:
            return
        keys = {"p": ctx.principal.subject, "d": ctx.dataset.id}
        hits = [(f"limit:{kind}:{keys[kind]}", limit.window) for kind, limit in self._limits]
        try:
            counts = await self._backend.count(hits, ctx.ts)
        except StateUnavailable:
            # A limit that cannot be counted is not known to be kept: refuse (fail closed).
            raise GatewayError(
                "unavailable",
                "rate limits cannot be checked (the state backend is unavailable); refusing",
                reason="rate_limit_unavailable",
            ) from None
        for (kind, limit), seen in zip(self._limits, counts, strict=True):
            if seen > limit.requests:
                # The current bucket ends at the next multiple of the window: by then at
                # least its share of the count has aged out.
                retry = max(1, math.ceil(limit.window - ctx.ts % limit.window))
                who = "principal" if kind == "p" else "dataset"
                raise GatewayError(
                    "rate_limited",
                    f"over {limit.requests} requests per {limit.window:g} s for this {who}",
                    reason=f"{who}_limit",
                    headers={"Retry-After": str(retry)},
                )
