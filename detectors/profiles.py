"""What is normal: per-principal profiles learned from history (peaks of each measure, hours,
datasets, addresses, clients), peer-group profiles, and limits that combine both."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

__all__ = [
    "MEASURES",
    "GroupProfile",
    "Limits",
    "Profile",
    "build_groups",
    "group_key",
    "prefix24",
]

# The measures whose daily peaks a profile keeps; rules read them by these indexes.
MEASURES = (
    "requests_1m",
    "requests_5m",
    "requests_1h",
    "requests_day",
    "distinct_1h",
    "distinct_day",
    "records_1h",
    "records_day",
    "records_response",
    "sequential_1h",
    "not_found_5m",
)
(
    REQ_1M,
    REQ_5M,
    REQ_1H,
    REQ_DAY,
    DISTINCT_1H,
    DISTINCT_DAY,
    RECORDS_1H,
    RECORDS_DAY,
    RECORDS_RESPONSE,
    SEQ_1H,
    NOT_FOUND_5M,
) = range(len(MEASURES))
NM = len(MEASURES)
MAX_KNOWN = 64  # addresses / clients / datasets remembered per principal
WALK_MIN = 10  # sequential requests in an hour that make it a walk hour


def prefix24(ip: str) -> str:
    """The /24 (IPv4) or /48-ish (IPv6, first three groups) range an address belongs to."""
    if ":" in ip:
        return ":".join(ip.split(":")[:3]) + "::/48"
    head, _, _ = ip.rpartition(".")
    return f"{head}.0/24" if head else ip


def group_key(department: str | None, service: bool) -> str:
    """The peer group: the department, split into staff and service accounts."""
    return f"{department or '*'}/{'service' if service else 'staff'}"


@dataclasses.dataclass(slots=True)
class Profile:
    """One principal's normal, as learned from its unflagged days.

    `peaks[m]` is the highest value of measure `m` on any unflagged day; `hour_days[h]`
    the days it was active in local hour h; `walk_hours[h]` the days it walked record ids in
    sequence in hour h; `days` the active days and `span` the days since it was first seen.
    """

    peaks: list[float] = dataclasses.field(default_factory=lambda: [0.0] * NM)
    hour_days: list[int] = dataclasses.field(default_factory=lambda: [0] * 24)
    walk_hours: list[int] = dataclasses.field(default_factory=lambda: [0] * 24)
    days: int = 0
    span: int = 0
    first_day: int = 0
    department: str | None = None
    datasets: list[str] = dataclasses.field(default_factory=list)
    walk_datasets: list[str] = dataclasses.field(default_factory=list)
    ips: list[str] = dataclasses.field(default_factory=list)
    agents: list[str] = dataclasses.field(default_factory=list)

    def copy(self) -> Profile:
        return Profile(
            list(self.peaks),
            list(self.hour_days),
            list(self.walk_hours),
            self.days,
            self.span,
            self.first_day,
            self.department,
            list(self.datasets),
            list(self.walk_datasets),
            list(self.ips),
            list(self.agents),
        )

    def hour_share(self, hour: int) -> float:
        """The share of its days on which it was active in this hour or the next to it."""
        if self.span <= 0:
            return 0.0
        days = self.hour_days
        return max(days[hour], days[(hour + 1) % 24], days[(hour - 1) % 24]) / self.span

    @property
    def service(self) -> bool:
        """Learned group: an automated account works most hours of the day, nights too."""
        if self.days < 2:
            return False
        busy = sum(1 for d in self.hour_days if d >= 0.5 * self.days)
        night = sum(self.hour_days[0:6]) / (6 * self.days)
        return busy >= 16 or night >= 0.5

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        profile = cls(
            [float(v) for v in data["peaks"]],
            [int(v) for v in data["hour_days"]],
            [int(v) for v in data["walk_hours"]],
            int(data["days"]),
            int(data["span"]),
            int(data["first_day"]),
            data.get("department"),
            [str(v) for v in data["datasets"]],
            [str(v) for v in data["walk_datasets"]],
            [str(v) for v in data["ips"]],
            [str(v) for v in data["agents"]],
        )
        if (
            len(profile.peaks) != NM
            or len(profile.hour_days) != 24
            or len(profile.walk_hours) != 24
        ):
            raise ValueError("profile: wrong number of measures or hours")
        return profile


@dataclasses.dataclass(slots=True)
class GroupProfile:
    """A peer group's normal: a high quantile of its members' peaks, the share of members
    active at each hour, and what the members use (datasets by share, addresses, clients)."""

    peaks: list[float]
    hour_share: list[float]
    datasets: dict[str, float]
    ips: list[str]
    prefixes: list[str]
    agents: list[str]
    members: int
    walkers: float = 0.0  # share of members that walk record ids

    def share(self, hour: int) -> float:
        s = self.hour_share
        return max(s[hour], s[(hour + 1) % 24], s[(hour - 1) % 24])

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GroupProfile:
        group = cls(
            [float(v) for v in data["peaks"]],
            [float(v) for v in data["hour_share"]],
            {str(k): float(v) for k, v in data["datasets"].items()},
            [str(v) for v in data["ips"]],
            [str(v) for v in data["prefixes"]],
            [str(v) for v in data["agents"]],
            int(data["members"]),
            float(data.get("walkers", 0.0)),
        )
        if len(group.peaks) != NM or len(group.hour_share) != 24:
            raise ValueError("group profile: wrong number of measures or hours")
        return group


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def build_groups(profiles: dict[str, Profile], min_days: int) -> dict[str, GroupProfile]:
    """Peer groups of the profiles with enough history; `*/staff` and `*/service` hold all."""
    members: dict[str, list[Profile]] = {}
    for profile in profiles.values():
        if profile.days < min_days:
            continue
        service = profile.service
        for key in (group_key(profile.department, service), group_key(None, service)):
            members.setdefault(key, []).append(profile)
    groups = {}
    for key, group in members.items():
        n = len(group)
        datasets: dict[str, float] = {}
        for p in group:
            for d in p.datasets:
                datasets[d] = datasets.get(d, 0.0) + 1.0 / n
        groups[key] = GroupProfile(
            peaks=[_quantile([p.peaks[m] for p in group], 0.9) for m in range(NM)],
            hour_share=[sum(p.hour_days[h] / max(p.span, 1) for p in group) / n for h in range(24)],
            datasets=datasets,
            ips=sorted({ip for p in group for ip in p.ips})[:4096],
            prefixes=sorted({prefix24(ip) for p in group for ip in p.ips})[:4096],
            agents=sorted({a for p in group for a in p.agents})[:1024],
            members=n,
            walkers=sum(1 for p in group if p.peaks[SEQ_1H] >= WALK_MIN) / n,
        )
    return groups


class Limits:
    """For one principal: the value of each measure above which it departs from its own
    history and from its peers' (each times its tolerance factor), fixed at a day roll."""

    __slots__ = ("own", "peer")

    def __init__(self, own: list[float] | None, peer: list[float]) -> None:
        self.own = own  # None: too little history of its own
        self.peer = peer

    def departure(self, m: int, value: float, own_factor: float, peer_factor: float) -> float:
        """How far past normal `value` is: its ratio to the larger of the own and the peer
        limit (judged on the peers alone without own history). >= 1 departs from both."""
        peer = self.peer[m] * peer_factor
        own = self.own
        limit = peer if own is None else max(own[m] * own_factor, peer)
        return value / max(limit, 1.0)

    def own_ratio(self, m: int, value: float) -> float:
        """`value` over the principal's own peak (0 without own history)."""
        own = self.own
        return 0.0 if own is None else value / max(own[m], 1.0)
