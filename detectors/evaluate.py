"""Detection quality on labelled events: per-scenario rate, actor FPR, precision, PR-AUC, TTD."""

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
    detected: int = 0
    ttd: list[float] = dataclasses.field(default_factory=list)  # seconds, detected actors


@dataclasses.dataclass(slots=True)
class Quality:
    scenarios: dict[str, ScenarioQuality]
    normal_actors: int
    false_positive_actors: list[str]
    false_positive_reasons: dict[str, str]  # actor -> the first reason it was flagged
    precision: float
    recall: float
    pr_auc: float

    @property
    def actor_fpr(self) -> float:
        return len(self.false_positive_actors) / self.normal_actors if self.normal_actors else 0.0


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
    is detected when any of its events is anomalous, and its time to detect runs from its
    first event. Normal actors are the principals (or IPs, unauthenticated) of normal events
    that never appear in an attack (an insider's or victim's own traffic is not counted for
    or against the detector); one anomalous event makes a normal actor a false positive.
    """
    actors = _attack_actors(events)
    first: dict[tuple[str, str], float] = {}
    hit: dict[tuple[str, str], float] = {}
    normal_flagged: dict[str, bool] = {}
    why: dict[str, str] = {}
    involved: set[str] = set()
    for event, score in zip(events, scores, strict=True):
        label = event.label or "normal"
        actor = actor_key(event)
        if label == "normal":
            normal_flagged[actor] = normal_flagged.get(actor, False) or score.anomalous
            if score.anomalous and actor not in why:
                why[actor] = score.reasons[0] if score.reasons else ""
            continue
        involved.add(actor)
        key = actors[(label, f"ip:{event.client_ip}")]
        first[key] = min(first.get(key, event.ts), event.ts)
        if score.anomalous:
            hit[key] = min(hit.get(key, event.ts), event.ts)
    scenarios: dict[str, ScenarioQuality] = defaultdict(ScenarioQuality)
    for key, start in first.items():
        quality = scenarios[key[0]]
        quality.actors += 1
        if key in hit:
            quality.detected += 1
            quality.ttd.append(hit[key] - start)
    normal = {a: f for a, f in normal_flagged.items() if a not in involved}
    labels = np.array([(e.label or "normal") != "normal" for e in events])
    predicted = np.array([s.anomalous for s in scores])
    values = np.array([s.score for s in scores])
    true_positive = int((labels & predicted).sum())
    return Quality(
        scenarios=dict(sorted(scenarios.items())),
        normal_actors=len(normal),
        false_positive_actors=sorted(a for a, flagged in normal.items() if flagged),
        false_positive_reasons={a: why[a] for a, flagged in normal.items() if flagged},
        precision=true_positive / predicted.sum() if predicted.any() else 0.0,
        recall=true_positive / labels.sum() if labels.any() else 0.0,
        pr_auc=_average_precision(labels, values),
    )


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.0f}" if values else "-"


def format_quality(quality: Quality) -> str:
    """A plain-text report."""
    lines = [f"{'scenario':<22}{'actors':>7}{'detected':>9}{'rate':>8}{'median TTD s':>14}"]
    total = detected = 0
    for name, q in quality.scenarios.items():
        total += q.actors
        detected += q.detected
        rate = q.detected / q.actors if q.actors else 0.0
        lines.append(f"{name:<22}{q.actors:>7}{q.detected:>9}{rate:>8.1%}{_median(q.ttd):>14}")
    if total:
        lines.append(f"{'all attacks':<22}{total:>7}{detected:>9}{detected / total:>8.1%}")
    lines.append(
        f"normal actors: {quality.normal_actors}, false positives: "
        f"{len(quality.false_positive_actors)} (actor FPR {quality.actor_fpr:.2%})"
    )
    for actor in quality.false_positive_actors:
        lines.append(f"  false positive {actor}: {quality.false_positive_reasons.get(actor, '')}")
    lines.append(
        f"events: precision {quality.precision:.3f}, recall {quality.recall:.3f}, "
        f"PR-AUC {quality.pr_auc:.3f}"
    )
    return "\n".join(lines)
