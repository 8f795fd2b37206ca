"""Detection config: the working-hours calendar, rule thresholds and severities, model settings."""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo

from gateway.configtree import field
from gateway.errors import ConfigError

__all__ = [
    "AboveBaseline",
    "AuthFailures",
    "BulkExport",
    "DetectionConfig",
    "Enumeration",
    "HighFrequency",
    "ModelSettings",
    "OffHours",
    "TokenSpread",
    "WorkingHours",
    "parse_hhmm",
]

# Severities are OCSF severity_id: 1 informational, 2 low, 3 medium, 4 high, 5 critical.


def parse_hhmm(value: str, path: str) -> int:
    """Minutes after midnight for an `HH:MM` string (24:00 allowed as the end of the day)."""
    try:
        hours, minutes = value.split(":")
        total = int(hours) * 60 + int(minutes)
    except ValueError:
        raise ConfigError(f"{path}: expected HH:MM, got {value!r}") from None
    if not 0 <= int(minutes) < 60 or not 0 <= total <= 24 * 60:
        raise ConfigError(f"{path}: expected HH:MM, got {value!r}")
    return total


@dataclasses.dataclass(frozen=True, slots=True)
class WorkingHours:
    """When access counts as working hours; everything else is off-hours."""

    timezone: str = field("Asia/Shanghai", nonempty=True, doc="IANA time zone name")
    weekdays: list[int] = field([1, 2, 3, 4, 5], doc="ISO weekdays, 1 Monday .. 7 Sunday")
    start: str = field("08:00", doc="local start of the working day, HH:MM")
    end: str = field("19:00", doc="local end of the working day, HH:MM")
    holidays: list[str] = field([], doc="YYYY-MM-DD dates that are not working days")
    night_start: str = field("00:00", doc="local start of the night, HH:MM")
    night_end: str = field("06:00", doc="local end of the night, HH:MM (may wrap midnight)")

    def validate(self, path: str) -> None:
        prefix = f"{path}." if path else ""
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"{prefix}timezone: unknown time zone {self.timezone!r}") from None
        for i, day in enumerate(self.weekdays):
            if not 1 <= day <= 7:
                raise ConfigError(f"{prefix}weekdays[{i}]: must be 1..7, got {day!r}")
        if parse_hhmm(self.start, f"{prefix}start") >= parse_hhmm(self.end, f"{prefix}end"):
            raise ConfigError(f"{prefix}end: must be after start {self.start!r}")
        night = parse_hhmm(self.night_start, f"{prefix}night_start")
        if night == parse_hhmm(self.night_end, f"{prefix}night_end"):
            raise ConfigError(f"{prefix}night_end: must differ from night_start")
        for i, day in enumerate(self.holidays):
            try:
                dt.date.fromisoformat(day)
            except ValueError:
                raise ConfigError(
                    f"{prefix}holidays[{i}]: expected YYYY-MM-DD, got {day!r}"
                ) from None


@dataclasses.dataclass(frozen=True, slots=True)
class HighFrequency:
    """Too many requests in a window, per principal, client IP or token."""

    enabled: bool = True
    severity: int = field(4, min=1, max=5)
    per_minute: int = field(120, min=1)
    per_5min: int = field(400, min=1)
    per_hour: int = field(2000, min=1)


@dataclasses.dataclass(frozen=True, slots=True)
class AboveBaseline:
    """An hour far above the principal's own baseline for that hour."""

    enabled: bool = True
    severity: int = field(3, min=1, max=5)
    min_per_hour: int = field(300, min=1, doc="never fire below this many requests in 1 h")
    ratio: float = field(8.0, min=1.0, doc="1 h count over the baseline hourly rate")


@dataclasses.dataclass(frozen=True, slots=True)
class OffHours:
    """Off-hours access to data of `min_level` or above."""

    enabled: bool = True
    min_level: int = field(3, min=1, max=4)
    severity: int = field(2, min=1, max=5, doc="any off-hours access (below 3: not anomalous)")
    bulk_severity: int = field(4, min=1, max=5)
    bulk_requests_per_hour: int = field(150, min=1)
    bulk_records_per_hour: int = field(5000, min=1)
    unfamiliar_severity: int = field(
        3,
        min=1,
        max=5,
        doc="from a new IP at night, or from a new IP and agent outside the day's hours",
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Enumeration:
    """Walking record ids in sequence, or many lookups of records that do not exist."""

    enabled: bool = True
    severity: int = field(4, min=1, max=5)
    max_step: int = field(3, min=1, doc="ids at most this far apart count as sequential")
    sequential_5min: int = field(20, min=1)
    sequential_hour: int = field(60, min=1)
    sequential_ratio: float = field(0.6, min=0.0, max=1.0)
    not_found_5min: int = field(20, min=1)
    not_found_ratio: float = field(0.5, min=0.0, max=1.0)


@dataclasses.dataclass(frozen=True, slots=True)
class BulkExport:
    """Large volumes of records or bytes returned."""

    enabled: bool = True
    severity: int = field(4, min=1, max=5)
    records_per_hour: int = field(20000, min=1)
    bytes_per_hour: int = field(200_000_000, min=1)
    records_per_response: int = field(10000, min=1)


@dataclasses.dataclass(frozen=True, slots=True)
class AuthFailures:
    """Bursts of failed authentication (401) from one client IP: credential stuffing."""

    enabled: bool = True
    severity: int = field(4, min=1, max=5)
    per_minute: int = field(20, min=1)
    per_5min: int = field(50, min=1)


@dataclasses.dataclass(frozen=True, slots=True)
class TokenSpread:
    """One token used from many client IPs."""

    enabled: bool = True
    severity: int = field(3, min=1, max=5)
    max_ips_per_hour: int = field(3, min=1)


@dataclasses.dataclass(frozen=True, slots=True)
class ModelSettings:
    """The anomaly model: where its file is and how it is batched and smoothed."""

    path: str | None = field(None, doc="model file from `datagate detect train`; none: rules only")
    batch_size: int = field(256, min=1, max=65536)
    batch_interval_ms: int = field(200, min=1)
    smoothing: float = field(0.2, min=0.01, max=1.0, doc="EWMA weight of each new event")
    min_events: int = field(5, min=1, doc="events of a principal before its model score counts")
    actor_fpr: float = field(0.005, min=0.0, max=0.5, doc="target FPR when calibrating")
    margin: float = field(0.1, min=0.0, max=0.9, doc="share of the gap to 1 added when calibrating")


@dataclasses.dataclass(frozen=True, slots=True)
class DetectionConfig:
    """The `detection` section of the gateway config."""

    enabled: bool = True
    act_severity: int = field(3, min=1, max=5, doc="detections at or above this act at once")
    evidence_refresh_s: int = field(60, min=0, doc="reuse a firing rule's evidence this long")
    working_hours: WorkingHours = field(WorkingHours())
    high_frequency: HighFrequency = field(HighFrequency())
    above_baseline: AboveBaseline = field(AboveBaseline())
    off_hours: OffHours = field(OffHours())
    enumeration: Enumeration = field(Enumeration())
    bulk_export: BulkExport = field(BulkExport())
    auth_failures: AuthFailures = field(AuthFailures())
    token_spread: TokenSpread = field(TokenSpread())
    default_hourly: float = field(30.0, min=0.1, doc="baseline requests/hour with no history")
    baseline_alpha: float = field(0.1, min=0.0, max=1.0, doc="EWMA weight of a finished hour")
    model: ModelSettings = field(ModelSettings())
