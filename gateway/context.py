"""The request context: one object that flows through the stages, each adding its result."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from aiohttp import web

    from gateway.identity.principal import Principal
    from gateway.masking.plan import MaskPlan
    from gateway.policy.catalog import Dataset
    from gateway.policy.decision import Decision

Action = Literal["read", "list", "export", "write"]


@dataclasses.dataclass(slots=True)
class RequestContext:
    """What is known about one request so far.

    route fills `path`, `dataset`, `action`; authenticate fills `principal`;
    authorise fills `decision`; observe fills `score`/`detections`; forward fills `status`
    and the upstream counters; mask fills `mask_plan`, `masked_fields`/`findings`; record
    reads them all.
    """

    request: web.BaseRequest
    request_id: str
    ts: float  # wall-clock seconds since the epoch, from the app's clock
    started: float  # perf_counter at arrival, for latency
    client_ip: str
    method: str
    path: str = ""
    query: str = ""
    dataset: Dataset | None = None
    action: Action = "read"
    record_id: str | None = None
    principal: Principal | None = None
    purpose: str | None = None
    decision: Decision | None = None
    mask_plan: MaskPlan | None = None
    score: float = 0.0
    detections: list[Any] = dataclasses.field(default_factory=list)
    status: int = 0
    error: str | None = None
    reason: str | None = None
    bytes_out: int = 0
    records_out: int = 0
    masked_fields: dict[str, int] = dataclasses.field(default_factory=dict)
    findings: dict[str, int] = dataclasses.field(default_factory=dict)
    incident_id: str | None = None
    audit_seq: int | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
