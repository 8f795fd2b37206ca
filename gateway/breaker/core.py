"""Breaker transitions as pure functions: state in, new state (or None for no change) out."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections import deque
from typing import Any, Literal

import orjson

from gateway.breaker.config import SCOPES, BreakerConfig

# Gateway processes' clocks differ by far less than this; a breaker opened (or probed) more
# than this far in the future means the clock was set back.
CLOCK_SKEW = 60.0

State = Literal["closed", "open", "half_open", "forced_open", "monitor"]
STATES: tuple[State, ...] = ("closed", "open", "half_open", "forced_open", "monitor")
AUTOMATION = "automation"


def field_name(scope: str, key: str) -> str:
    """The hash field (and local-view key) of one breaker, e.g. `principal:alice`."""
    return f"{scope}:{key}"


def pair_key(subject: str, dataset: str) -> str:
    return f"{subject}|{dataset}"


def check_target(scope: str, key: str) -> None:
    """Reject a scope/key a user typed that cannot name a breaker."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    if not key or not key.strip():
        raise ValueError("key must not be empty")
    if scope == "pair" and (key.count("|") != 1 or "" in key.split("|")):
        raise ValueError(f"a pair key is PRINCIPAL|DATASET, got {key!r}")
    if scope == "address":
        check_address(key)


def check_address(key: str) -> None:
    """An address breaker's key: one IP address, or a network (`203.0.113.0/24`)."""
    try:
        ipaddress.ip_network(key, strict=True)
    except ValueError:
        raise ValueError(f"an address key is an IP address or network, got {key!r}") from None


def address_keys(ip: str) -> tuple[str, str]:
    """The address breakers that cover a client address: itself and its /24 (IPv4) or
    first three groups (IPv6) range, as the detector names them."""
    if ":" in ip:
        return ip, ":".join(ip.split(":")[:3]) + "::/48"
    head, _, _ = ip.rpartition(".")
    return ip, f"{head}.0/24"


@dataclasses.dataclass(frozen=True, slots=True)
class BreakerState:
    """One breaker as stored in the backend; `version` grows by one on every change."""

    scope: str
    key: str
    state: State = "closed"
    version: int = 0
    trips: int = 0
    cooldown: float = 0.0
    opened_at: float | None = None
    until: float | None = None
    closed_at: float | None = None
    incident_id: str | None = None
    reason: str = ""
    by: str = AUTOMATION
    note: str = ""
    changed_at: float | None = None
    probes_left: int = 0
    probes_ok: int = 0
    probe_at: float | None = None

    @property
    def field(self) -> str:
        return field_name(self.scope, self.key)

    def effective(self, now: float) -> State:
        """The state as the request path sees it: an expired open breaker is half-open,
        an expired monitor record is closed."""
        if self.state == "open" and self.until is not None and self.until <= now:
            return "half_open"
        if self.state == "monitor" and self.until is not None and self.until <= now:
            return "closed"
        return self.state

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BreakerState:
        names = {f.name for f in dataclasses.fields(cls)}
        state = cls(**{k: v for k, v in data.items() if k in names})
        if state.state not in STATES:
            raise ValueError(f"unknown breaker state {state.state!r}")
        return state

    @classmethod
    def from_bytes(cls, raw: bytes) -> BreakerState:
        return cls.from_dict(orjson.loads(raw))


def _change(s: BreakerState, now: float, **changes: Any) -> BreakerState:
    return dataclasses.replace(s, version=s.version + 1, changed_at=now, **changes)


def cooldown_for(trips: int, cfg: BreakerConfig) -> float:
    """Cool-down for the n-th trip in a row: base, 2 x base, 4 x base ... capped."""
    return min(cfg.cooldown_base * 2.0 ** min(trips - 1, 62), cfg.cooldown_cap)


def trip(
    s: BreakerState, cfg: BreakerConfig, now: float, reason: str, incident_id: str | None
) -> BreakerState | None:
    """Automation trips a breaker. Forced-open is never touched; an open breaker stays as is."""
    eff = s.effective(now)
    if s.state == "forced_open" or eff == "open":
        return None
    if cfg.monitor:
        if eff == "monitor":
            return None
        return _change(
            s,
            now,
            state="monitor",
            opened_at=now,
            until=now + cfg.cooldown_base,
            reason=reason,
            incident_id=incident_id,
            by=AUTOMATION,
            note="",
        )
    recent = s.closed_at is not None and now - s.closed_at <= cfg.retrip_memory
    trips = s.trips + 1 if eff == "half_open" or recent else 1
    cooldown = cooldown_for(trips, cfg)
    return _change(
        s,
        now,
        state="open",
        trips=trips,
        cooldown=cooldown,
        opened_at=now,
        until=now + cooldown,
        reason=reason,
        incident_id=incident_id or s.incident_id,
        by=AUTOMATION,
        note="",
        probes_left=0,
        probes_ok=0,
        probe_at=None,
    )


