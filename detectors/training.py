"""Offline fitting: baselines from history, the forest, and its threshold on held-out days."""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo
from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

from detectors.calendar import Calendar
from detectors.config import DetectionConfig
from detectors.events import AccessEvent
from detectors.features import MAX_KNOWN, PrincipalBaseline
from detectors.model import DetectorModel, FastForest, fit_forest
from detectors.online import Detector
from gateway.errors import ConfigError

__all__ = ["TrainReport", "fit_baselines", "split_holdout", "train"]

MIN_TRAIN_EVENTS = 50


def fit_baselines(
    events: Sequence[AccessEvent], calendar: Calendar
) -> tuple[dict[str, PrincipalBaseline], list[float]]:
    """Per-principal mean requests per hour slot (over every hour of the history's span),
    busy-hour peak, familiar IPs and user agents; plus the median profile for newcomers."""
    if not events:
        return {}, [0.0] * 48
    first = int(min(e.ts for e in events) // 3600)
    last = int(max(e.ts for e in events) // 3600)
    slot_hours = [0] * 48
    for hour in range(first, last + 1):
        slot_hours[calendar.at(hour * 3600 + 1800).slot] += 1
    per_hour: dict[str, Counter[int]] = defaultdict(Counter)
    ips: dict[str, Counter[str]] = defaultdict(Counter)
    agents: dict[str, Counter[str]] = defaultdict(Counter)
    for event in events:
        if event.principal is None:
            continue
        per_hour[event.principal][int(event.ts // 3600)] += 1
        ips[event.principal][event.client_ip] += 1
        agents[event.principal][event.user_agent] += 1
    baselines = {}
    for principal, hours in per_hour.items():
        sums = [0.0] * 48
        for hour, count in hours.items():
            sums[calendar.at(hour * 3600 + 1800).slot] += count
        hourly = [s / n if n else 0.0 for s, n in zip(sums, slot_hours, strict=True)]
        peak = float(np.percentile(list(hours.values()), 90))
        baselines[principal] = PrincipalBaseline(
            hourly,
            peak,
            [ip for ip, _ in ips[principal].most_common(MAX_KNOWN)],
            [ua for ua, _ in agents[principal].most_common(MAX_KNOWN)],
        )
    profiles = np.array([b.hourly for b in baselines.values()]) if baselines else np.zeros((1, 48))
    return baselines, [float(v) for v in np.median(profiles, axis=0)]


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
    config: DetectionConfig, model: DetectorModel, events: Sequence[AccessEvent]
) -> tuple[Detector, set[str]]:
    """Run events through a detector: it (vectors queued) and the rule-flagged principals."""
    detector = Detector(config, model)
    flagged: set[str] = set()
    for event in events:
        if detector.record(event, observed=False).anomalous and event.principal is not None:
            flagged.add(event.principal)
    return detector, flagged


def train(
    events: Sequence[AccessEvent], config: DetectionConfig, *, holdout_days: int, seed: int = 0
) -> tuple[DetectorModel, TrainReport]:
    """Fit on normal history: baselines, then the forest on the training days, then the
    threshold on the held-out days (the highest principal score allowed by `actor_fpr`)."""
    ordered = sorted(events, key=lambda e: e.ts)
    calendar = Calendar(config.working_hours)
    train_events, held = split_holdout(ordered, config.working_hours.timezone, holdout_days)
    if len(train_events) < MIN_TRAIN_EVENTS:
        raise ConfigError(
            f"history has {len(train_events)} events before the held-out days; "
            f"training needs at least {MIN_TRAIN_EVENTS}"
        )
    baselines, default = fit_baselines(train_events, calendar)
    fitting = DetectorModel(None, 0.5, baselines, default)
    detector, _ = _features(config, fitting, train_events)
    forest = FastForest.from_sklearn(fit_forest(detector.take_vectors()[0], seed=seed))
    calibrate = held or train_events
    probe = DetectorModel(forest, 0.5, baselines, default)
    detector, flagged = _features(config, probe, calibrate)
    matrix, queued = detector.take_vectors()
    peaks = smoothed_peaks(forest.anomaly(matrix), queued, config)
    threshold = calibrate_threshold(peaks, config)
    all_baselines, all_default = fit_baselines(ordered, calendar)
    model = DetectorModel(
        forest,
        threshold,
        all_baselines,
        all_default,
        info={
            "train_events": len(train_events),
            "holdout_events": len(held),
            "trained_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
    )
    report = TrainReport(len(train_events), len(held), len(all_baselines), threshold, len(flagged))
    return model, report


def smoothed_peaks(
    raw: np.ndarray, events: Sequence[AccessEvent], config: DetectionConfig
) -> dict[str, float]:
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


def calibrate_threshold(peaks: dict[str, float], config: DetectionConfig) -> float:
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
