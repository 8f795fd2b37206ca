"""Record stage: the access event of each request, to the log, the metrics, the audit log and
the detectors."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from typing import Any

from gateway.context import RequestContext
from gateway.logs import get_logger
from gateway.metrics import Metrics

EventSink = Callable[[dict[str, Any]], None]
_UTC = dt.UTC


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, _UTC).isoformat(timespec="milliseconds")


def access_event(ctx: RequestContext, policy_version: str) -> dict[str, Any]:
    """The access event of PRODUCT.md, built from what the stages left in the context."""
    principal = ctx.principal
    dataset = ctx.dataset
    decision = ctx.decision
    headers = ctx.request.headers
    event: dict[str, Any] = {
        "ts": iso(ctx.ts),
        "request_id": ctx.request_id,
        "principal": principal.subject if principal else None,
        "department": principal.department if principal else None,
        "clearance": principal.clearance if principal else None,
        "roles": sorted(principal.roles) if principal else [],
        "token_id": principal.token_id if principal else None,
        "client_ip": ctx.client_ip,
        "user_agent": headers.get("User-Agent", ""),
        "method": ctx.method,
        "path": ctx.path or ctx.request.path,
        "query_keys": sorted({k for k in ctx.request.query}) if ctx.query else [],
        "dataset": dataset.id if dataset else None,
        "level": dataset.level if dataset else None,
        "action": ctx.action if dataset else None,
        "record_id": ctx.record_id,
        "purpose": ctx.purpose,
        "decision": "allow" if ctx.error is None and decision is not None else "deny",
        "reason": ctx.reason,
        "error": ctx.error,
        "status": ctx.status,
        "bytes_out": ctx.bytes_out,
        "records_out": ctx.records_out,
        "masked_fields": ctx.masked_fields,
        "findings": ctx.findings,
        "score": ctx.score,
        "latency_ms": round((time.perf_counter() - ctx.started) * 1000, 3),
        "policy_version": policy_version,
    }
    if decision is not None:
        event["decision"] = "allow" if decision.allowed and ctx.error is None else "deny"
        event["rule"] = decision.rule.where if decision.rule else None
        event["grant_id"] = decision.grant_id
        if decision.monitor:
            event["monitor_deny"] = decision.reason
    if ctx.incident_id:
        event["incident_id"] = ctx.incident_id
    return event


class RecordStage:
    name = "record"

    def __init__(
        self,
        metrics: Metrics,
        policy_version: Callable[[], str],
        sinks: Sequence[EventSink] = (),
        log_requests: bool = True,
    ) -> None:
        self._metrics = metrics
        self._policy_version = policy_version
        self._sinks = list(sinks)
        self._log = get_logger("datagate.access")
        self._log_requests = log_requests

    def add_sink(self, sink: EventSink) -> None:
        self._sinks.append(sink)

    def __call__(self, ctx: RequestContext) -> dict[str, Any]:
        event = access_event(ctx, self._policy_version())
        route = event["dataset"] or "-"
        self._metrics.requests.labels(route, str(ctx.status), event["decision"]).inc()
        self._metrics.latency.labels(route).observe(event["latency_ms"] / 1000)
        failure = ctx.extra.get("upstream_failure")
        if failure:
            self._metrics.upstream_errors.labels(route, failure).inc()
        for sink in self._sinks:
            sink(event)
        if self._log_requests:
            self._log.info(
                "request",
                request_id=ctx.request_id,
                principal=event["principal"],
                route=route,
                method=ctx.method,
                path=event["path"],
                status=ctx.status,
                decision=event["decision"],
                reason=ctx.reason,
                latency_ms=event["latency_ms"],
            )
        return event
