"""Offline scoring: run recorded events through the online detector in time order."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from detectors.detection import Detection
from detectors.events import AccessEvent
from detectors.online import Detector

__all__ = ["TRIP_SEVERITY", "Score", "score_events"]

CHUNK = 2048  # events per model batch
TRIP_SEVERITY = 4  # the breaker's default trip_severity


@dataclasses.dataclass(slots=True)
class Score:
    """One output line of `datagate detect replay`.

    Only findings that name this event's actor (its principal, or `ip:ADDRESS` when
    unauthenticated) count: an address finding does not count against the principals who
    merely share the address. `incident`: a finding at `act_severity` raised an incident;
    `suspended`: one at the breaker's trip_severity, about the principal or its token,
    would suspend it."""

    request_id: str
    score: float
    anomalous: bool
    reasons: list[str]
    incident: bool = False
    suspended: bool = False
    rules: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "score": round(self.score, 4),
            "anomalous": self.anomalous,
            "reasons": self.reasons,
            "incident": self.incident,
            "suspended": self.suspended,
        }


def _judge(
    event: AccessEvent, detections: Iterable[Detection], act: int, trip: int
) -> tuple[float, list[str], bool, bool, tuple[str, ...]]:
    actor = event.principal if event.principal else f"ip:{event.client_ip}"
    score = 0.0
    reasons: list[str] = []
    incident = suspended = False
    rules: list[str] = []
    for d in detections:
        if d.actor != actor:
            continue
        score = max(score, d.score)
        reasons.append(d.title)
        if d.severity >= act:
            incident = True
            rules.append(d.rule)
            if d.severity >= trip and d.scope in ("principal", "token"):
                suspended = True
    return score, reasons, incident, suspended, tuple(rules)


def score_events(
    detector: Detector,
    events: Sequence[AccessEvent],
    *,
    trip_severity: int = TRIP_SEVERITY,
    progress: Callable[[int], None] | None = None,
) -> list[Score]:
    """Scores for `events`, in their given order, computed in time order.

    Every event is observed and recorded (as if refused before observe when it was), and
    the model scores each chunk of events in one batch. `progress(n)` is told of each chunk.
    """
    order = sorted(range(len(events)), key=lambda i: events[i].ts)
    scores: list[Score | None] = [None] * len(events)
    act = detector.config.act_severity
    for begin in range(0, len(order), CHUNK):
        chunk = order[begin : begin + CHUNK]
        assessments = [detector.record(events[i], observed=False) for i in chunk]
        model = {id(r.event): r for r in detector.score_pending()}
        for i, assessment in zip(chunk, assessments, strict=True):
            event = events[i]
            found = assessment.detections
            result = model.get(id(event))
            if result is not None and result.detection is not None:
                found = [*found, result.detection]
            score, reasons, incident, suspended, rules = _judge(event, found, act, trip_severity)
            if result is not None:
                score = max(score, result.score)
            scores[i] = Score(
                event.request_id, score, score >= 0.5, reasons, incident, suspended, rules
            )
        if progress is not None:
            progress(len(chunk))
    return [s for s in scores if s is not None]
