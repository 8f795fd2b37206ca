"""Detection quality on labelled events: per-kind detection and suspension rates, the two actor
FPRs (normal actors with an incident; normal actors suspended), precision, PR-AUC, TTD."""

from __future__ import annotations

import dataclasses
import statistics
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from detectors.events import AccessEvent
from detectors.replay import Score

__all__ = ["Quality", "ScenarioQuality", "actor_key", "evaluate", "format_quality"]


def actor_key(event: AccessEvent) -> str:
    """Who did it: the principal, or the client IP for unauthenticated traffic."""
    return event.principal if event.principal is not None else f"ip:{event.client_ip}"


@dataclasses.dataclass(slots=True)
class ScenarioQuality:
    actors: int = 0
    detected: int = 0  # raised an incident
    suspended: int = 0
    ttd: list[float] = dataclasses.field(default_factory=list)  # seconds, detected actors


@dataclasses.dataclass(slots=True)
class Quality:
    scenarios: dict[str, ScenarioQuality]
    normal_actors: int
    false_positive_actors: list[str]  # normal actors with an incident
    false_positive_reasons: dict[str, str]  # actor -> the first reason it was flagged
    suspended_actors: list[str]  # normal actors suspended
    precision: float
    recall: float
    pr_auc: float

    @property
    def actor_fpr(self) -> float:
        """Normal actors with any incident."""
        return len(self.false_positive_actors) / self.normal_actors if self.normal_actors else 0.0

    @property
    def suspended_fpr(self) -> float:
        """Normal actors suspended."""
        return len(self.suspended_actors) / self.normal_actors if self.normal_actors else 0.0

    @property
    def detection_rate(self) -> float:
        total = sum(q.actors for q in self.scenarios.values())
        return sum(q.detected for q in self.scenarios.values()) / total if total else 0.0

    def ttd(self, kinds: Sequence[str] | None = None) -> list[float]:
        return [t for k, q in self.scenarios.items() if kinds is None or k in kinds for t in q.ttd]


def _average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    if not labels.any():
        return 0.0
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(labels, scores))


def _attack_actors(events: Sequence[AccessEvent]) -> dict[tuple[str, str], tuple[str, str]]:
    """Group attack events into actors: within one scenario, events that share a principal
    or a client IP are one actor (credential stuffing tries many principals from one IP; a
    scraper may rotate IPs with one principal). Maps (label, node) to the actor's root."""
    parent: dict[tuple[str, str], tuple[str, str]] = {}

    def root(node: tuple[str, str]) -> tuple[str, str]:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for event in events:
        label = event.label or "normal"
        if label == "normal":
            continue
        ip = root((label, f"ip:{event.client_ip}"))
        if event.principal is not None:
            parent[root((label, event.principal))] = ip
    return {node: root(node) for node in list(parent)}


def evaluate(events: Sequence[AccessEvent], scores: Sequence[Score]) -> Quality:
    """Score quality per actor and per event.

    An attack actor is one scenario's events linked by a shared principal or client IP; it
    is detected when one of its events raised an incident naming it, and its time to detect
    runs from its first event. Normal actors are the principals (or IPs, unauthenticated) of
    normal events that never appear in an attack (an insider's or victim's own traffic is
    not counted for or against the detector); one incident makes a normal actor a false
    positive, one suspension a suspended one.
    """
    actors = _attack_actors(events)
    first: dict[tuple[str, str], float] = {}
    hit: dict[tuple[str, str], float] = {}
    stopped: set[tuple[str, str]] = set()
    normal_flagged: dict[str, bool] = {}
    normal_suspended: set[str] = set()
    why: dict[str, str] = {}
    involved: set[str] = set()
    for event, score in zip(events, scores, strict=True):
        label = event.label or "normal"
        actor = actor_key(event)
        if label == "normal":
            normal_flagged[actor] = normal_flagged.get(actor, False) or score.incident
            if score.suspended:
                normal_suspended.add(actor)
            if score.incident and actor not in why:
                why[actor] = score.reasons[0] if score.reasons else ""
            continue
        involved.add(actor)
        key = actors[(label, f"ip:{event.client_ip}")]
        first[key] = min(first.get(key, event.ts), event.ts)
        if score.incident:
            hit[key] = min(hit.get(key, event.ts), event.ts)
        if score.suspended:
            stopped.add(key)
    scenarios: dict[str, ScenarioQuality] = defaultdict(ScenarioQuality)
    for key, start in first.items():
        quality = scenarios[key[0]]
        quality.actors += 1
        if key in hit:
            quality.detected += 1
            quality.ttd.append(hit[key] - start)
        if key in stopped:
            quality.suspended += 1
    normal = {a: f for a, f in normal_flagged.items() if a not in involved}
    labels = np.array([(e.label or "normal") != "normal" for e in events])
    predicted = np.array([s.incident for s in scores])
    values = np.array([s.score for s in scores])
    true_positive = int((labels & predicted).sum())
    return Quality(
        scenarios=dict(sorted(scenarios.items())),
        normal_actors=len(normal),
        false_positive_actors=sorted(a for a, flagged in normal.items() if flagged),
        false_positive_reasons={a: why[a] for a, flagged in normal.items() if flagged},
        suspended_actors=sorted(a for a in normal if a in normal_suspended),
        precision=true_positive / predicted.sum() if predicted.any() else 0.0,
        recall=true_positive / labels.sum() if labels.any() else 0.0,
        pr_auc=_average_precision(labels, values),
    )


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.0f}" if values else "-"


def format_quality(quality: Quality, *, verbose: bool = True) -> str:
    """A plain-text report: the per-kind table, the detection rate, both FPRs, TTD."""
    lines = [
        f"{'kind':<24}{'actors':>7}{'detected':>9}{'rate':>8}{'suspended':>10}{'median TTD s':>14}"
    ]
    total = detected = 0
    for name, q in quality.scenarios.items():
        total += q.actors
        detected += q.detected
        rate = q.detected / q.actors if q.actors else 0.0
        lines.append(
            f"{name:<24}{q.actors:>7}{q.detected:>9}{rate:>8.1%}{q.suspended:>10}"
            f"{_median(q.ttd):>14}"
        )
    if total:
        lines.append(
            f"{'all attacks':<24}{total:>7}{detected:>9}{detected / total:>8.1%}"
            f"{'':>10}{_median(quality.ttd()):>14}"
        )
    lines.append(
        f"normal actors: {quality.normal_actors}; with an incident: "
        f"{len(quality.false_positive_actors)} (FPR {quality.actor_fpr:.2%}); suspended: "
        f"{len(quality.suspended_actors)} (FPR {quality.suspended_fpr:.2%})"
    )
    if verbose:
        for actor in quality.false_positive_actors:
            lines.append(
                f"  incident for normal {actor}: {quality.false_positive_reasons.get(actor, '')}"
            )
    lines.append(
        f"events: precision {quality.precision:.3f}, recall {quality.recall:.3f}, "
        f"PR-AUC {quality.pr_auc:.3f}"
    )
    return "\n".join(lines)
