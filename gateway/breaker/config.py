"""Breaker settings (gateway config key `breaker`), validated when the config is loaded."""

from __future__ import annotations

import dataclasses

from gateway.configtree import field
from gateway.errors import ConfigError

SCOPES = ("principal", "department", "dataset", "pair", "address")
# What a detection about a principal trips; an address breaker is tripped by findings about
# the address (it suspends the principals new to the address, not those who share it).
TRIP_SCOPES = SCOPES[:4]


@dataclasses.dataclass(frozen=True, slots=True)
class BreakerConfig:
    # Cool-down after the first trip; it doubles on each re-trip up to `cooldown_cap`.
    cooldown_base: float = field(60.0, min=1.0)
    cooldown_cap: float = field(3600.0, min=1.0)
    # A trip within this long after the breaker last closed counts as a re-trip (doubles).
    retrip_memory: float = field(3600.0, min=0.0)
    # Probe requests admitted in half-open; all clean closes, one bad reopens.
    half_open_probes: int = field(3, min=1, max=100)
    # A reserved probe that reports nothing within this long is given back.
    probe_timeout: float = field(30.0, min=1.0)
    # A detection with severity_id >= this trips at once (OCSF 1..5).
    trip_severity: int = field(4, min=1, max=5)
    # The scope a detection or an anomaly rate trips.
    trip_scope: str = field("principal", choices=TRIP_SCOPES)
    # Anomaly-rate trip: over `anomaly_window` seconds, at least `anomaly_min_requests`
    # requests of which a fraction >= `anomaly_rate` were anomalous.
    anomaly_window: float = field(60.0, min=1.0)
    anomaly_rate: float = field(0.5, min=0.01, max=1.0)
    anomaly_min_requests: int = field(20, min=4)
    # Monitor mode: trips are recorded (state `monitor`) and raise incidents, but nothing
    # is refused. For rollout.
    monitor: bool = False
    # When the local view cannot be trusted, level-1 routes pass only if this is true.
    level1_fail_open: bool = False
    # Full reload of the shared state, and how old the view may get before it is not trusted.
    reload_interval: float = field(2.0, min=0.05)
    stale_after: float = field(6.0, min=0.1)

    def validate(self, path: str) -> None:
        where = f"{path}." if path else ""
        if self.cooldown_cap < self.cooldown_base:
            raise ConfigError(
                f"{where}cooldown_cap: must be >= cooldown_base ({self.cooldown_base})"
            )
        if self.stale_after <= self.reload_interval:
            raise ConfigError(
                f"{where}stale_after: must be > reload_interval ({self.reload_interval})"
            )
