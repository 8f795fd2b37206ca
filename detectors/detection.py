"""What the detector hands out: detections with evidence, and the per-request assessment."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

__all__ = ["Assessment", "Detection", "Evidence", "Scope", "severity_score"]

Scope = Literal["principal", "token", "address", "department"]


def severity_score(severity: int) -> float:
    """A rule detection's contribution to the 0..1 score: severity 3 (medium) and up is >= 0.5."""
    return severity / 5.0


@dataclasses.dataclass(frozen=True, slots=True)
class Evidence:
    """Why: features at the time, observed values against the baseline, sample requests."""

    observed: dict[str, float]
    baseline: dict[str, float]
    features: dict[str, float]
    sample_request_ids: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "observed": self.observed,
            "baseline": self.baseline,
            "features": self.features,
            "sample_request_ids": list(self.sample_request_ids),
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Detection:
    """One finding for the breaker and the incident builder.

    `rule` is the rule name (see `detectors.rules.RULES`, or `model`); `scope`/`key` say what
    it is about and what acts on it (the principal, its token, a client address or address
    range, a department); `actor` names who drove it (a principal, or `ip:ADDRESS` for
    unauthenticated traffic); `severity` is the OCSF severity_id: findings at the breaker's
    trip_severity are the high-confidence ones that may suspend sharing.
    """

    rule: str
    severity: int
    scope: Scope
    key: str
    principal: str | None
    department: str | None
    dataset: str | None
    title: str
    score: float
    ts: float
    evidence: Evidence
    actor: str = ""
    remediation: str = ""

    @property
    def dedup_key(self) -> str:
        return f"{self.rule}:{self.scope}:{self.key}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "scope": self.scope,
            "key": self.key,
            "principal": self.principal,
            "department": self.department,
            "dataset": self.dataset,
            "title": self.title,
            "score": self.score,
            "ts": self.ts,
            "dedup_key": self.dedup_key,
            "actor": self.actor,
            "remediation": self.remediation,
            "evidence": self.evidence.to_dict(),
        }


@dataclasses.dataclass(slots=True)
class Assessment:
    """The detector's answer for one request.

    `score` combines every rule that fired with the principal's current model score; `act`
    holds the detections at or above the configured `act_severity`, for the breaker now.
    """

    score: float = 0.0
    detections: list[Detection] = dataclasses.field(default_factory=list)
    act: list[Detection] = dataclasses.field(default_factory=list)

    @property
    def anomalous(self) -> bool:
        return self.score >= 0.5

    @property
    def reasons(self) -> list[str]:
        return [d.title for d in self.detections]
