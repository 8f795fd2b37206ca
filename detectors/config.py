"""Detection config: the calendar, every rule's settings (one key per rule in `rules.RULES`),
the priors for principals nobody knows, baseline learning and the model."""

from __future__ import annotations

import dataclasses
from typing import Any

from detectors.calendar import HoursOverride, WorkingHours, parse_hhmm
from detectors.profiles import MEASURES
from detectors.rules import RULES
from gateway.configtree import field

__all__ = [
    "DetectionConfig",
    "HoursOverride",
    "Learning",
    "ModelSettings",
    "Priors",
    "WorkingHours",
    "parse_hhmm",
    "rule_config",
]

# Severities are OCSF severity_id: 1 informational, 2 low, 3 medium, 4 high, 5 critical.


@dataclasses.dataclass(frozen=True, slots=True)
class Priors:
    """Daily peaks of a typical principal, for principals with no history and no known peers
    (a gateway without a trained model): the rules' tolerance factors apply on top."""

    requests_1m: float = field(60.0, min=0.0)
    requests_5m: float = field(200.0, min=0.0)
    requests_1h: float = field(800.0, min=0.0)
    requests_day: float = field(3000.0, min=0.0)
    distinct_1h: float = field(16.0, min=0.0, doc="distinct records in an hour")
    distinct_day: float = field(80.0, min=0.0)
    records_1h: float = field(5000.0, min=0.0)
    records_day: float = field(20000.0, min=0.0)
    records_response: float = field(2000.0, min=0.0)
    sequential_1h: float = field(0.0, min=0.0)
    not_found_5m: float = field(10.0, min=0.0)

    def peaks(self) -> list[float]:
        return [float(getattr(self, name)) for name in MEASURES]


@dataclasses.dataclass(frozen=True, slots=True)
class Learning:
    """How baselines move online (they never learn from a flagged day)."""

    min_days: int = field(3, min=1, doc="active days before a principal's own history counts")
    growth: float = field(0.25, min=0.0, max=10.0, doc="largest rise of a peak per day")
    drift_cap: float = field(3.0, min=1.0, doc="a peak never exceeds this times its reference")


@dataclasses.dataclass(frozen=True, slots=True)
class ModelSettings:
    """The anomaly model: where its file is, how it is batched, smoothed and weighed."""

    path: str | None = field(None, doc="model file from `datagate detect train`; none: rules only")
    batch_size: int = field(256, min=1, max=65536)
    batch_interval_ms: int = field(200, min=1)
    smoothing: float = field(0.2, min=0.01, max=1.0, doc="EWMA weight of each new event")
    min_events: int = field(5, min=1, doc="events of a principal before its model score counts")
    actor_fpr: float = field(0.005, min=0.0, max=0.5, doc="target FPR when calibrating")
    margin: float = field(0.1, min=0.0, max=0.9, doc="share of the gap to 1 added when calibrating")
    severity: int = field(
        2, min=1, max=5, doc="of a model finding: 2 scores only; 3 raises incidents"
    )


def _rule_fields() -> list[tuple[str, type, Any]]:
    return [(rule.name, rule.Config, field(rule.Config())) for rule in RULES]


DetectionConfig = dataclasses.make_dataclass(
    "DetectionConfig",
    [
        ("enabled", bool, field(True)),
        ("act_severity", int, field(3, min=1, max=5, doc="detections at or above this act")),
        ("evidence_refresh_s", int, field(60, min=0, doc="reuse a firing rule's evidence")),
        ("working_hours", WorkingHours, field(WorkingHours())),
        ("priors", Priors, field(Priors())),
        ("learning", Learning, field(Learning())),
        *_rule_fields(),
        ("model", ModelSettings, field(ModelSettings())),
    ],
    frozen=True,
    slots=True,
    namespace={
        "__doc__": "The `detection` section of the gateway config; one key per rule.",
        "__module__": __name__,
    },
)


def rule_config(config: Any, name: str) -> Any:
    """The settings of rule `name` in a DetectionConfig."""
    return getattr(config, name)
