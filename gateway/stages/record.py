"""Record stage: the access event of each request, to the audit log, the metrics, the log line,
the dashboard, the detectors and the breaker's outcome window."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any, Protocol

from detectors import Detector
from gateway import logs
from gateway.context import RequestContext
from gateway.errors import GatewayError
from gateway.metrics import Metrics
from gateway.stages.observe import EVENT_KEY, detector_event

_UTC = dt.UTC


class AuditLog(Protocol):
    @property
    def healthy(self) -> bool: ...

    def append(self, record: dict[str, Any], *, trusted: bool = False) -> int: ...


class OutcomeListener(Protocol):
    async def on_outcome(self, ctx: RequestContext, anomalous: bool | None = None) -> None: ...

    async def on_detections(self, ctx: RequestContext, detections: list[Any]) -> None: ...


# Called with each access event and its time in epoch seconds.
EventSink = Callable[[dict[str, Any], float], None]


_second: tuple[int, str] = (-1, "")  # the last whole second formatted: (second, ISO prefix)


def iso(ts: float) -> str:
    """`2026-12-01T09:30:00.123+00:00`: ISO 8601 in UTC to the millisecond. Requests in the
    same second share its formatted prefix (datetime formatting is a few microseconds)."""
    global _second
    whole = int(ts // 1)
    cached = _second
    if cached[0] != whole:
        prefix = dt.datetime.fromtimestamp(whole, _UTC).strftime("%Y-%m-%dT%H:%M:%S")
        cached = _second = (whole, prefix)
    return f"{cached[1]}.{int((ts - whole) * 1000):03d}+00:00"


def access_event(
    ctx: RequestContext, policy_version: str, latency: float | None = None
) -> dict[str, Any]:
    """The access event of PRODUCT.md, built from what the stages left in the context;
    `latency` in seconds (default: until now)."""
    principal = ctx.principal
    dataset = ctx.dataset
    decision = ctx.decision
    request = ctx.request
    allowed = ctx.error is None and decision is not None and decision.allowed
    event: dict[str, Any] = {
        "type": "access",
        "ts": iso(ctx.ts),
        "request_id": ctx.request_id,
        "principal": principal.subject if principal else None,
        "department": principal.department if principal else None,
        "clearance": principal.clearance if principal else None,
        "roles": sorted(principal.roles) if principal else [],
        "token_id": principal.token_id if principal else None,
        "cert_subject": principal.cert_subject if principal else None,
        "client_ip": ctx.client_ip,
        "user_agent": request.headers.get("User-Agent", ""),
        "method": ctx.method,
        "path": ctx.path or request.path,
        "query_keys": sorted(request.query) if ctx.query else [],
        "dataset": dataset.id if dataset else None,
        "level": dataset.level if dataset else None,
        "action": ctx.action if dataset else None,
        "record_id": ctx.record_id,
        "purpose": ctx.purpose,
        "decision": "allow" if allowed else "deny",
        "reason": ctx.reason if ctx.error else (decision.reason if decision else None),
        "error": ctx.error,
        "status": ctx.status,
        "bytes_out": ctx.bytes_out,
        "records_out": ctx.records_out,
        "masked_fields": ctx.masked_fields,
        "findings": ctx.findings,
        "score": round(ctx.score, 4),
        "latency_ms": round(
            ((time.perf_counter() - ctx.started) if latency is None else latency) * 1000, 3
        ),
        "policy_version": policy_version,
    }
    if decision is not None:
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
        *,
        audit: AuditLog | None = None,
        detector: Detector | None = None,
        sinks: tuple[EventSink, ...] = (),
        outcomes: OutcomeListener | None = None,
        log_requests: bool = True,
        seq_roles: frozenset[str] = frozenset(),
    ) -> None:
        self._metrics = metrics
        self._policy_version = policy_version
        self._audit = audit
        self._detector = detector
        self._sinks = sinks
        self._outcomes = outcomes
        self._log_requests = log_requests
        self._seq_roles = seq_roles

    def _detect(self, ctx: RequestContext) -> list[Any]:
        """The outcome to the detector (bulk export, failure rates, the model's queue); what
        it finds now acts on the caller's next requests. Requests refused before the observe
        stage are counted too, so failed authentication per client IP is seen."""
        if self._detector is None:
            return []
        event = ctx.extra.get(EVENT_KEY)
        observed = event is not None
        if event is None:
            event = detector_event(ctx)
        event.status = ctx.status
        event.bytes_out = ctx.bytes_out
        event.records_out = ctx.records_out
        event.decision = "deny" if ctx.error else "allow"
        assessment = self._detector.record(event, observed=observed)
        ctx.score = max(ctx.score, assessment.score)
        ctx.detections.extend(assessment.act)
        return list(assessment.act)

    def seq_header(self, ctx: RequestContext) -> str | None:
        """The `X-Audit-Seq` value: the request's audit sequence, shown only to callers with
        an admin role (`admin.roles`). To everyone else the sequence is the gateway's global
        request count; their receipt is `X-Request-ID`, which the record holds as well."""
        principal = ctx.principal
        if (
            ctx.audit_seq is None
            or principal is None
            or principal.roles.isdisjoint(self._seq_roles)
        ):
            return None
        return str(ctx.audit_seq)

    def guard(self, ctx: RequestContext) -> None:
        """Before forwarding: with the audit log failing, classified data is not served."""
        audit = self._audit
        dataset = ctx.dataset
        if audit is not None and not audit.healthy and dataset is not None and dataset.level >= 2:
            raise GatewayError(
                "unavailable",
                "the audit log cannot be written; classified data is not served",
                reason="audit_unavailable",
            )

    def begin(self, ctx: RequestContext) -> None:
        """A streamed response is about to send its headers: record the access now, so the
        response carries its audit sequence; `__call__` adds the figures when it ends."""
        if self._audit is not None:
            ctx.audit_seq = self._audit.append(
                access_event(ctx, self._policy_version()), trusted=True
            )

    async def __call__(self, ctx: RequestContext) -> dict[str, Any]:
        late = self._detect(ctx)
        latency = time.perf_counter() - ctx.started
        event = access_event(ctx, self._policy_version(), latency)
        audit = self._audit
        if audit is not None:
            if ctx.audit_seq is None:
                ctx.audit_seq = audit.append(event, trusted=True)
            else:
                audit.append(
                    {
                        "type": "access_end",
                        "ts": iso(time.time()),
                        "request_id": ctx.request_id,
                        "begin_seq": ctx.audit_seq,
                        "status": ctx.status,
                        "error": ctx.error,
                        "reason": ctx.reason,
                        "bytes_out": ctx.bytes_out,
                        "records_out": ctx.records_out,
                        "masked_fields": ctx.masked_fields,
                        "findings": ctx.findings,
                        "latency_ms": event["latency_ms"],
                    },
                    trusted=True,
                )
        route = event["dataset"] or "-"
        decision = event["decision"]
        self._metrics.requests.observe(
            route, ctx.status, decision, latency, ctx.extra.get("upstream_failure")
        )
        for sink in self._sinks:
            sink(event, ctx.ts)
        if self._outcomes is not None:
            if late:
                await self._outcomes.on_detections(ctx, late)
            if ctx.principal is not None and ctx.error != "sharing_suspended":
                await self._outcomes.on_outcome(ctx)
        if self._log_requests:
            logs.request_line(
                {
                    "request_id": ctx.request_id,
                    "principal": event["principal"],
                    "route": route,
                    "method": ctx.method,
                    "path": event["path"],
                    "status": ctx.status,
                    "decision": decision,
                    "reason": event["reason"],
                    "latency_ms": event["latency_ms"],
                    "audit_seq": ctx.audit_seq,
                }
            )
        return event
