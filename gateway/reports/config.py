"""Report settings (gateway config key `reports`): the live usage and quality counters."""

from __future__ import annotations

import dataclasses

from gateway.configtree import field


@dataclasses.dataclass(frozen=True, slots=True)
class ReportsConfig:
    # Days of live usage counters the dashboard shows (older days are dropped; the audit
    # log keeps everything for `datagate report usage`).
    usage_days: int = field(31, min=1, max=366)
    # Count data-quality observations while responses are masked.
    quality: bool = True
    # Failing record ids kept per field for the owner's data officers.
    quality_samples: int = field(20, min=0, max=1000)
