"""Behaviour state per principal, address, address range, token and department, updated in O(1)
per event; each learns its own normal on the days nobody flagged; the model's feature vector."""

from __future__ import annotations

import math
from collections import deque
from math import log1p
from typing import TYPE_CHECKING

from detectors.calendar import LocalTime
from detectors.profiles import (
    DISTINCT_1H,
    DISTINCT_DAY,
    MAX_KNOWN,
    NM,
    NOT_FOUND_5M,
    RECORDS_1H,
    RECORDS_DAY,
    RECORDS_RESPONSE,
    REQ_1H,
    REQ_1M,
    REQ_5M,
    REQ_DAY,
    SEQ_1H,
    WALK_MIN,
    GroupProfile,
    Limits,
    Profile,
)
from detectors.windows import COUNT, RECORDS, S401, S403, S404, S429, SEQ, Windows, sketch_bit

if TYPE_CHECKING:
    from detectors.detection import Detection

__all__ = [
    "FEATURE_NAMES",
    "Aggregate",
    "Decayed",
    "IpState",
    "Learning",
    "PrincipalState",
    "TokenState",
    "feature_vector",
    "numeric_id",
]

FEATURE_NAMES: tuple[str, ...] = (
    "count_1m",
    "count_1h",
    "ratio_1m",
    "ratio_1h",
    "iat_cv",
    "hour_share",
    "peer_hour_share",
    "off_hours",
    "level",
    "distinct_ratio_1h",
    "distinct_ratio_day",
    "sequential_ratio_5m",
    "records_ratio_1h",
    "rate_401_5m",
    "rate_403_5m",
    "rate_404_5m",
    "rate_429_5m",
    "new_ip",
    "new_agent",
    "new_dataset",
    "token_ips_1h",
    "ip_count_1m",
)

SK_RECORDS, SK_DATASETS = 0, 1
SMALL_SKETCH = 64
SAMPLE_IDS = 5
MAX_DAY_RECORDS = 50_000  # distinct record ids kept per day; beyond it every ceiling is passed
MAX_TOKEN_IPS = 16
_IAT_ALPHA = 0.05
_IAT_MIN_EVENTS = 10


class Learning:
    """How a profile may move online: a long-term reference it may not outgrow by more than
    `drift_cap`, and at most `growth` per day (a gradual ramp is not learned as normal)."""

    __slots__ = ("drift_cap", "growth", "min_days", "unbounded")

    def __init__(self, growth: float, drift_cap: float, min_days: int, unbounded: bool) -> None:
        self.growth = growth
        self.drift_cap = drift_cap
        self.min_days = min_days
        self.unbounded = unbounded  # training: the history is the reference


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


class Decayed:
    """An exponentially decaying count (time constant `tau`): long windows in O(1)."""

    __slots__ = ("tau", "ts", "value")

    def __init__(self, tau: float) -> None:
        self.tau = tau
        self.value = 0.0
        self.ts = 0.0

    def add(self, ts: float, amount: float = 1.0) -> float:
        if ts > self.ts:
            self.value *= math.exp((self.ts - ts) / self.tau)
            self.ts = ts
        self.value += amount
        return self.value

    def at(self, ts: float) -> float:
        return self.value * math.exp((self.ts - ts) / self.tau) if ts > self.ts else self.value


