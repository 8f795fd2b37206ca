"""The rules: each a small class with its config, its evidence and its remediation text.

A rule reads one `View` (the event and the state of its principal, address, address range,
token and department) and appends `Detection`s. Adding a rule is one class here, added to
`RULES`, plus its test; its config appears as `detection.<name>` in the gateway config.

Confidence: a finding at `severity` (default 4, the breaker's trip_severity) is a
high-confidence one that may suspend sharing; at `low_severity` (3) it raises an incident only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

from detectors.calendar import Calendar, LocalTime
from detectors.detection import Detection, Evidence, Scope, severity_score
from detectors.events import AccessEvent
from detectors.features import Aggregate, IpState, PrincipalState, TokenState
from detectors.profiles import (
    DISTINCT_1H,
    DISTINCT_DAY,
    NOT_FOUND_5M,
    RECORDS_1H,
    RECORDS_DAY,
    RECORDS_RESPONSE,
    REQ_1H,
    REQ_1M,
    REQ_5M,
    SEQ_1H,
    prefix24,
)
from detectors.windows import COUNT, RECORDS, S401, S404, SEQ
from gateway.configtree import field

__all__ = ["RULES", "Rule", "View"]

Numbers = dict[str, float]


class View:
    """What the rules see of one event; `phase` is `observe` (before forwarding) or
    `record` (after the response)."""

    __slots__ = (
        "address",
        "calendar",
        "department",
        "event",
        "ip",
        "known",
        "local",
        "novelty",
        "phase",
        "principal",
        "range",
        "token",
        "token_switches",
    )

    def __init__(self, event: AccessEvent, local: LocalTime, calendar: Calendar) -> None:
        self.event = event
        self.local = local
        self.calendar = calendar
        self.phase = "observe"
        self.principal: PrincipalState | None = None
        self.ip: IpState | None = None
        self.range: IpState | None = None
        self.token: TokenState | None = None
        self.token_switches = 0
        self.department: Aggregate | None = None
        self.address: Aggregate | None = None
        self.novelty = (False, False, False)
        self.known = False  # judged against real peers or its own history, not the priors


class Rule:
    """One rule. Subclasses set `name`, `phases`, `remediation`, a `Config` dataclass and
    `check`; `fire` builds the detection (or reuses the one of the last `refresh` seconds)."""

    name: ClassVar[str]
    phases: ClassVar[tuple[str, ...]] = ("observe",)
    remediation: ClassVar[str] = ""

    @dataclasses.dataclass(frozen=True, slots=True)
    class Config:
        enabled: bool = True

    def __init__(self, config: Any, refresh: float) -> None:
        self.config = config
        self.refresh = refresh

    def check(self, v: View, out: list[Detection]) -> None:
        raise NotImplementedError

    def fire(
        self,
        v: View,
        out: list[Detection],
        entity: Any,
        severity: int,
        scope: Scope,
        key: str,
        explain: Callable[[], tuple[str, Numbers, Numbers]],
        *,
        arm: str = "",
        actor: str | None = None,
    ) -> None:
        event = v.event
        name = f"{self.name}:{arm}" if arm else self.name
        recent = entity.fired.get(name)
        if (
            recent is not None
            and 0 <= event.ts - recent.ts < self.refresh
            and recent.severity == severity
        ):
            out.append(recent)
            return
        title, observed, baseline = explain()
        who = actor or (event.principal if event.principal else f"ip:{event.client_ip}")
        detection = Detection(
            rule=self.name,
            severity=severity,
            scope=scope,
            key=key,
            principal=event.principal if scope in ("principal", "token") else None,
            department=event.department,
            dataset=event.dataset,
            title=title,
            score=severity_score(severity),
            ts=event.ts,
            evidence=Evidence(observed, baseline, {}, tuple(entity.samples)),
            actor=who,
            remediation=self.remediation,
        )
        entity.fired[name] = detection
        out.append(detection)


def _baseline_numbers(p: PrincipalState, m: int) -> Numbers:
    own = p.limits.own
    return {
        "own_peak": round(own[m], 2) if own is not None else -1.0,
        "peer_peak": round(p.limits.peer[m], 2),
        "history_days": float(p.profile.days),
    }


# --- request volume ---------------------------------------------------------------------


class HighFrequency(Rule):
    """Hard ceilings on requests per principal and per address, whatever the history."""

    name = "high_frequency"
    remediation = (
        "A hard request ceiling was passed: confirm with the owner whether a batch job is "
        "legitimate; otherwise revoke the token."
    )

    @dataclasses.dataclass(frozen=True, slots=True)
    class Config:
        enabled: bool = True
        severity: int = field(4, min=1, max=5)
        per_minute: int = field(600, min=1, doc="requests per principal, hard ceiling")
        per_5min: int = field(2000, min=1)
        per_hour: int = field(12000, min=1)
        address_factor: float = field(
            4.0, min=1.0, doc="an address (NAT, many principals) may send this many times more"
        )

    def check(self, v: View, out: list[Detection]) -> None:
        c = self.config
        for entity, scope, key, factor in (
            (v.principal, "principal", v.event.principal, 1.0),
            (v.ip, "address", v.event.client_ip, c.address_factor),
        ):
            if entity is None or key is None:
                continue
            m, f, h = entity.windows.totals()
            for count, limit, span in (
                (m[COUNT], c.per_minute, "1m"),
                (f[COUNT], c.per_5min, "5m"),
                (h[COUNT], c.per_hour, "1h"),
            ):
                if count >= limit * factor:
                    self.fire(
                        v,
                        out,
                        entity,
                        c.severity,
                        scope,  # type: ignore[arg-type]
                        key,
                        lambda count=count, limit=limit, span=span, key=key, scope=scope, factor=factor: (  # noqa: E501
                            f"request ceiling passed by {scope} {key}: {count} in {span}",
                            {f"requests_{span}": count},
                            {f"ceiling_{span}": limit * factor},
                        ),
                        actor=None if scope == "principal" else self._driver(v),
                    )
                    break

    @staticmethod
    def _driver(v: View) -> str:
        if v.address is not None:
            actor, _ = v.address.driver()
            if actor:
                return actor
        e = v.event
        return e.principal or f"ip:{e.client_ip}"


class AboveBaseline(Rule):
    """Request rates far above the principal's own peaks and its peers'."""

    name = "above_baseline"
    remediation = (
        "The caller sends far more requests than it and its peers ever did: check for "
        "scraping with its credentials."
    )

    @dataclasses.dataclass(frozen=True, slots=True)
    class Config:
        enabled: bool = True
        severity: int = field(4, min=1, max=5)
        low_severity: int = field(3, min=1, max=5)
        own_factor: float = field(2.0, min=1.0, doc="tolerance over the principal's own peak")
        peer_factor: float = field(2.5, min=1.0, doc="tolerance over the peers' peak")
        high_ratio: float = field(3.0, min=1.0, doc="departure that counts as high confidence")
        min_per_hour: int = field(60, min=1, doc="never fire below this many requests in 1 h")

    def check(self, v: View, out: list[Detection]) -> None:
        p = v.principal
        if p is None:
            return
        c = self.config
        m, f, h = p.windows.totals()
        if h[COUNT] < c.min_per_hour:
            return
        limits = p.limits
        worst, which, value = 0.0, REQ_1M, 0
        for measure, count in ((REQ_1M, m[COUNT]), (REQ_5M, f[COUNT]), (REQ_1H, h[COUNT])):
            r = limits.departure(measure, count, c.own_factor, c.peer_factor)
            if r > worst:
                worst, which, value = r, measure, count
        if worst < 1.0:
            return
        severity = c.severity if v.known and worst >= c.high_ratio else c.low_severity
        span = ("1m", "5m", "1h")[which]
        principal = v.event.principal
        self.fire(
            v,
            out,
            p,
            severity,
            "principal",
            principal,  # type: ignore[arg-type]
            lambda: (
                f"{principal} far above its own and its peers' request rate: "
                f"{value} in {span} ({worst:.1f}x the limit)",
                {f"requests_{span}": value, "departure": round(worst, 2)},
                _baseline_numbers(p, which),
            ),
        )


# --- coverage and volume out -----------------------------------------------------------------


class Coverage(Rule):
    """Distinct records covered in an hour and in a day, against own and peer history; from
    the first request (an unordered scrape shows here, not in the sequence rule)."""

    name = "coverage"
    remediation = (
        "The caller read far more distinct records than it or its peers ever do: likely "
        "scraping; revoke the token and review what was read."
    )

    @dataclasses.dataclass(frozen=True, slots=True)
    class Config:
        enabled: bool = True
        severity: int = field(4, min=1, max=5)
        low_severity: int = field(3, min=1, max=5)
        own_factor: float = field(2.0, min=1.0)
        peer_factor: float = field(2.5, min=1.0)
        high_ratio: float = field(2.5, min=1.0)
        ceiling_hour: int = field(3000, min=1, doc="distinct records in 1 h, hard ceiling")
        ceiling_day: int = field(20000, min=1, doc="distinct records in a day, hard ceiling")
        min_records: int = field(30, min=1, doc="never fire below this many distinct records")

    def check(self, v: View, out: list[Detection]) -> None:
        p = v.principal
        if p is None or v.event.record_id is None:
            return
        c = self.config
        day = len(p.day_records)
        if day < c.min_records:
            return
        hour = p.distinct_1h()
        limits = p.limits
        r_hour = limits.departure(DISTINCT_1H, hour, c.own_factor, c.peer_factor)
        r_day = limits.departure(DISTINCT_DAY, day, c.own_factor, c.peer_factor)
        ceiling = hour >= c.ceiling_hour or day >= c.ceiling_day
        worst = max(r_hour, r_day)
        if worst < 1.0 and not ceiling:
            return
        # Coverage is a strong signal even against the priors alone.
        severity = c.severity if ceiling or worst >= c.high_ratio else c.low_severity
        principal = v.event.principal
        measure = DISTINCT_1H if r_hour >= r_day else DISTINCT_DAY
        self.fire(
            v,
            out,
            p,
            severity,
            "principal",
            principal,  # type: ignore[arg-type]
            lambda: (
                f"{principal} covered {hour:.0f} distinct records in 1h, {day} today "
                f"({worst:.1f}x its own and its peers' normal)",
                {"distinct_records_1h": round(hour), "distinct_records_day": day},
                _baseline_numbers(p, measure),
            ),
        )


class BulkExport(Rule):
    """Records returned per response, hour and day, against own and peer history."""

    name = "bulk_export"
    phases = ("record",)
    remediation = (
        "Much more data left than this caller or its peers ever take: confirm the export "
        "was approved; revoke the grant or token if not."
    )

    @dataclasses.dataclass(frozen=True, slots=True)
    class Config:
        enabled: bool = True
        severity: int = field(4, min=1, max=5)
        low_severity: int = field(3, min=1, max=5)
        own_factor: float = field(2.0, min=1.0)
        peer_factor: float = field(2.5, min=1.0)
        high_ratio: float = field(3.0, min=1.0)
        records_per_response: int = field(50000, min=1, doc="hard ceiling")
        records_per_hour: int = field(200000, min=1, doc="hard ceiling")
        min_records: int = field(500, min=1, doc="never fire below this many records")

    def check(self, v: View, out: list[Detection]) -> None:
        p = v.principal
        if p is None:
            return
        c = self.config
        _, _, h = p.windows.totals()
        event = v.event
        day = p.day_records_out
        if day < c.min_records:
            return
        limits = p.limits
        worst, which, value = 0.0, RECORDS_RESPONSE, 0
        for measure, amount in (
            (RECORDS_RESPONSE, event.records_out),
            (RECORDS_1H, h[RECORDS]),
            (RECORDS_DAY, day),
        ):
            r = limits.departure(measure, amount, c.own_factor, c.peer_factor)
            if r > worst:
                worst, which, value = r, measure, amount
        ceiling = event.records_out >= c.records_per_response or h[RECORDS] >= c.records_per_hour
        if worst < 1.0 and not ceiling:
            return
        severity = c.severity if ceiling or (v.known and worst >= c.high_ratio) else c.low_severity
        what = ("in one response", "in 1h", "today")[
            (RECORDS_RESPONSE, RECORDS_1H, RECORDS_DAY).index(which)
        ]
        principal = event.principal
        self.fire(
            v,
            out,
            p,
            severity,
            "principal",
            principal,  # type: ignore[arg-type]
            lambda: (
                f"bulk export by {principal}: {value} records {what} "
                f"({worst:.1f}x its own and its peers' normal)",
                {"records": value, "records_1h": h[RECORDS], "records_day": day},
                _baseline_numbers(p, which),
            ),
        )


# --- enumeration ----------------------------------------------------------------------------


class Enumeration(Rule):
    """Walking record ids in sequence, or many lookups of distinct missing records. A walk the
    principal makes every night is normal; at a new hour, on a new dataset or at ten times
    its volume it is not."""

    name = "enumeration"
    phases = ("observe", "record")
    remediation = (
        "Record ids are being walked or guessed: check for scraping of identifiers; revoke "
        "the token if the walk is not a known job."
    )

    @dataclasses.dataclass(frozen=True, slots=True)
    class Config:
        enabled: bool = True
        severity: int = field(4, min=1, max=5)
        low_severity: int = field(3, min=1, max=5)
        max_step: int = field(3, min=1, doc="ids at most this far apart count as sequential")
        sequential_5min: int = field(20, min=1)
        sequential_hour: int = field(60, min=1)
        sequential_ratio: float = field(0.6, min=0.0, max=1.0)
        not_found_5min: int = field(20, min=1)
        not_found_ratio: float = field(0.5, min=0.0, max=1.0)
        volume_factor: float = field(10.0, min=1.0, doc="a known walk this much larger departs")

    def check(self, v: View, out: list[Detection]) -> None:
        p = v.principal
        if p is None:
            return
        c = self.config
        _, f, h = p.windows.totals()
        walking = (f[SEQ] >= c.sequential_5min and f[SEQ] >= c.sequential_ratio * f[COUNT]) or (
            h[SEQ] >= c.sequential_hour and h[SEQ] >= c.sequential_ratio * h[COUNT]
        )
        missing = f[S404] >= c.not_found_5min and f[S404] >= c.not_found_ratio * f[COUNT]
        if not walking and not missing:
            return
        event = v.event
        principal = event.principal
        if walking:
            profile = p.profile
            hour = v.local.hour
            known_hour = max(
                profile.walk_hours[hour],
                profile.walk_hours[(hour + 1) % 24],
                profile.walk_hours[(hour - 1) % 24],
            )
            known_dataset = event.dataset in profile.walk_datasets
            own = p.limits.own
            peak = own[SEQ_1H] if own is not None else 0.0
            big = h[SEQ] >= c.volume_factor * max(peak, c.sequential_hour)
            if known_hour and known_dataset and not big:
                return  # its routine
            walker = peak >= c.sequential_hour
            severity = c.low_severity if walker and not big else c.severity
            why = (
                "at ten times its usual volume"
                if big
                else "at a new hour or on a new dataset"
                if walker
                else "never seen in its history"
            )
            self.fire(
                v,
                out,
                p,
                severity,
                "principal",
                principal,  # type: ignore[arg-type]
                lambda: (
                    f"sequential record ids walked by {principal} ({why}): "
                    f"{f[SEQ]} of {f[COUNT]} requests in 5m, {h[SEQ]} in 1h",
                    {"sequential_5m": f[SEQ], "sequential_1h": h[SEQ]},
                    {"own_walk_peak_1h": peak, "limit_5m": c.sequential_5min},
                ),
                arm="walk",
            )
            return
        distinct = p.distinct_1h()
        if distinct < c.not_found_5min:
            return  # one missing record asked again and again: a misconfigured client
        r = p.limits.departure(NOT_FOUND_5M, f[S404], 2.0, 2.5)
        if r < 1.0:
            return
        self.fire(
            v,
            out,
            p,
            c.severity if v.known and r >= 3.0 else c.low_severity,
            "principal",
            principal,  # type: ignore[arg-type]
            lambda: (
                f"many lookups of distinct missing records by {principal}: "
                f"{f[S404]} of {f[COUNT]} requests got 404 in 5m",
                {"status_404_5m": f[S404], "distinct_records_1h": round(distinct)},
                _baseline_numbers(p, NOT_FOUND_5M),
            ),
            arm="missing",
        )


# --- time and context -------------------------------------------------------------------------


class OffHours(Rule):
    """Access to classified data at an hour the principal and its peers do not work (learned
    from history), or outside the hours the config sets for it or its department."""

    name = "off_hours"
    remediation = (
        "Access at an hour this caller and its peers never work: confirm it with the caller "
        "and the data owner."
    )

    @dataclasses.dataclass(frozen=True, slots=True)
    class Config:
        enabled: bool = True
        min_level: int = field(3, min=1, max=4)
        rare: float = field(0.03, min=0.0, max=1.0, doc="hour share below which an hour is rare")
        severity: int = field(4, min=1, max=5, doc="rare hour and bulk volume")
        low_severity: int = field(3, min=1, max=5, doc="rare hour for it and its peers")
        bulk_requests_per_hour: int = field(150, min=1)
        bulk_records_per_hour: int = field(5000, min=1)

    def check(self, v: View, out: list[Detection]) -> None:
        p = v.principal
        event = v.event
        c = self.config
        if p is None or event.level < c.min_level:
            return
        local = v.local
        calendar = v.calendar
        if calendar.configured(event.principal, event.department):
            if not calendar.off_hours(local, event.principal, event.department):
                return
            rare_self = rare_peers = True
        else:
            hour = local.hour
            has_own = p.profile.days >= 3
            rare_self = not has_own or p.profile.hour_share(hour) < c.rare
            group = p.group
            rare_peers = group is None or group.share(hour) < c.rare
            # Learned hours judge only the night: a late evening is too common to report.
            if not (rare_self and rare_peers and local.night):
                return
        _, _, h = p.windows.totals()
        bulk = h[COUNT] >= c.bulk_requests_per_hour or h[RECORDS] >= c.bulk_records_per_hour
        severity = c.severity if bulk and v.known else c.low_severity
        principal = event.principal
        self.fire(
            v,
            out,
            p,
            severity,
            "principal",
            principal,  # type: ignore[arg-type]
            lambda: (
                f"off-hours {'bulk ' if bulk else ''}access by {principal} to level-"
                f"{event.level} data at {local.hour:02d}h ({event.client_ip})",
                {"requests_1h": h[COUNT], "records_1h": h[RECORDS], "local_hour": local.hour},
                {
                    "own_hour_share": round(p.profile.hour_share(local.hour), 3),
                    "peer_hour_share": round(p.group.share(local.hour), 3) if p.group else -1.0,
                },
            ),
            arm="bulk" if bulk else "",
        )


class NewContext(Rule):
    """A new combination of address, client and dataset for the principal, each part
    weighed by how unusual it is for the principal and for its peers."""

    name = "new_context"
    remediation = (
        "The token is used from an address and client its owner never used, on data its "
        "owner never touched: it may be stolen; confirm with the owner and revoke it."
    )

    @dataclasses.dataclass(frozen=True, slots=True)
    class Config:
        enabled: bool = True
        severity: int = field(4, min=1, max=5)
        low_severity: int = field(3, min=1, max=5)
        low_score: float = field(2.5, min=0.0, doc="novelty (0..3) that raises an incident")
        high_score: float = field(3.0, min=0.0, doc="novelty that may suspend")

    def check(self, v: View, out: list[Detection]) -> None:
        p = v.principal
        if p is None or p.profile.days < 3:
            return
        new_ip, new_agent, new_dataset = v.novelty
        if not (new_ip and new_agent):
            return
        event = v.event
        group = p.group
        score = 0.0
        ip_range = prefix24(event.client_ip)
        own_ranges = {prefix24(ip) for ip in p.ips}
        if ip_range in own_ranges:
            score += 0.25
        elif group is not None and ip_range in group.prefixes:
            score += 0.5
        else:
            score += 1.0
        score += 0.5 if group is not None and event.user_agent in group.agents else 1.0
        if new_dataset:
            share = group.datasets.get(event.dataset or "", 0.0) if group is not None else 0.0
            score += 1.0 - min(share, 0.5)
        c = self.config
        if score < c.low_score:
            return
        severity = c.severity if score >= c.high_score else c.low_severity
        principal = event.principal
        self.fire(
            v,
            out,
            p,
            severity,
            "token" if event.token_id else "principal",
            event.token_id or principal,  # type: ignore[arg-type]
            lambda: (
                f"{principal} in a new context: address {event.client_ip}, client "
                f"{event.user_agent[:40]!r}, dataset {event.dataset} (novelty {score:.2f} of 3)",
                {"novelty": round(score, 2), "new_dataset": float(new_dataset)},
                {"known_addresses": float(len(p.ips)), "known_datasets": float(len(p.datasets))},
            ),
        )


class TokenSpread(Rule):
    """One token in use from two addresses at once (interleaved), or from many in an hour."""

    name = "token_spread"
    remediation = (
        "One token is in use from two places: it has been copied; revoke it and ask its "
        "owner to sign in again."
    )

    @dataclasses.dataclass(frozen=True, slots=True)
    class Config:
        enabled: bool = True
        severity: int = field(4, min=1, max=5)
        quick_s: float = field(120.0, min=1.0, doc="address changes this close count")
        switches: int = field(2, min=1, doc="quick changes (A, B, A) that mean two places")
        max_ips_per_hour: int = field(4, min=1)

    def check(self, v: View, out: list[Detection]) -> None:
        token = v.token
        event = v.event
        if token is None or event.token_id is None:
            return
        c = self.config
        ips = token.ips_1h(event.ts) if len(token.ips) > c.max_ips_per_hour else 0
        if v.token_switches < c.switches and ips <= c.max_ips_per_hour:
            return
        token_id = event.token_id
        switches = v.token_switches
        self.fire(
            v,
            out,
            token,
            c.severity,
            "token",
            token_id,
            lambda: (
                f"token {token_id} of {event.principal} in use from two places: "
                f"{switches} quick address changes, {len(token.ips)} addresses",
                {"quick_switches": float(switches), "addresses": float(len(token.ips))},
                {"limit_switches": float(c.switches), "limit_ips_1h": float(c.max_ips_per_hour)},
            ),
        )


# --- addresses and departments -------------------------------------------------------------


class AuthFailures(Rule):
    """Failed authentication per address and per /24 range, over minutes, an hour and a day,
    across principals. It acts on the address, never on the principals behind it."""

    name = "auth_failures"
    # A refused request is observed and recorded in one go: the observe check sees the
    # failures before it, the record check the failure itself.
    phases = ("observe", "record")
    remediation = (
        "Many failed sign-ins from this address or range: credential stuffing; rate-limit or "
        "block the address; principals new to it are suspended."
    )

    @dataclasses.dataclass(frozen=True, slots=True)
    class Config:
        enabled: bool = True
        severity: int = field(4, min=1, max=5)
        per_minute: int = field(20, min=1)
        per_5min: int = field(50, min=1)
        per_hour: int = field(40, min=1, doc="decayed failures over about an hour")
        per_day: int = field(150, min=1, doc="decayed failures over about a day")
        range_factor: float = field(2.0, min=1.0, doc="a /24 range may fail this many times more")
        min_ratio: float = field(0.5, min=0.0, max=1.0, doc="share of the address's requests")

    def check(self, v: View, out: list[Detection]) -> None:
        event = v.event
        if event.status != 401 or v.ip is None:
            return
        c = self.config
        ts = event.ts
        m, f, _ = v.ip.windows.totals()  # type: ignore[union-attr]
        for state, key, factor in (
            (v.ip, event.client_ip, 1.0),
            (v.range, prefix24(event.client_ip), c.range_factor),
        ):
            if state is None:
                continue
            burst = state is v.ip and (m[S401] >= c.per_minute or f[S401] >= c.per_5min)
            hour, day = state.fail_hour.at(ts), state.fail_day.at(ts)
            ratio = hour / max(state.requests_hour.at(ts), 1.0)
            slow = ratio >= c.min_ratio and (
                hour >= c.per_hour * factor or day >= c.per_day * factor
            )
            if burst or slow:
                self.fire(
                    v,
                    out,
                    state,
                    c.severity,
                    "address",
                    key,
                    lambda key=key, hour=hour, day=day, ratio=ratio, factor=factor: (
                        f"failed authentication from {key}: {m[S401]} in 1m, ~{hour:.0f} in "
                        f"1h, ~{day:.0f} in a day ({ratio:.0%} of its requests)",
                        {
                            "status_401_1m": m[S401],
                            "failures_1h": round(hour, 1),
                            "failures_day": round(day, 1),
                            "failure_ratio": round(ratio, 3),
                        },
                        {
                            "limit_1m": c.per_minute,
                            "limit_1h": c.per_hour * factor,
                            "limit_day": c.per_day * factor,
                        },
                    ),
                    actor=f"ip:{event.client_ip}",
                )
                return


class AggregateActivity(Rule):
    """Distinct records a whole department, or a whole address, covers in a day against its
    own history: several accounts that each stay under every per-account limit still show.
    The evidence names the principal that drove it."""

    name = "aggregate"
    remediation = (
        "A department or an address as a whole covers far more records than ever: check the "
        "principal named as the main contributor and its colleagues."
    )

    @dataclasses.dataclass(frozen=True, slots=True)
    class Config:
        enabled: bool = True
        severity: int = field(3, min=1, max=5)
        factor: float = field(3.0, min=1.0, doc="tolerance over the daily peak")
        min_records: int = field(500, min=1)
        min_share: float = field(0.2, min=0.0, max=1.0, doc="driver's share of the excess")

    def check(self, v: View, out: list[Detection]) -> None:
        c = self.config
        event = v.event
        if event.record_id is None or event.principal is None:
            return
        for state, scope, key in (
            (v.department, "department", event.department),
            (v.address, "address", event.client_ip),
        ):
            # One principal alone on an address is judged by its own rules.
            if (
                state is None
                or key is None
                or state.peak_distinct <= 0
                or len(state.contributions) < 2
            ):
                continue
            distinct = len(state.day_records)
            limit = max(state.peak_distinct * c.factor, c.min_records)
            if distinct < limit:
                continue
            actor, count = state.driver()
            if actor != event.principal or count < c.min_share * (distinct - state.peak_distinct):
                continue
            self.fire(
                v,
                out,
                state,
                c.severity,
                scope,  # type: ignore[arg-type]
                key,
                lambda scope=scope, key=key, distinct=distinct, actor=actor, count=count, state=state: (  # noqa: E501
                    f"{scope} {key} covered {distinct} distinct records today, over "
                    f"{c.factor:g}x its peak; mostly {actor} ({count})",
                    {"distinct_records_day": distinct, "driver_records": count},
                    {"peak_distinct_day": round(state.peak_distinct)},
                ),
                actor=actor,
            )


RULES: tuple[type[Rule], ...] = (
    HighFrequency,
    AboveBaseline,
    Coverage,
    BulkExport,
    Enumeration,
    OffHours,
    NewContext,
    TokenSpread,
    AuthFailures,
    AggregateActivity,
)