def reserve_probe(s: BreakerState, cfg: BreakerConfig, now: float) -> BreakerState | None:
    """Take one probe slot of a half-open breaker; None when no slot is free."""
    if s.effective(now) != "half_open":
        return None
    if s.state == "open":  # cool-down over: the first probe moves it to half-open
        return _change(
            s,
            now,
            state="half_open",
            probes_left=cfg.half_open_probes - 1,
            probes_ok=0,
            probe_at=now,
        )
    if s.probes_left > 0:
        return _change(s, now, probes_left=s.probes_left - 1, probe_at=now)
    if s.probe_at is not None and now - s.probe_at >= cfg.probe_timeout:
        # Probes that never reported (a crashed process) are given back.
        left = max(cfg.half_open_probes - s.probes_ok, 1)
        return _change(s, now, probes_left=left - 1, probe_at=now)
    return None


def release_probe(s: BreakerState, now: float) -> BreakerState | None:
    """Give back a reserved probe slot that was not used."""
    if s.state != "half_open":
        return None
    return _change(s, now, probes_left=s.probes_left + 1)


def probe_result(
    s: BreakerState, cfg: BreakerConfig, now: float, clean: bool
) -> BreakerState | None:
    """A probe request finished: enough clean probes close, one bad probe reopens."""
    if s.state != "half_open":
        return None
    if not clean:
        return trip(s, cfg, now, "bad probe in half-open", s.incident_id)
    ok = s.probes_ok + 1
    if ok >= cfg.half_open_probes:
        return _change(
            s,
            now,
            state="closed",
            probes_ok=0,
            probes_left=0,
            probe_at=None,
            until=None,
            closed_at=now,
            reason="clean probes",
        )
    return _change(s, now, probes_ok=ok)


def soc_open(
    s: BreakerState, now: float, by: str, note: str, until: float | None, forced: bool
) -> BreakerState:
    """A SOC action: open until a time (then half-open as usual) or forced-open (until reset)."""
    if forced:
        if until is not None:
            raise ValueError("until: a forced-open breaker is lifted only by a reset")
        return _change(
            s,
            now,
            state="forced_open",
            opened_at=now,
            until=None,
            by=by,
            note=note,
            reason="forced open by SOC",
            probes_left=0,
            probes_ok=0,
            probe_at=None,
        )
    if until is None or until <= now:
        raise ValueError("until: must be a time in the future")
    return _change(
        s,
        now,
        state="open",
        opened_at=now,
        until=until,
        cooldown=until - now,
        trips=max(s.trips, 1),
        by=by,
        note=note,
        reason="opened by SOC",
        probes_left=0,
        probes_ok=0,
        probe_at=None,
    )


def reanchor(s: BreakerState, now: float) -> BreakerState | None:
    """After the clock was set back past a breaker's opening (or its last probe): its times
    start again from now, the length of its cool-down kept, so it neither stays shut for the
    length of the jump nor loses its cool-down. None when the clock is not behind."""
    if s.opened_at is None or s.until is None or s.state not in ("open", "monitor"):
        if s.state == "half_open" and s.probe_at is not None and s.probe_at - now > CLOCK_SKEW:
            return _change(s, now, probe_at=now)
        return None
    if s.opened_at - now <= CLOCK_SKEW:
        return None
    return _change(s, now, opened_at=now, until=now + (s.until - s.opened_at))


def reset(s: BreakerState, now: float, by: str, note: str) -> BreakerState:
    """A SOC reset: closed from any state, the re-trip history forgotten."""
    if not note.strip():
        raise ValueError("note: a reset requires a note")
    return _change(
        s,
        now,
        state="closed",
        trips=0,
        cooldown=0.0,
        until=None,
        closed_at=None,
        incident_id=None,
        by=by,
        note=note,
        reason="reset by SOC",
        probes_left=0,
        probes_ok=0,
        probe_at=None,
    )


class AnomalyWindow:
    """Requests and anomalous requests over a sliding window, in ten buckets."""

    __slots__ = ("_anomalies", "_buckets", "_step", "_total", "_window")

    def __init__(self, window: float) -> None:
        self._window = window
        self._step = window / 10.0
        self._buckets: deque[list[float]] = deque()  # [bucket_start, total, anomalous]
        self._total = 0  # sums over the buckets held
        self._anomalies = 0

    def add(self, now: float, anomalous: bool) -> tuple[int, int]:
        buckets = self._buckets
        step = self._step
        start = now - now % step
        if not buckets or buckets[-1][0] < start:
            buckets.append([start, 0, 0])
            # Bucket starts are multiples of `step`, so which buckets have left the window
            # changes only when a new bucket begins.
            horizon = now - self._window
            while buckets[0][0] + step <= horizon:
                _, total, anomalies = buckets.popleft()
                self._total -= int(total)
                self._anomalies -= int(anomalies)
        last = buckets[-1]
        last[1] += 1
        self._total += 1
        if anomalous:
            last[2] += 1
            self._anomalies += 1
        return self._total, self._anomalies

    def idle(self, now: float) -> bool:
        return not self._buckets or self._buckets[-1][0] + self._window < now


def rate_exceeded(total: int, anomalous: int, cfg: BreakerConfig) -> bool:
    """The anomaly-rate trip rule: enough requests, and enough of them anomalous."""
    return total >= cfg.anomaly_min_requests and anomalous >= cfg.anomaly_rate * total