class PrincipalState:
    """Everything kept about one principal: windows, today's figures, the profile it learns
    (bounded by its reference), its limits against its own and its peers' normal."""

    __slots__ = (
        "agents",
        "datasets",
        "day",
        "day_count",
        "day_flagged",
        "day_hours",
        "day_max",
        "day_records",
        "day_records_out",
        "day_walks",
        "fired",
        "group",
        "iat_m1",
        "iat_m2",
        "iat_n",
        "ips",
        "last_id",
        "last_ts",
        "limits",
        "model_n",
        "model_score",
        "peers",
        "profile",
        "reference",
        "samples",
        "windows",
    )

    def __init__(
        self, profile: Profile, reference: Profile | None, group: GroupProfile | None
    ) -> None:
        self.profile = profile
        self.reference = reference
        self.group = group
        self.peers = False  # the group is the principal's department's, not the global one
        self.windows = Windows(sketches=2)
        self.ips = set(profile.ips)
        self.agents = set(profile.agents)
        self.datasets = set(profile.datasets)
        self.day = -1
        self.day_count = 0
        self.day_records: set[str] = set()
        self.day_records_out = 0
        self.day_max = [0.0] * NM
        self.day_hours: set[int] = set()
        self.day_walks: set[int] = set()
        self.day_flagged = False
        self.limits = Limits(None, [0.0] * NM)
        self.last_ts = -1.0
        self.iat_m1 = 0.0
        self.iat_m2 = 0.0
        self.iat_n = 0
        self.last_id: int | None = None
        self.model_score = 0.0
        self.model_n = 0
        self.samples: deque[str] = deque(maxlen=SAMPLE_IDS)
        self.fired: dict[str, Detection] = {}

    # -- the day --------------------------------------------------------------------------

    def roll_day(self, day: int, learning: Learning, prior: list[float]) -> None:
        """At the principal's first event of a local day: learn the finished day unless it
        was flagged, then fix today's limits."""
        if self.day >= 0:
            self._learn(learning)
        elif self.profile.span == 0:
            self.profile.first_day = day
        self.day = day
        self.profile.span = max(self.profile.span, day - self.profile.first_day + 1)
        self.day_count = 0
        self.day_records = set()
        self.day_records_out = 0
        self.day_max = [0.0] * NM
        self.day_hours = set()
        self.day_walks = set()
        self.day_flagged = False
        self._set_limits(learning, prior)

    def _learn(self, learning: Learning) -> None:
        # While training, the history is the reference: rules judged it against the priors.
        if (self.day_flagged and not learning.unbounded) or self.day_count == 0:
            return
        profile = self.profile
        peaks = profile.peaks
        reference = self.reference
        cap_base = reference.peaks if reference is not None and reference.days else None
        group = self.group.peaks if self.group is not None else None
        bootstrap = profile.days < learning.min_days
        for m in range(NM):
            value = self.day_max[m]
            if value <= peaks[m]:
                continue
            if not learning.unbounded:
                if bootstrap:
                    # Too little history to cap growth against: stay within the peers' normal.
                    if group is not None:
                        value = min(value, group[m] * learning.drift_cap)
                else:
                    value = min(value, peaks[m] * (1.0 + learning.growth))
                if cap_base is not None:
                    value = min(value, max(cap_base[m], 1.0) * learning.drift_cap)
            peaks[m] = max(peaks[m], value)
        profile.days += 1
        for hour in self.day_hours:
            profile.hour_days[hour] += 1
        for hour in self.day_walks:
            profile.walk_hours[hour] += 1

    def _set_limits(self, learning: Learning, prior: list[float]) -> None:
        own = self.profile.peaks if self.profile.days >= learning.min_days else None
        peer = self.group.peaks if self.group is not None else prior
        self.limits = Limits(own, peer)

    # -- per request ------------------------------------------------------------------------

    def observe(
        self,
        ts: float,
        local: LocalTime,
        request_id: str,
        record_id: str | None,
        dataset: str | None,
        max_step: int,
    ) -> None:
        """Count one request before it is forwarded."""
        if self.last_ts >= 0:
            gap = min(max(ts - self.last_ts, 0.0), 3600.0)
            self.iat_m1 += _IAT_ALPHA * (gap - self.iat_m1)
            self.iat_m2 += _IAT_ALPHA * (gap * gap - self.iat_m2)
            self.iat_n += 1
        self.last_ts = ts
        windows = self.windows
        m, f, h = windows.advance(ts)
        sequential = False
        number = numeric_id(record_id)
        if number is not None:
            last = self.last_id
            sequential = last is not None and 0 < abs(number - last) <= max_step
            self.last_id = number
            windows.mark(SK_RECORDS, sketch_bit(record_id))  # type: ignore[arg-type]
            if len(self.day_records) < MAX_DAY_RECORDS:
                self.day_records.add(record_id)  # type: ignore[arg-type]
        if dataset is not None:
            windows.mark(SK_DATASETS, sketch_bit(dataset, SMALL_SKETCH))
        windows.add_request(sequential)
        self.day_count += 1
        self.day_hours.add(local.hour)
        self.samples.append(request_id)
        day_max = self.day_max
        if m[COUNT] > day_max[REQ_1M]:
            day_max[REQ_1M] = m[COUNT]
        if f[COUNT] > day_max[REQ_5M]:
            day_max[REQ_5M] = f[COUNT]
        if h[COUNT] > day_max[REQ_1H]:
            day_max[REQ_1H] = h[COUNT]
        day_max[REQ_DAY] = self.day_count
        day_max[DISTINCT_DAY] = len(self.day_records)
        if h[SEQ] > day_max[SEQ_1H]:
            day_max[SEQ_1H] = h[SEQ]
        if h[SEQ] >= WALK_MIN:
            self.day_walks.add(local.hour)
            walked = self.profile.walk_datasets
            if (
                dataset is not None
                and dataset not in walked
                and len(walked) < MAX_KNOWN
                and not self.day_flagged
            ):
                walked.append(dataset)

    def distinct_1h(self) -> float:
        value = self.windows.distinct(SK_RECORDS)
        if value > self.day_max[DISTINCT_1H]:
            self.day_max[DISTINCT_1H] = value
        return value

    def result(self, status: int, bytes_out: int, records_out: int) -> None:
        """Count a finished request's outcome."""
        windows = self.windows
        windows.add_result(status, bytes_out, records_out)
        _, f, h = windows.totals()
        self.day_records_out += records_out
        day_max = self.day_max
        day_max[RECORDS_DAY] = self.day_records_out
        if h[RECORDS] > day_max[RECORDS_1H]:
            day_max[RECORDS_1H] = h[RECORDS]
        if records_out > day_max[RECORDS_RESPONSE]:
            day_max[RECORDS_RESPONSE] = records_out
        if f[S404] > day_max[NOT_FOUND_5M]:
            day_max[NOT_FOUND_5M] = f[S404]

    def novelty(self, client_ip: str, agent: str, dataset: str | None) -> tuple[bool, bool, bool]:
        """Whether the address, client and dataset are new for this principal (never, before
        it has any history of them)."""
        return (
            bool(self.ips) and client_ip not in self.ips,
            bool(self.agents) and agent not in self.agents,
            bool(self.datasets) and dataset is not None and dataset not in self.datasets,
        )

    def remember(self, client_ip: str, agent: str, dataset: str | None) -> None:
        """Learn an address, client and dataset as familiar (only for unflagged traffic)."""
        if client_ip not in self.ips and len(self.ips) < MAX_KNOWN:
            self.ips.add(client_ip)
            self.profile.ips.append(client_ip)
        if agent not in self.agents and len(self.agents) < MAX_KNOWN:
            self.agents.add(agent)
            self.profile.agents.append(agent)
        if dataset is not None and dataset not in self.datasets and len(self.datasets) < MAX_KNOWN:
            self.datasets.add(dataset)
            self.profile.datasets.append(dataset)

    def iat_cv(self) -> float:
        """Coefficient of variation of inter-arrival times: low for scripts, high for people."""
        if self.iat_n < _IAT_MIN_EVENTS or self.iat_m1 <= 0:
            return 1.0
        var = max(self.iat_m2 - self.iat_m1 * self.iat_m1, 0.0)
        return min(math.sqrt(var) / self.iat_m1, 5.0)


