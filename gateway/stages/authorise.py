"""Authorise stage: decide the request with the policy and grants, refuse with 403 on deny."""

from __future__ import annotations

import structlog

from gateway.context import RequestContext
from gateway.errors import GatewayError
from gateway.policy.decider import Decider

log = structlog.get_logger("datagate.authorise")


class AuthoriseStage:
    name = "authorise"

    def __init__(self, decider: Decider) -> None:
        self._decider = decider

    async def __call__(self, ctx: RequestContext) -> None:
        principal, dataset = ctx.principal, ctx.dataset
        if principal is None or dataset is None:
            # Only reachable if the stages were wired out of order: fail closed.
            raise GatewayError(
                "forbidden", "request was not authenticated and routed", reason="default_deny"
            )
        purpose = ctx.purpose if ctx.purpose is not None else principal.purpose
        decision = self._decider.decide(principal, purpose, dataset, ctx.action, ctx.ts)
        ctx.decision = decision
        if decision.monitor:
            log.warning(
                "policy_deny_monitored",
                request_id=ctx.request_id,
                principal=principal.subject,
                dataset=dataset.id,
                action=ctx.action,
                reason=decision.reason,
                rule=decision.rule.where if decision.rule else None,
            )
        if not decision.allowed:
            raise GatewayError("forbidden", decision.message(), reason=decision.reason)
