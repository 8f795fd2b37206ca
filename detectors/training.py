"""Offline fitting: profiles and peer groups from history, the forest, and its threshold on
held-out days."""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from detectors.events import AccessEvent
from detectors.model import DetectorModel, FastForest, fit_forest
from detectors.online import Detector
from detectors.profiles import Profile, build_groups
from gateway.errors import ConfigError

__all__ = ["TrainReport", "fit_profiles", "split_holdout", "train"]

MIN_TRAIN_EVENTS = 50

Progress = Callable[[Iterable[AccessEvent], str], Iterable[AccessEvent]]


def _quiet(events: Iterable[AccessEvent], what: str) -> Iterable[AccessEvent]:
    del what
    return events


def fit_profiles(
    events: Sequence[AccessEvent], config: Any, progress: Progress = _quiet
) -> DetectorModel:
    """Learn every principal's profile, the peer groups and the department and address
    daily peaks by running the history through a learning detector (no drift caps: the
    history is the reference)."""
    detector = Detector(config, None, learn=True)
    for event in progress(events, "profiles"):
        detector.record(event, observed=False)
    end = detector.calendar.at(events[-1].ts).day + 1 if events else 0
    learning, prior = detector.learning, detector.prior
    for state in detector.principals.values():
        state.roll_day(end, learning, prior)
    for table in (detector.departments, detector.addresses):
        for state in table.values():
            state.add(end, "", None, learning)
    profiles: dict[str, Profile] = {k: s.profile for k, s in detector.principals.items()}
    aggregates = {
        f"department:{k}": (s.peak_distinct, s.peak_requests)
        for k, s in detector.departments.items()
    }
    aggregates.update(
        {f"address:{k}": (s.peak_distinct, s.peak_requests) for k, s in detector.addresses.items()}
    )
    groups = build_groups(profiles, config.learning.min_days)
    return DetectorModel(None, 0.5, profiles, groups, aggregates)


def split_holdout(
    events: Sequence[AccessEvent], timezone: str, holdout_days: int
) -> tuple[list[AccessEvent], list[AccessEvent]]:
    """Split time-ordered history into training days and the last `holdout_days` local days."""
    if holdout_days <= 0 or not events:
        return list(events), []
    zone = zoneinfo.ZoneInfo(timezone)
    last_day = dt.datetime.fromtimestamp(events[-1].ts, zone).date()
    first_held = last_day - dt.timedelta(days=holdout_days - 1)
    cut = dt.datetime.combine(first_held, dt.time(), zone).timestamp()
    train = [e for e in events if e.ts < cut]
    held = [e for e in events if e.ts >= cut]
    return train, held


@dataclasses.dataclass(frozen=True, slots=True)
class TrainReport:
    train_events: int
    holdout_events: int
    principals: int
    threshold: float
    holdout_rule_flagged: int  # held-out principals some rule called anomalous


def _features(
    config: Any, model: DetectorModel, events: Iterable[AccessEvent]
) -> tuple[Detector, set[str]]:
    """Run events through a detector: it (vectors queued) and the rule-flagged principals."""
    detector = Detector(config, model)
    flagged: set[str] = set()
    for event in events:
        if detector.record(event, observed=False).anomalous and event.principal is not None:
            flagged.add(event.principal)
    return detector, flagged


def train(
    events: Sequence[AccessEvent],
    config: Any,
    *,
    holdout_days: int,
    seed: int = 0,
    progress: Progress = _quiet,
) -> tuple[DetectorModel, TrainReport]:
    """Fit on normal history: profiles and groups from all of it, the forest on the
    training days, then the threshold on the held-out days (the highest principal score
    allowed by `actor_fpr`)."""
    ordered = sorted(events, key=lambda e: e.ts)
    train_events, held = split_holdout(ordered, config.working_hours.timezone, holdout_days)
    if len(train_events) < MIN_TRAIN_EVENTS:
        raise ConfigError(
            f"history has {len(train_events)} events before the held-out days; "
            f"training needs at least {MIN_TRAIN_EVENTS}"
        )
    model = fit_profiles(ordered, config, progress)
    detector, _ = _features(config, model, progress(train_events, "features"))
    forest = FastForest.from_sklearn(fit_forest(detector.take_vectors()[0], seed=seed))
    calibrate = held or train_events
    probe = dataclasses.replace(model, forest=forest)
    detector, flagged = _features(config, probe, progress(calibrate, "threshold"))
    matrix, queued = detector.take_vectors()
    peaks = smoothed_peaks(forest.anomaly(matrix), queued, config)
    threshold = calibrate_threshold(peaks, config)
    model.forest = forest
    model.threshold = threshold
    model.info = {
        "train_events": len(train_events),
        "holdout_events": len(held),
        "trained_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    report = TrainReport(len(train_events), len(held), len(model.profiles), threshold, len(flagged))
    return model, report


def smoothed_peaks(raw: np.ndarray, events: Sequence[AccessEvent], config: Any) -> dict[str, float]:
    """Each principal's highest smoothed anomaly, smoothed exactly as the online detector does."""
    settings = config.model
    smoothed: dict[str, float] = {}
    seen: Counter[str] = Counter()
    peaks: dict[str, float] = {}
    for value, event in zip(raw.tolist(), events, strict=True):
        name = event.principal
        assert name is not None
        seen[name] += 1
        current = smoothed.get(name)
        current = value if current is None else current + settings.smoothing * (value - current)
        smoothed[name] = current
        if seen[name] >= settings.min_events:
            peaks[name] = max(peaks.get(name, 0.0), current)
    return peaks


def calibrate_threshold(peaks: dict[str, float], config: Any) -> float:
    """The smoothed anomaly that at most `actor_fpr` of held-out principals reach, plus
    `margin` of the remaining distance to 1 (held-out days never show every harmless surprise)."""
    if not peaks:
        raise ConfigError(
            "cannot set the threshold: the held-out days have no principal with enough events"
        )
    quantile = float(
        np.quantile(list(peaks.values()), 1.0 - config.model.actor_fpr, method="higher")
    )
    return min(quantile + config.model.margin * (1.0 - quantile), 0.99)