class Aggregate:
    """A department's or an address's activity summed over its principals: requests and
    distinct records today, with its own learned daily peaks and who contributed most."""

    __slots__ = (
        "contributions",
        "day",
        "day_count",
        "day_flagged",
        "day_records",
        "fired",
        "last_ts",
        "peak_distinct",
        "peak_requests",
        "reference",
        "samples",
    )

    def __init__(self, reference: tuple[float, float] | None) -> None:
        self.reference = reference  # (distinct, requests) daily peaks from the history
        self.peak_distinct, self.peak_requests = reference or (0.0, 0.0)
        self.day = -1
        self.day_count = 0
        self.day_records: set[str] = set()
        self.day_flagged = False
        self.contributions: dict[str, int] = {}
        self.fired: dict[str, Detection] = {}
        self.samples: deque[str] = deque(maxlen=SAMPLE_IDS)
        self.last_ts = 0.0

    def add(self, day: int, actor: str, record_id: str | None, learning: Learning) -> None:
        if day != self.day:
            if self.day >= 0 and (learning.unbounded or not self.day_flagged):
                distinct, requests = float(len(self.day_records)), float(self.day_count)
                if not learning.unbounded and self.peak_distinct > 0:
                    distinct = min(distinct, self.peak_distinct * (1.0 + learning.growth))
                    requests = min(requests, self.peak_requests * (1.0 + learning.growth))
                if not learning.unbounded and self.reference is not None:
                    distinct = min(distinct, max(self.reference[0], 1.0) * learning.drift_cap)
                    requests = min(requests, max(self.reference[1], 1.0) * learning.drift_cap)
                self.peak_distinct = max(self.peak_distinct, distinct)
                self.peak_requests = max(self.peak_requests, requests)
            self.day = day
            self.day_count = 0
            self.day_records = set()
            self.day_flagged = False
            self.contributions = {}
        self.day_count += 1
        records = self.day_records
        if record_id is not None and len(records) < MAX_DAY_RECORDS and record_id not in records:
            records.add(record_id)
            self.contributions[actor] = self.contributions.get(actor, 0) + 1

    def driver(self) -> tuple[str, int]:
        """The actor with the most new records today."""
        if not self.contributions:
            return "", 0
        actor = max(self.contributions, key=self.contributions.__getitem__)
        return actor, self.contributions[actor]


