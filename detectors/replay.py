"""Offline scoring: run recorded events through the online detector in time order."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from detectors.events import AccessEvent
from detectors.online import Detector

__all__ = ["Score", "score_events"]

CHUNK = 2048  # events per model batch


@dataclasses.dataclass(slots=True)
class Score:
    """One output line of `datagate detect replay`."""

    request_id: str
    score: float
    anomalous: bool
    reasons: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "score": round(self.score, 4),
            "anomalous": self.anomalous,
            "reasons": self.reasons,
        }


def score_events(detector: Detector, events: Sequence[AccessEvent]) -> list[Score]:
    """Scores for `events`, in their given order, computed in time order.

    Every event is observed and recorded (as if refused before observe when it was), and
    the model scores each chunk of events in one batch.
    """
    order = sorted(range(len(events)), key=lambda i: events[i].ts)
    scores: list[Score | None] = [None] * len(events)
    for begin in range(0, len(order), CHUNK):
        chunk = order[begin : begin + CHUNK]
        assessments = [detector.record(events[i], observed=False) for i in chunk]
        model = {id(r.event): r for r in detector.score_pending()}
        for i, assessment in zip(chunk, assessments, strict=True):
            event = events[i]
            score = assessment.score
            reasons = assessment.reasons
            result = model.get(id(event))
            if result is not None:
                score = max(score, result.score)
                if result.detection is not None:
                    reasons = [*reasons, result.detection.title]
            scores[i] = Score(event.request_id, score, score >= 0.5, reasons)
    return [s for s in scores if s is not None]
