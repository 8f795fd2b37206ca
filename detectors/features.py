"""Per-principal, per-IP and per-token behaviour state, baselines, and the model's features."""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from math import log1p
from typing import TYPE_CHECKING, Any

from detectors.calendar import LocalTime

if TYPE_CHECKING:
    from detectors.detection import Detection
from detectors.windows import (
    BYTES,
    COUNT,
    RECORDS,
    S401,
    S403,
    S404,
    S429,
    SEQ,
    Windows,
    sketch_bit,
)

__all__ = [
    "FEATURE_NAMES",
    "IpState",
    "PrincipalBaseline",
    "PrincipalState",
    "TokenState",
    "feature_vector",
    "numeric_id",
]

FEATURE_NAMES: tuple[str, ...] = (
    "count_1m",
    "count_5m",
    "count_1h",
    "ratio_5m",
    "ratio_1h",
    "iat_cv",
    "hour_rarity",
    "off_hours",
    "level",
    "distinct_records_1h",
    "distinct_datasets_1h",
    "sequential_ratio_5m",
    "records_1h",
    "bytes_1h",
    "rate_401_5m",
    "rate_403_5m",
    "rate_404_5m",
    "rate_429_5m",
    "new_ip",
    "new_agent",
    "token_ips_1h",
    "ip_count_1m",
    "ip_401_5m",
)

# Sketch numbers in the hour window.
SK_RECORDS, SK_DATASETS = 0, 1
SMALL_SKETCH = 64
MAX_KNOWN = 64  # IPs / user agents remembered per principal
MAX_TOKEN_IPS = 16
SAMPLE_IDS = 5
_IAT_ALPHA = 0.05
_IAT_MIN_EVENTS = 10


@dataclasses.dataclass(slots=True)
class PrincipalBaseline:
    """What is normal for one principal, fitted from history."""

    hourly: list[float]  # mean requests per hour; slots 0..23 working days, 24..47 other days
    peak: float  # a high quantile of the principal's busy hours
    ips: list[str]
    agents: list[str]

    def expected(self, slot: int, floor: float) -> float:
        """The hourly rate to compare with: this slot's mean, not below a share of the peak."""
        return max(self.hourly[slot], 0.25 * self.peak, floor)

    def rarity(self, slot: int) -> float:
        """1 for an hour this principal never works, falling towards 0 for its busy hours."""
        top = max(self.hourly)
        if top <= 0:
            return 1.0
        return math.exp(-self.hourly[slot] / (0.1 * top))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PrincipalBaseline:
        hourly = [float(v) for v in data["hourly"]]
        if len(hourly) != 48:
            raise ValueError("hourly: expected 48 values")
        return cls(hourly, float(data["peak"]), list(data["ips"]), list(data["agents"]))


def numeric_id(record_id: str | None) -> int | None:
    """The trailing number of a record id (`P000123` -> 123), for sequence detection."""
    if record_id is None:
        return None
    if record_id.isdigit():
        return int(record_id) if len(record_id) <= 18 else None
    end = len(record_id)
    start = end
    while start > 0 and record_id[start - 1].isdigit():
        start -= 1
    if start == end or end - start > 18:
        return None
    return int(record_id[start:end])