class IpState:
    """Per client address (and per address range): windows, failures over long windows."""

    __slots__ = (
        "fail_day",
        "fail_hour",
        "fired",
        "last_ts",
        "range",
        "requests_day",
        "requests_hour",
        "samples",
        "windows",
    )

    def __init__(self, windows: bool = True) -> None:
        self.windows = Windows() if windows else None
        self.range: IpState | None = None  # the address range's state, for an address
        self.fail_hour = Decayed(3600.0)
        self.fail_day = Decayed(86400.0)
        self.requests_hour = Decayed(3600.0)
        self.requests_day = Decayed(86400.0)
        self.samples: deque[str] = deque(maxlen=SAMPLE_IDS)
        self.fired: dict[str, Detection] = {}
        self.last_ts = 0.0


class TokenState:
    """Per token id: the addresses it came from (each with when it was last seen) and the
    recent switches between addresses."""

    __slots__ = ("fired", "ips", "last_ip", "last_ts", "samples", "switches", "windows")

    def __init__(self) -> None:
        self.windows: Windows | None = None
        self.ips: dict[str, float] = {}
        self.last_ip = ""
        self.switches: deque[float] = deque(maxlen=8)
        self.samples: deque[str] = deque(maxlen=SAMPLE_IDS)
        self.fired: dict[str, Detection] = {}
        self.last_ts = 0.0

    def seen(self, ts: float, client_ip: str, quick: float) -> int:
        """Note a request from `client_ip`; returns the address switches within `quick`
        seconds of each other lately (A, B, A: two switches)."""
        ips = self.ips
        if self.last_ip and client_ip != self.last_ip and ts - ips.get(self.last_ip, 0.0) <= quick:
            self.switches.append(ts)
        self.last_ip = client_ip
        ips[client_ip] = ts
        if len(ips) > MAX_TOKEN_IPS:
            del ips[min(ips, key=ips.__getitem__)]
        since = ts - 10 * quick
        return sum(1 for t in self.switches if t >= since)

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
    novelty: tuple[bool, bool, bool],
    off_hours: bool,
) -> list[float]:
    """The model's input for one event, in FEATURE_NAMES order: counts relative to the
    principal's limits, so one model fits principals of very different volumes."""
    m, f, h = principal.windows.totals()
    limits = principal.limits
    count5 = f[COUNT] or 1
    ip_m = ip.windows.totals()[0] if ip.windows is not None else [0]
    group = principal.group
    return [
        log1p(m[COUNT]),
        log1p(h[COUNT]),
        log1p(limits.departure(REQ_1M, m[COUNT], 1.0, 1.0)),
        log1p(limits.departure(REQ_1H, h[COUNT], 1.0, 1.0)),
        principal.iat_cv(),
        principal.profile.hour_share(local.hour),
        group.share(local.hour) if group is not None else 0.5,
        1.0 if off_hours else 0.0,
        float(level),
        log1p(limits.departure(DISTINCT_1H, principal.windows.distinct(SK_RECORDS), 1.0, 1.0)),
        log1p(limits.departure(DISTINCT_DAY, len(principal.day_records), 1.0, 1.0)),
        f[SEQ] / count5,
        log1p(limits.departure(RECORDS_1H, h[RECORDS], 1.0, 1.0)),
        f[S401] / count5,
        f[S403] / count5,
        f[S404] / count5,
        f[S429] / count5,
        1.0 if novelty[0] else 0.0,
        1.0 if novelty[1] else 0.0,
        1.0 if novelty[2] else 0.0,
        float(token.ips_1h(ts)) if token is not None else 1.0,
        log1p(ip_m[COUNT]),
    ]
