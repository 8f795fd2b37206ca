"""Findings the gateway raises about itself (policy rejected, unmaskable responses, audit log
down)."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True, slots=True)
class GatewayFinding:
    """A detection-shaped finding that did not come from the detectors."""

    rule: str
    title: str
    severity: int  # OCSF severity_id, 1 informational .. 5 critical
    principal: str | None = None
    department: str | None = None
    dataset: str | None = None
    score: float = 0.0
    evidence: dict[str, Any] = dataclasses.field(default_factory=dict)
    # The gateway refused what the finding is about (OCSF action "Denied"), rather than only
    # observing it.
    denied: bool = False


def policy_rejected(message: str) -> GatewayFinding:
    return GatewayFinding(
        rule="policy_rejected",
        title="A policy change was rejected; the last good policy stays in force",
        severity=2,
        evidence={"observed": {"error": message}, "baseline": {}},
    )


def config_rejected(message: str) -> GatewayFinding:
    return GatewayFinding(
        rule="config_rejected",
        title="A config reload was rejected; the running config stays in force",
        severity=2,
        evidence={"observed": {"error": message}, "baseline": {}},
    )


def unmaskable_response(dataset: str, reason: str, principal: str | None) -> GatewayFinding:
    return GatewayFinding(
        rule="unmaskable_response",
        title=f"The upstream of {dataset!r} sent a response that cannot be masked safely",
        severity=3,
        principal=principal,
        dataset=dataset,
        evidence={"observed": {"reason": reason}, "baseline": {}},
        denied=True,
    )


def audit_unavailable(error: str) -> GatewayFinding:
    return GatewayFinding(
        rule="audit_unavailable",
        title="The audit log cannot be written; classified data is not served",
        severity=4,
        evidence={"observed": {"error": error}, "baseline": {}},
        denied=True,
    )