class PrincipalState:
    """Everything the detector keeps about one principal; updated in O(1) per event."""

    __slots__ = (
        "agents",
        "baseline",
        "expected",
        "fired",
        "flagged_hour",
        "hour",
        "hour_count",
        "hour_slot",
        "iat_m1",
        "iat_m2",
        "iat_n",
        "ips",
        "last_id",
        "last_ts",
        "model_n",
        "model_score",
        "rarity",
        "samples",
        "windows",
    )

    def __init__(self, baseline: PrincipalBaseline) -> None:
        self.baseline = baseline
        self.windows = Windows(sketches=2)
        self.ips = set(baseline.ips)
        self.agents = set(baseline.agents)
        self.last_ts = -1.0
        self.iat_m1 = 0.0
        self.iat_m2 = 0.0
        self.iat_n = 0
        self.last_id: int | None = None
        self.hour = -1
        self.hour_count = 0
        self.hour_slot = 0
        self.flagged_hour = False
        self.expected = 1.0  # this hour's baseline rate and rarity, set by roll_hour
        self.rarity = 1.0
        self.model_score = 0.0  # smoothed raw model anomaly
        self.model_n = 0
        self.samples: deque[str] = deque(maxlen=SAMPLE_IDS)
        self.fired: dict[str, Detection] = {}

    def observe(
        self, ts: float, request_id: str, record_id: str | None, dataset: str | None, max_step: int
    ) -> bool:
        """Count one request; returns whether its record id follows the previous one."""
        if self.last_ts >= 0:
            gap = min(max(ts - self.last_ts, 0.0), 3600.0)
            self.iat_m1 += _IAT_ALPHA * (gap - self.iat_m1)
            self.iat_m2 += _IAT_ALPHA * (gap * gap - self.iat_m2)
            self.iat_n += 1
        self.last_ts = ts
        self.windows.advance(ts)
        sequential = False
        number = numeric_id(record_id)
        if number is not None:
            last = self.last_id
            sequential = last is not None and 0 < abs(number - last) <= max_step
            self.last_id = number
            self.windows.mark(SK_RECORDS, sketch_bit(record_id))  # type: ignore[arg-type]
        if dataset is not None:
            self.windows.mark(SK_DATASETS, sketch_bit(dataset, SMALL_SKETCH))
        self.windows.add_request(sequential)
        self.samples.append(request_id)
        return sequential

    def iat_cv(self) -> float:
        """Coefficient of variation of inter-arrival times: low for scripts, high for people."""
        if self.iat_n < _IAT_MIN_EVENTS or self.iat_m1 <= 0:
            return 1.0
        var = max(self.iat_m2 - self.iat_m1 * self.iat_m1, 0.0)
        return min(math.sqrt(var) / self.iat_m1, 5.0)

    def novelty(self, client_ip: str, agent: str) -> tuple[bool, bool]:
        """Whether the IP and the agent are new for this principal (never, before it has any)."""
        return (
            bool(self.ips) and client_ip not in self.ips,
            bool(self.agents) and agent not in self.agents,
        )

    def remember(self, client_ip: str, agent: str) -> None:
        """Learn an IP and agent as familiar (only for traffic nobody flagged)."""
        if client_ip not in self.ips and len(self.ips) < MAX_KNOWN:
            self.ips.add(client_ip)
        if agent not in self.agents and len(self.agents) < MAX_KNOWN:
            self.agents.add(agent)

    def roll_hour(self, ts: float, slot: int, alpha: float, floor: float) -> None:
        """At an hour boundary, fold the finished hour into the baseline unless it was flagged.

        Hours with no traffic are not folded in, so the baseline of an hour is the EWMA of
        the principal's active hours in that slot.
        """
        hour = int(ts // 3600)
        if hour == self.hour:
            self.hour_count += 1
            return
        if self.hour >= 0 and not self.flagged_hour and alpha > 0:
            hourly = self.baseline.hourly
            previous_slot = self.hour_slot
            hourly[previous_slot] += alpha * (self.hour_count - hourly[previous_slot])
        self.hour = hour
        self.hour_slot = slot
        self.hour_count = 1
        self.flagged_hour = False
        self.expected = self.baseline.expected(slot, floor)
        self.rarity = self.baseline.rarity(slot)


class IpState:
    """Per client IP: request counts and failures, with or without a known principal."""

    __slots__ = ("fired", "last_ts", "samples", "windows")

    def __init__(self) -> None:
        self.windows = Windows()
        self.samples: deque[str] = deque(maxlen=SAMPLE_IDS)
        self.fired: dict[str, Detection] = {}
        self.last_ts = 0.0


class TokenState:
    """Per token id: the client IPs it came from, each with when it was last seen.

    Its request rate is its principal's; only the spread over IPs is its own.
    """

    __slots__ = ("fired", "ips", "last_ts", "samples", "windows")

    def __init__(self) -> None:
        self.windows: Windows | None = None
        self.ips: dict[str, float] = {}
        self.samples: deque[str] = deque(maxlen=SAMPLE_IDS)
        self.fired: dict[str, Detection] = {}
        self.last_ts = 0.0

    def seen(self, ts: float, client_ip: str) -> int:
        """Note a request from `client_ip`; returns the IPs seen in the last hour."""
        ips = self.ips
        ips[client_ip] = ts
        if len(ips) > MAX_TOKEN_IPS:
            del ips[min(ips, key=ips.__getitem__)]
        return self.ips_1h(ts)

    def ips_1h(self, ts: float) -> int:
        since = ts - 3600.0
        return sum(1 for seen in self.ips.values() if seen >= since)


def feature_vector(
    ts: float,
    local: LocalTime,
    level: int,
    principal: PrincipalState,
    ip: IpState,
    token: TokenState | None,
    new_ip: bool,
    new_agent: bool,
) -> list[float]:
    """The model's input for one event, in FEATURE_NAMES order."""
    m, f, h = principal.windows.totals()
    base = principal.expected
    count5 = f[COUNT] or 1
    ip_m, ip_f, _ = ip.windows.totals()
    return [
        log1p(m[COUNT]),
        log1p(f[COUNT]),
        log1p(h[COUNT]),
        math.log((f[COUNT] * 12 + 1) / base),
        math.log((h[COUNT] + 1) / base),
        principal.iat_cv(),
        principal.rarity,
        0.0 if local.working else 1.0,
        float(level),
        log1p(principal.windows.distinct(SK_RECORDS)),
        principal.windows.distinct(SK_DATASETS, SMALL_SKETCH),
        f[SEQ] / count5,
        log1p(h[RECORDS]),
        log1p(h[BYTES]),
        f[S401] / count5,
        f[S403] / count5,
        f[S404] / count5,
        f[S429] / count5,
        1.0 if new_ip else 0.0,
        1.0 if new_agent else 0.0,
        float(token.ips_1h(ts)) if token is not None else 1.0,
        log1p(ip_m[COUNT]),
        log1p(ip_f[S401]),
    ]
