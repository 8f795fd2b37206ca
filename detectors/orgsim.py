"""A second labelled traffic generator, written apart from the detector: a seeded organisation
(departments, roles, calendars, service accounts, shared NAT addresses, attacks in disguise).

`generate(seed)` returns the same `Scenario` (normal history, labelled test days) as
`detectors.scenarios`, so `datagate detect generate --generator org` writes drop-in files.
Every event carries `label` ("normal" or the attack kind, what `detect evaluate` reads) plus
`kind` (the behaviour that produced it) and `actor` (the generator's own actor id).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import random
import time
from collections.abc import Callable
from typing import Any

from detectors.scenarios import Scenario

__all__ = [
    "ATTACK_KINDS",
    "CALENDAR",
    "DATASETS",
    "DEPARTMENTS",
    "NORMAL_KINDS",
    "OrgCalendar",
    "generate",
]

UTC_OFFSET = 8 * 3600  # Asia/Shanghai, no daylight saving since 1991
DAY = 86400.0
HOUR = 3600.0


@dataclasses.dataclass(frozen=True, slots=True)
class Dataset:
    """A catalog dataset (policies/catalog.yaml) as the demo upstream serves it."""

    id: str
    level: int
    collection: str  # records are collection/{id}, pages are collection?page=&size=
    export: str
    size: int  # record ids 1..size exist
    record_bytes: int  # mean JSON size of one record
    export_bytes: int  # mean size of one record in the export format
    masked: tuple[tuple[str, int], ...]  # (field, level): masked for callers below level


DATASETS: dict[str, Dataset] = {
    d.id: d
    for d in (
        Dataset(
            "population",
            3,
            "/api/population/persons",
            "/api/population/persons.csv",
            200_000,
            930,
            210,
            (("name", 3), ("id_card", 3), ("phone", 3), ("address", 3), ("birth_date", 3)),
        ),
        Dataset(
            "enterprise",
            1,
            "/api/enterprise/companies",
            "/api/enterprise/companies.csv",
            50_000,
            720,
            190,
            (("legal_representative", 2), ("contact_phone", 2)),
        ),
        Dataset(
            "social-security",
            3,
            "/api/social-security/accounts",
            "/api/social-security/accounts.ndjson",
            150_000,
            640,
            600,
            (("id_card", 3), ("name", 3), ("bank_card", 3), ("monthly_pension", 3)),
        ),
        Dataset(
            "medical",
            4,
            "/api/medical/records",
            "/api/medical/records.ndjson",
            80_000,
            1150,
            1080,
            (("patient_name", 3), ("id_card", 3), ("diagnosis", 4), ("prescription", 4)),
        ),
    )
}


@dataclasses.dataclass(frozen=True, slots=True)
class Department:
    name: str
    subnet: int  # office addresses are 10.{subnet}.x.y
    datasets: tuple[tuple[str, float], ...]  # what its staff use, with weights
    staff: int  # day workers before the seed's jitter
    purpose: str


DEPARTMENTS: dict[str, Department] = {
    d.name: d
    for d in (
        Department(
            "public-security", 11, (("population", 0.85), ("enterprise", 0.15)), 22, "case-check"
        ),
        Department(
            "market-regulation",
            12,
            (("enterprise", 0.9), ("population", 0.1)),
            18,
            "market-supervision",
        ),
        Department(
            "human-resources",
            13,
            (("social-security", 0.8), ("population", 0.2)),
            20,
            "pension-review",
        ),
        Department("health", 14, (("medical", 0.7), ("population", 0.3)), 20, "clinical-care"),
        Department(
            "civil-affairs",
            15,
            (("population", 0.6), ("social-security", 0.4)),
            24,
            "benefit-eligibility",
        ),
        Department(
            "taxation",
            16,
            (("enterprise", 0.6), ("social-security", 0.3), ("population", 0.1)),
            18,
            "tax-audit",
        ),
        Department(
            "statistics",
            17,
            (("enterprise", 0.5), ("population", 0.3), ("social-security", 0.2)),
            14,
            "statistics",
        ),
        Department(
            "citizen-hotline",
            18,
            (("population", 0.6), ("social-security", 0.3), ("enterprise", 0.1)),
            0,  # staffed only by its 24/7 desk
            "citizen-service",
        ),
    )
}

NORMAL_KINDS = (
    "office",  # day worker, 08:30-17:30 with lunch, rarely late
    "early_starter",  # starts at 07:30
    "late_worker",  # often stays into the evening, from the office or the VPN
    "manager",  # few requests, a phone, evenings on the VPN
    "analyst",  # month- and quarter-end exports
    "auditor",  # an audit campaign widens their reading for two weeks
    "branch_nat",  # a branch office: everyone behind one NAT address
    "shift_worker",  # a duty desk on weekly rotating 8-hour shifts, weekends and holidays too
    "desk_24x7",  # the citizen hotline: 12-hour day and night shifts behind one NAT address
    "new_staff",  # joins during the test days: no history
    "device_change",  # a new laptop and address during the test days
    "token_refresh",  # the first request of a day on yesterday's expired token: a 401
    "svc_nightly_sync",  # walks record ids in order every night from a cursor
    "svc_page_crawl",  # pages through a collection every night
    "svc_nightly_export",  # exports a dataset every night, larger at month end
    "svc_hourly_poller",  # polls the first page and a few new records every hour, 24/7
    "svc_portal_backend",  # a department portal calling on behalf of its users in office hours
    "svc_misconfigured",  # a client with a bad id mapping: bursts of 404s
)
ATTACK_KINDS = (
    "burst_scraping",  # an insider's account reads records at several per second
    "slow_scraping",  # human pace in office hours, never the same record twice, for days
    "random_enumeration",  # ids drawn at random over the whole range: many 404s
    "off_hours_bulk",  # exports and pages from the VPN after midnight
    "bulk_export",  # a service account's export at ten times its volume
    "export_new_context",  # a service account exports a dataset it never exported, at a new hour
    "credential_stuffing",  # fast invalid tokens from one address, one of them works
    "slow_credential_stuffing",  # < 1 attempt per 10 s, from one address or a small range
    "stolen_token",  # a new address and client, datasets the owner never touched, office hours
    "token_two_places",  # a copied session token used elsewhere while its owner works
    "night_core_peek",  # a day worker reads a few level-4 records after midnight at the office
    "department_spread",  # several accounts of one department, each under per-account limits
    "slow_ramp",  # an insider reading a little more every day
    "nat_shelter",  # an attacker behind a branch's shared NAT address
    "leaver_return",  # an account idle since its owner left comes back from the VPN
    "forbidden_probing",  # walks datasets and actions it is refused, among normal work
    "page_harvest",  # sequential full pages at human pace in office hours
)

_WIN = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
CHROME = _WIN + " Chrome/{v}.0.0.0 Safari/537.36"  # {v}: the version auto-updates bring
BROWSERS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:130.0) Gecko/20100101 Firefox/130.0",
    _WIN + " Chrome/128.0.0.0 Safari/537.36 Edg/128.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    " Version/17.6 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; WOW64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/86.0.4240.198 Safari/537.36 QIHU 360SE",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/109.0.0.0 Safari/537.36 UOS",
)
PHONES = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Mobile/15E148 wxwork/4.1.28",
    "Mozilla/5.0 (Linux; Android 14; V2309A) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/116.0.0.0 Mobile Safari/537.36 DingTalk/7.6.0",
)
SCRIPTS = (
    "python-requests/2.32.3",
    "curl/8.9.1",
    "Go-http-client/1.1",
    "okhttp/4.12.0",
    "Apache-HttpClient/5.3.1 (Java/17.0.12)",
)
EXTERNAL = ("203.0.113", "198.51.100", "192.0.2")  # documentation ranges stand in for outsiders


@dataclasses.dataclass(frozen=True, slots=True)
class OrgCalendar:
    """Working days: weekdays, minus public holidays, plus make-up working weekend days (调休)."""

    holidays: frozenset[dt.date]
    makeup_days: frozenset[dt.date]

    def working(self, day: dt.date) -> bool:
        return day in self.makeup_days or (day.weekday() < 5 and day not in self.holidays)

    def peak(self, day: dt.date) -> float:
        """Workload multiplier: the last two working days of a month (more at quarter end) and
        the first working day after three or more days off (the backlog)."""
        if not self.working(day):
            return 1.0
        ahead, probe = 0, day + dt.timedelta(days=1)
        while probe.month == day.month:
            ahead += self.working(probe)
            probe += dt.timedelta(days=1)
        if ahead < 2:
            return 2.2 if day.month % 3 == 0 else 1.7
        off, probe = 0, day - dt.timedelta(days=1)
        while not self.working(probe) and off < 10:
            off += 1
            probe -= dt.timedelta(days=1)
        return 1.5 if off >= 3 else 1.0


# A National Day Golden Week in the pattern of China's State Council calendar: seven days off,
# with weekend days worked before and after to make up for them.
CALENDAR = OrgCalendar(
    holidays=frozenset(dt.date(2026, 10, 1) + dt.timedelta(days=i) for i in range(7)),
    makeup_days=frozenset((dt.date(2026, 9, 26), dt.date(2026, 10, 10))),
)
START = dt.date(2026, 9, 17)  # 21 days of history take in quarter end and the Golden Week


@dataclasses.dataclass(frozen=True, slots=True)
class Day:
    index: int
    date: dt.date
    midnight: float
    working: bool
    peak: float
    test: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Who:
    """Who sends a request, as the gateway sees it, and the generator's ground truth."""

    principal: str | None
    department: str | None
    ip: str
    agent: str
    token: str | None
    kind: str
    actor: str
    label: str = "normal"
    clearance: int = 2
    role: str = "clerk"
    purpose: str | None = None

    def but(self, **changes: Any) -> Who:
        return dataclasses.replace(self, **changes)


class Traffic:
    """The requests generated so far, with the responses the demo upstream would give."""

    def __init__(self, rng: random.Random) -> None:
        self.rows: list[tuple[Any, ...]] = []
        self.rng = rng

    def read(self, ts: float, who: Who, ds: Dataset, record: int, status: int = 0) -> None:
        if not status:
            status = 200 if 1 <= record <= ds.size and record % 211 else 404
        records = 1 if status == 200 else 0
        size = int(ds.record_bytes * self.rng.uniform(0.7, 1.3)) if records else 96
        path = f"{ds.collection}/{record}"
        self.rows.append((ts, who, ds, "read", status, records, size, path, str(record), ()))

    def page(
        self, ts: float, who: Who, ds: Dataset, page: int, size: int, status: int = 200
    ) -> None:
        records = max(0, min(size, ds.size - (page - 1) * size)) if status == 200 else 0
        body = int(records * ds.record_bytes * self.rng.uniform(0.9, 1.1)) + 64
        keys = ("page", "size")
        self.rows.append((ts, who, ds, "list", status, records, body, ds.collection, None, keys))

    def export(self, ts: float, who: Who, ds: Dataset, records: int, status: int = 200) -> None:
        records = min(records, ds.size) if status == 200 else 0
        body = int(records * ds.export_bytes * self.rng.uniform(0.95, 1.05)) + 120
        self.rows.append((ts, who, ds, "export", status, records, body, ds.export, None, ()))


# --- normal principals -------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class Person:
    """A human principal: who they are, their rhythm and the records they work on."""

    name: str
    department: Department
    kind: str
    role: str
    clearance: int
    rng: random.Random
    datasets: list[tuple[Dataset, float]]
    office_ip: str
    agent: str
    volume: float  # requests on an ordinary working day
    arrive: float  # local hour
    leave: float
    late: float  # probability of an evening session on a working day
    export_rate: float  # share of requests that are exports
    joined: int = 0  # first day index with any traffic
    left: int = 10_000  # first day index without
    group: int = 0  # shift rotation group
    nat: str | None = None
    change_day: int | None = None  # the day a new device and address arrive
    caseload: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    blocks: dict[str, int] = dataclasses.field(default_factory=dict)
    touched: set[str] = dataclasses.field(default_factory=set)
    worked: dict[int, tuple[str, float, float]] = dataclasses.field(default_factory=dict)

    def pick(self, ds: Dataset) -> int:
        """A record of this person's caseload: often one seen before, mostly from their block."""
        rng = self.rng
        seen = self.caseload.setdefault(ds.id, [])
        if seen and rng.random() < 0.55:
            return seen[int(len(seen) * rng.random() ** 1.5)]
        if rng.random() < 0.9:
            start = self.blocks.setdefault(ds.id, rng.randint(1, ds.size))
            span = max(ds.size // 12, 500)
            record = (start + rng.randrange(span)) % ds.size + 1
        else:
            record = rng.randint(1, ds.size)
        seen.append(record)
        if len(seen) > 400:
            del seen[: len(seen) - 400]
        return record

    def dataset(self) -> Dataset:
        roll, total = self.rng.random(), 0.0
        for ds, weight in self.datasets:
            total += weight
            if roll < total:
                return ds
        return self.datasets[-1][0]


def _token(rng: random.Random) -> str:
    return f"jti-{rng.getrandbits(64):016x}"


def _ua(person: Person, day: Day) -> str:
    """Chrome users' agent follows the browser's staged auto-updates; others keep theirs."""
    if "{v}" not in person.agent:
        return person.agent
    update = (day.index + person.group) // 12
    return person.agent.format(v=128 + min(update, 3))


def _clicks(
    person: Person,
    who: Who,
    start: float,
    end: float,
    count: int,
    out: Traffic,
    lunch: bool = True,
    denied: float = 0.005,
) -> None:
    """`count` requests between start and end, in clicks: a search page, then the records
    opened from it a few seconds apart; quiet over lunch."""
    rng = person.rng
    if count <= 0 or end <= start:
        return
    clicks = max(1, int(count / 2.6))
    noon = start - (start + UTC_OFFSET) % DAY + 12 * HOUR
    times = sorted(rng.uniform(start, end) for _ in range(clicks))
    for ts in times:
        if lunch and noon <= ts < noon + 1.5 * HOUR and rng.random() < 0.85:
            continue
        ds = person.dataset()
        person.touched.add(ds.id)
        roll = rng.random()
        if roll < denied:
            other = rng.choice([d for d in DATASETS.values() if d.id not in person.touched] or [ds])
            out.read(ts, who, other, rng.randint(1, other.size), status=403)
            continue
        if roll < denied + person.export_rate:
            out.export(ts, who, ds, int(math.exp(rng.uniform(3.0, 6.5))))
            continue
        if rng.random() < 0.35:
            out.page(ts, who, ds, 1 + int(rng.expovariate(0.4)), rng.choice((20, 20, 50)))
            ts += rng.uniform(2, 12)
        for _ in range(1 + int(rng.expovariate(0.7))):
            record = person.pick(ds)
            if rng.random() < 0.012:  # a mistyped id
                record = rng.randint(ds.size + 1, ds.size * 2)
            out.read(ts, who, ds, record)
            ts += rng.uniform(3, 40)


def _who(person: Person, ip: str, agent: str, token: str | None) -> Who:
    return Who(
        person.name,
        person.department.name,
        ip,
        agent,
        token,
        person.kind,
        person.name,
        clearance=person.clearance,
        role=person.role,
        purpose=person.department.purpose,
    )


def _vpn(rng: random.Random) -> str:
    return f"172.16.{rng.randint(0, 63)}.{rng.randint(2, 254)}"  # a fresh pool address per login


def _office_hours(person: Person, day: Day) -> list[tuple[float, float, str, float]]:
    """The sessions (start, end, address, share of the day's volume) of a day worker."""
    rng = person.rng
    sessions: list[tuple[float, float, str, float]] = []
    ip = person.nat or person.office_ip
    if day.working:
        if rng.random() < 0.04:  # a day off
            return sessions
        begin = day.midnight + HOUR * (person.arrive + rng.gauss(0, 0.2))
        finish = day.midnight + HOUR * (person.leave + rng.gauss(0, 0.3))
        sessions.append((begin, finish, ip, 1.0))
        if rng.random() < person.late:
            late = day.midnight + HOUR * rng.uniform(19.0, 21.5)
            where = ip if rng.random() < 0.5 else _vpn(rng)
            sessions.append((late, late + HOUR * rng.uniform(0.4, 1.5), where, 0.2))
    elif rng.random() < (0.05 if person.kind in ("manager", "late_worker") else 0.02):
        begin = day.midnight + HOUR * rng.uniform(9.5, 20.0)
        sessions.append((begin, begin + HOUR * rng.uniform(0.3, 1.2), _vpn(rng), 0.15))
    return sessions


def _shift_hours(person: Person, day: Day) -> list[tuple[float, float, str, float]]:
    """Duty desk: three 8-hour shifts rotating weekly, two days off in seven, holidays worked."""
    if (day.index + person.group * 2) % 7 in (5, 6):
        return []
    shift = (person.group + day.index // 7) % 3
    begin = day.midnight + HOUR * (8, 16, 0)[shift] + person.rng.uniform(-600, 600)
    return [(begin, begin + 8 * HOUR, person.nat or person.office_ip, 1.0)]


def _desk_hours(person: Person, day: Day) -> list[tuple[float, float, str, float]]:
    """Hotline: two day shifts (08-20), two night shifts (20-08), four days off."""
    slot = (day.index + person.group * 2) % 8
    if slot > 3:
        return []
    begin = day.midnight + HOUR * (8 if slot < 2 else 20) + person.rng.uniform(-900, 300)
    share = 1.0 if slot < 2 else 0.45
    return [(begin, begin + 12 * HOUR, person.nat or person.office_ip, share)]


def _person_day(person: Person, day: Day, out: Traffic, campaign: bool) -> None:
    rng = person.rng
    if not person.joined <= day.index < person.left:
        return
    if person.change_day == day.index:
        person.agent = rng.choice([b for b in BROWSERS if b != person.agent])
        if person.nat is None:
            subnet = person.department.subnet
            person.office_ip = f"10.{subnet}.{rng.randint(0, 31)}.{rng.randint(2, 254)}"
    if person.kind == "shift_worker":
        sessions = _shift_hours(person, day)
    elif person.kind == "desk_24x7":
        sessions = _desk_hours(person, day)
    else:
        sessions = _office_hours(person, day)
    if not sessions:
        return
    volume = person.volume * math.exp(rng.gauss(0, 0.35))
    if person.kind not in ("shift_worker", "desk_24x7"):
        volume *= day.peak ** (1.0 if person.kind == "analyst" else 0.5)
    if day.index == person.joined and person.kind == "new_staff":
        volume *= 0.3  # the first day is mostly setting up
    agent = _ua(person, day)
    token = _token(rng)
    first = sessions[0]
    person.worked[day.index] = (token, first[0], first[1])  # the day's login, for attacks
    if rng.random() < 0.2:  # yesterday's token has expired: one 401 before logging in again
        refused = Who(None, None, first[2], agent, None, "token_refresh", f"{person.name}:401")
        ds = person.dataset()
        out.read(first[0] - rng.uniform(1, 20), refused, ds, person.pick(ds), status=401)
    for begin, end, ip, share in sessions:
        who = _who(person, ip, agent, token)
        if ip.startswith("172.16.") and person.kind == "manager":
            who = who.but(agent=PHONES[person.group % len(PHONES)])
        count = int(volume * share)
        office = person.kind not in ("shift_worker", "desk_24x7")
        _clicks(person, who, begin, end, count, out, lunch=office)
        if person.kind == "analyst" and day.peak > 1.0 and share >= 1.0:
            for _ in range(rng.randint(2, 5)):  # the month-end report extracts
                ds = person.dataset()
                records = int(rng.uniform(2000, 9000) * (day.peak - 0.7))
                out.export(rng.uniform(begin, end), who, ds, records)
        if campaign and person.kind == "auditor" and share >= 1.0:
            # the audit campaign: wider reading across the department's datasets
            for _ in range(int(volume * rng.uniform(1.0, 2.0) / 2)):
                ds = person.dataset()
                ts = rng.uniform(begin, end)
                out.read(ts, who, ds, rng.randint(1, ds.size))
                if rng.random() < 0.15:
                    out.page(ts + rng.uniform(1, 5), who, ds, rng.randint(1, 40), 50)


# --- service accounts --------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class Service:
    """A machine principal on a fixed address and client, with a routine."""

    name: str
    department: Department
    kind: str
    rng: random.Random
    dataset: Dataset
    ip: str
    agent: str
    hour: float  # local start hour of the nightly run; minute of the hour for pollers
    volume: float  # records (or requests) per run
    rate: float  # requests per second while running
    cursor: int = 1
    extra: Dataset | None = None  # a second dataset some exporters also take


def _service_who(svc: Service, token: str) -> Who:
    return Who(
        svc.name,
        svc.department.name,
        svc.ip,
        svc.agent,
        token,
        svc.kind,
        svc.name,
        clearance=3,
        role="service",
        purpose=svc.department.purpose,
    )


def _service_day(svc: Service, day: Day, out: Traffic) -> None:
    rng = svc.rng
    who = _service_who(svc, _token(rng))
    ds = svc.dataset
    if svc.kind == "svc_nightly_sync":
        ts = day.midnight + HOUR * svc.hour + rng.uniform(0, 240)
        for _ in range(int(svc.volume * rng.uniform(0.85, 1.15))):
            out.read(ts, who, ds, svc.cursor)
            svc.cursor = svc.cursor % ds.size + 1
            ts += rng.expovariate(svc.rate)
    elif svc.kind == "svc_page_crawl":
        ts = day.midnight + HOUR * svc.hour + rng.uniform(0, 300)
        for page in range(1, int(svc.volume * rng.uniform(0.9, 1.1)) + 1):
            out.page(ts, who, ds, page, 100)
            ts += rng.expovariate(svc.rate)
    elif svc.kind == "svc_nightly_export":
        ts = day.midnight + HOUR * svc.hour + rng.uniform(0, 180)
        month_end = (day.date + dt.timedelta(days=1)).month != day.date.month
        for target in (ds, svc.extra):
            if target is None:
                continue
            records = int(svc.volume * rng.uniform(0.9, 1.1) * (1.4 if month_end else 1.0))
            out.export(ts, who, target, records)
            ts += records / 4000 + rng.uniform(5, 30)
            for page in range(1, rng.randint(2, 5)):  # the checksum pages it compares against
                out.page(ts, who, target, page, 100)
                ts += rng.uniform(0.5, 2)
    elif svc.kind == "svc_hourly_poller":
        for hour in range(24):
            ts = day.midnight + HOUR * hour + 60 * svc.hour + rng.uniform(-20, 20)
            out.page(ts, who, ds, 1, 50)
            for _ in range(int(rng.expovariate(1 / svc.volume))):
                ts += rng.uniform(0.2, 1.0)
                out.read(ts, who, ds, ds.size - rng.randrange(2000))
    elif svc.kind in ("svc_portal_backend", "svc_misconfigured"):
        if not day.working:
            return
        begin, end = day.midnight + 8.5 * HOUR, day.midnight + 18 * HOUR
        count = int(svc.volume * rng.uniform(0.8, 1.2) * math.sqrt(day.peak))
        for ts in sorted(rng.uniform(begin, end) for _ in range(count)):
            noon = day.midnight + 12 * HOUR
            if noon <= ts < noon + 1.5 * HOUR and rng.random() < 0.6:
                continue
            if rng.random() < 0.2:
                out.page(ts, who, ds, rng.randint(1, 30), 20)
            else:
                out.read(ts, who, ds, rng.randint(1, ds.size))
        if svc.kind == "svc_misconfigured":
            for _ in range(rng.randint(1, 4)):  # its bad id mapping fires on some user actions
                ts = rng.uniform(begin, end)
                for _ in range(rng.randint(40, 250)):
                    out.read(ts, who, ds, ds.size + rng.randint(1, 5000))
                    ts += rng.expovariate(svc.rate)


# --- the organisation --------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class Org:
    people: list[Person]
    services: list[Service]
    nat: dict[str, list[Person]]  # shared address -> who is behind it
    days: list[Day]
    campaign: tuple[int, int]  # day indices of the audit campaign, end exclusive


def _weights(department: Department) -> list[tuple[Dataset, float]]:
    return [(DATASETS[d], w) for d, w in department.datasets]


def _office_ip(department: Department, rng: random.Random) -> str:
    return f"10.{department.subnet}.{rng.randint(0, 31)}.{rng.randint(2, 254)}"


def _build(seed: int, start: dt.date, history_days: int, test_days: int, cal: OrgCalendar) -> Org:
    rng = random.Random(f"orgsim/{seed}")
    days = []
    for index in range(history_days + test_days):
        date = start + dt.timedelta(days=index)
        midnight = dt.datetime.combine(date, dt.time(), dt.UTC).timestamp() - UTC_OFFSET
        days.append(
            Day(index, date, midnight, cal.working(date), cal.peak(date), index >= history_days)
        )
    test_working = [d.index for d in days if d.test and d.working] or [history_days]
    people: list[Person] = []
    nat: dict[str, list[Person]] = {}

    def person(department: Department, kind: str, number: int) -> Person:
        own = random.Random(f"orgsim/{seed}/{department.name}/{number}")
        weights = _weights(department)
        if own.random() < 0.3 and len(weights) > 1:  # not everyone uses every dataset
            weights = [(weights[0][0], 1.0)]
        agent = CHROME if own.random() < 0.55 else own.choice(BROWSERS)
        p = Person(
            name=f"{department.name[:3]}-{number:03d}",
            department=department,
            kind=kind,
            role="clerk",
            clearance=2,
            rng=own,
            datasets=weights,
            office_ip=_office_ip(department, own),
            agent=agent,
            volume=math.exp(own.uniform(math.log(25), math.log(220))),
            arrive=own.gauss(8.6, 0.25),
            leave=own.gauss(17.6, 0.35),
            late=0.03,
            export_rate=0.004,
            group=own.randrange(4),
        )
        if department.name in ("public-security", "health", "human-resources"):
            p.clearance = 3  # data owners read their own data unmasked
        return p

    for department in DEPARTMENTS.values():
        count = max(0, department.staff + rng.randint(-3, 3)) if department.staff else 0
        for number in range(1, count + 1):
            roll = rng.random()
            kind = (
                "early_starter"
                if roll < 0.08
                else "late_worker"
                if roll < 0.18
                else "manager"
                if roll < 0.26
                else "office"
            )
            p = person(department, kind, number)
            if kind == "early_starter":
                p.arrive, p.leave = 7.5 + p.rng.gauss(0, 0.08), 16.5 + p.rng.gauss(0, 0.2)
            elif kind == "late_worker":
                p.late, p.leave = 0.25, p.leave + 0.5
            elif kind == "manager":
                p.volume, p.role, p.clearance = p.volume / 4, "manager", 3
            people.append(p)
        extra = len([p for p in people if p.department is department])
        if department.name == "statistics":
            for n in range(rng.randint(3, 5)):
                p = person(department, "analyst", extra + n + 1)
                p.role, p.export_rate = "analyst", 0.01
                people.append(p)
        if department.name == "taxation":
            for n in range(rng.randint(4, 6)):
                p = person(department, "auditor", extra + n + 1)
                p.role, p.clearance = "tax-auditor", 3
                p.datasets = [(DATASETS["social-security"], 0.6), (DATASETS["enterprise"], 0.4)]
                people.append(p)
        if department.name == "health":
            for n in range(2):
                p = person(department, "analyst", extra + n + 1)
                p.role, p.export_rate, p.clearance = "data-officer", 0.02, 4
                p.datasets = [(DATASETS["medical"], 1.0)]
                people.append(p)
        if department.name == "public-security":
            for n in range(rng.randint(8, 10)):
                p = person(department, "shift_worker", extra + n + 1)
                p.role, p.group = "duty-officer", n % 3
                p.agent = "DutyDesk/4.2 (Windows NT 10.0; Win64; x64)"
                people.append(p)
        if department.name == "citizen-hotline":
            address = f"100.64.{department.subnet}.1"
            desk = []
            for n in range(rng.randint(16, 20)):
                p = person(department, "desk_24x7", n + 1)
                p.role, p.group, p.nat = "agent", n % 4, address
                p.volume = math.exp(p.rng.uniform(math.log(40), math.log(120)))
                p.agent = "Hotline12345/5.2 (Windows NT 10.0; Win64; x64) Chrome/118.0"
                desk.append(p)
            people.extend(desk)
            nat[address] = desk
    for department, size in (("civil-affairs", (8, 13)), ("human-resources", (5, 9))):
        dept = DEPARTMENTS[department]
        address = f"100.64.{dept.subnet}.{rng.randint(2, 254)}"
        base = 100 + rng.randint(0, 9)
        branch = [person(dept, "branch_nat", base + n) for n in range(rng.randint(*size))]
        for p in branch:
            p.nat = address
        people.extend(branch)
        nat[address] = branch
    # new staff start on the test days' working days, without history
    for n in range(rng.randint(4, 6)):
        dept = rng.choice([d for d in DEPARTMENTS.values() if d.staff])
        p = person(dept, "new_staff", 300 + n)
        p.joined = rng.choice(test_working[:3])
        people.append(p)
    # a few staff get a new laptop, and with it an address, during the test days
    eligible = [p for p in people if p.kind in ("office", "early_starter")]
    for p in rng.sample(eligible, min(len(eligible), rng.randint(6, 9))):
        if p.kind == "office":
            p.kind = "device_change"
        p.change_day = rng.choice(test_working)
    services = _services(seed, rng)
    campaign_start = max(0, history_days - 8)
    return Org(people, services, nat, days, (campaign_start, history_days + test_days - 2))


def _services(seed: int, rng: random.Random) -> list[Service]:
    plan = [
        ("svc_nightly_sync", "public-security", "population", (0.5, 2.0), (900, 2200), (4, 9)),
        ("svc_nightly_sync", "human-resources", "social-security", (1.0, 3.0), (700, 1800), (3, 7)),
        ("svc_nightly_sync", "health", "medical", (2.0, 4.0), (400, 1200), (2, 5)),
        ("svc_page_crawl", "statistics", "enterprise", (22.5, 23.5), (80, 220), (0.8, 2.0)),
        ("svc_page_crawl", "civil-affairs", "population", (3.0, 4.5), (60, 160), (0.5, 1.5)),
        ("svc_nightly_export", "statistics", "enterprise", (1.5, 2.5), (8000, 30000), (1, 1)),
        ("svc_nightly_export", "taxation", "social-security", (0.2, 1.0), (5000, 20000), (1, 1)),
        (
            "svc_nightly_export",
            "market-regulation",
            "enterprise",
            (4.0, 5.0),
            (3000, 12000),
            (1, 1),
        ),
        ("svc_hourly_poller", "civil-affairs", "social-security", (5, 50), (1, 3), (1, 1)),
        ("svc_hourly_poller", "market-regulation", "enterprise", (5, 50), (1, 4), (1, 1)),
        ("svc_hourly_poller", "citizen-hotline", "population", (5, 50), (0.5, 2), (1, 1)),
        ("svc_portal_backend", "civil-affairs", "population", (8, 8), (600, 1500), (1, 1)),
        ("svc_portal_backend", "human-resources", "social-security", (8, 8), (400, 1200), (1, 1)),
        ("svc_misconfigured", "market-regulation", "enterprise", (8, 8), (150, 400), (4, 9)),
    ]
    agents = {
        "svc_nightly_sync": ("python-requests/2.31.0", "DataX/3.0 (+sync)", "Kettle/9.4"),
        "svc_page_crawl": ("Go-http-client/1.1", "Scrapy-intranet/2.11"),
        "svc_nightly_export": ("Kettle/9.4", "Apache-HttpClient/4.5.14 (Java/1.8.0_392)"),
        "svc_hourly_poller": ("okhttp/4.12.0", "node-fetch/1.0 (+poller)"),
        "svc_portal_backend": ("DeptPortal-backend/3.1",),
        "svc_misconfigured": ("Apache-HttpClient/5.2.1 (Java/17.0.9)",),
    }
    services = []
    for n, (kind, department, dataset, hours, volume, rate) in enumerate(plan):
        own = random.Random(f"orgsim/{seed}/svc/{n}")
        ds = DATASETS[dataset]
        svc = Service(
            name=f"svc-{department[:3]}-{kind.split('_', 1)[1].replace('_', '-')}-{n:02d}",
            department=DEPARTMENTS[department],
            kind=kind,
            rng=own,
            dataset=ds,
            ip=f"10.250.{DEPARTMENTS[department].subnet}.{10 + n}",
            agent=own.choice(agents[kind]),
            hour=own.uniform(*hours),
            volume=own.uniform(*volume),
            rate=own.uniform(*rate),
            cursor=own.randint(1, ds.size),
        )
        if kind == "svc_nightly_export" and own.random() < 0.5:
            svc.extra = DATASETS["population" if dataset != "population" else "enterprise"]
        services.append(svc)
    del rng
    return services


# --- attacks -----------------------------------------------------------------------------


class Attacks:
    """Plans the seed's attack actors on the test days, each on a victim used once."""

    def __init__(self, org: Org, rng: random.Random, out: Traffic) -> None:
        self.org = org
        self.rng = rng
        self.out = out
        self.used: set[str] = set()
        self.count = 0
        self.test = [d for d in org.days if d.test]
        self.working = [d for d in self.test if d.working] or self.test

    def victim(self, test: Callable[[Person], bool]) -> Person:
        pool = [
            p
            for p in self.org.people
            if p.name not in self.used
            and p.joined == 0
            and p.left > len(self.org.days)
            and p.change_day is None
            and p.kind not in ("new_staff", "desk_24x7", "shift_worker")
            and test(p)
        ]
        chosen = self.rng.choice(pool)
        self.used.add(chosen.name)
        return chosen

    def service(self, kind: str) -> Service:
        pool = [s for s in self.org.services if s.kind == kind and s.name not in self.used]
        chosen = self.rng.choice(pool)
        self.used.add(chosen.name)
        return chosen

    def who(
        self, kind: str, person: Person | Service | None, day: Day | None = None, **changes: Any
    ) -> Who:
        """A new attack actor; on a person's account with that day's token when they worked."""
        self.count += 1
        actor = f"attack-{self.count:02d}"
        if isinstance(person, Person):
            day = day or self.test[0]
            token = person.worked[day.index][0] if day.index in person.worked else None
            ip = person.nat or person.office_ip
            base = _who(person, ip, _ua(person, day), token or _token(self.rng))
        elif isinstance(person, Service):
            base = _service_who(person, _token(self.rng))
        else:
            base = Who(None, None, "", "", None, kind, actor)
        return base.but(kind=kind, actor=actor, label=kind, **changes)

    def session(self, p: Person, span: float) -> tuple[Day, float]:
        """A test working day the person worked, and a time in their session `span` s long."""
        days = [d for d in self.working if d.index in p.worked] or self.working
        day = self.rng.choice(days)
        if day.index not in p.worked:
            return self.office_time(day, span)
        _, begin, end = p.worked[day.index]
        return day, self.rng.uniform(begin, max(begin + 1, end - span))

    def office_time(self, day: Day | None = None, span: float = 0.0) -> tuple[Day, float]:
        day = day or self.rng.choice(self.working)
        hour = self.rng.uniform(9.0, max(9.1, 17.0 - span / HOUR))
        if 11.8 < hour < 13.3:
            hour += 1.5
        return day, day.midnight + HOUR * hour

    # each method plans one kind; `plan` lists how many actors of each a seed gets

    def burst_scraping(self) -> None:
        rng = self.rng
        p = self.victim(lambda p: p.kind == "office")
        day, ts = self.session(p, 900)
        who = self.who("burst_scraping", p, day)
        if rng.random() < 0.5:
            who = who.but(agent=rng.choice(SCRIPTS))
        ds = p.datasets[0][0]
        stop, rate = ts + rng.uniform(150, 700), rng.uniform(2.0, 9.0)
        while ts < stop:
            limited = rate > 5 and rng.random() < 0.35  # the gateway's hard limit answers some
            self.out.read(ts, who, ds, rng.randint(1, ds.size), status=429 if limited else 0)
            ts += rng.expovariate(rate)

    def slow_scraping(self) -> None:
        rng = self.rng
        p = self.victim(lambda p: p.kind in ("office", "late_worker"))
        ds = p.datasets[0][0]
        record = rng.randint(1, ds.size)
        count = min(len(self.working), rng.randint(2, 4))
        days = sorted(rng.sample(self.working, count), key=lambda d: d.index)
        who = self.who("slow_scraping", p, days[0])
        for day in days:
            who = who.but(token=p.worked.get(day.index, (who.token,))[0], agent=_ua(p, day))
            ts = day.midnight + HOUR * (p.arrive + rng.uniform(0.2, 0.8))
            stop = day.midnight + HOUR * (p.leave - rng.uniform(0.0, 0.5))
            while ts < stop:
                record = (record + rng.randint(1, 40)) % ds.size + 1  # forward, never repeated
                self.out.read(ts, who, ds, record)
                ts += rng.uniform(20, 75)
                if 12.0 <= (ts + UTC_OFFSET) % DAY / HOUR < 13.0:
                    ts += HOUR

    def random_enumeration(self) -> None:
        rng = self.rng
        p = self.victim(lambda p: p.kind in ("office", "early_starter"))
        day, ts = self.session(p, 1800)
        who = self.who("random_enumeration", p, day, agent=rng.choice(SCRIPTS))
        ds = DATASETS[rng.choice(("population", "social-security", "medical"))]
        stop, rate = ts + rng.uniform(600, 1800), rng.uniform(0.4, 2.5)
        ceiling = int(ds.size * rng.uniform(1.2, 2.5))
        while ts < stop:
            self.out.read(ts, who, ds, rng.randint(1, ceiling))
            ts += rng.expovariate(rate)

    def off_hours_bulk(self) -> None:
        rng = self.rng
        p = self.victim(lambda p: p.kind in ("office", "manager", "late_worker"))
        day = rng.choice(self.test)
        who = self.who("off_hours_bulk", p, None, ip=_vpn(rng), token=_token(rng))
        ts = day.midnight + HOUR * rng.uniform(0.5, 4.0)
        for _ in range(rng.randint(3, 9)):
            ds = DATASETS[rng.choice(("population", "social-security", "medical", "enterprise"))]
            self.out.export(ts, who, ds, rng.randint(3000, 20000))
            for page in range(1, rng.randint(2, 8)):
                ts += rng.uniform(2, 20)
                self.out.page(ts, who, ds, page, 100)
            ts += rng.uniform(60, 500)

    def bulk_export(self) -> None:
        rng = self.rng
        svc = self.service("svc_nightly_export")
        who = self.who("bulk_export", svc)
        day = rng.choice(self.test)
        ts = day.midnight + HOUR * svc.hour + rng.uniform(600, 1800)
        parts = rng.randint(3, 6)
        total = svc.volume * rng.uniform(9, 12)
        for _ in range(parts):
            self.out.export(ts, who, svc.dataset, int(total / parts))
            ts += rng.uniform(60, 400)

    def export_new_context(self, kind: str) -> None:
        """An exporter pulls datasets it never exported, in office hours; a sync account,
        which only ever read records, exports its own dataset at its usual hour."""
        rng = self.rng
        svc = self.service(kind)
        who = self.who("export_new_context", svc)
        if kind == "svc_nightly_export":
            _, ts = self.office_time(span=3600)
            exported = {svc.dataset.id, svc.extra.id if svc.extra else ""}
            targets = [d for d in DATASETS.values() if d.id not in exported and d.level < 4]
            records = svc.volume
        else:
            day = rng.choice(self.test)
            ts = day.midnight + HOUR * svc.hour + rng.uniform(-300, 300)
            targets, records = [svc.dataset], svc.volume * 5
        for _ in range(rng.randint(1, 3)):
            self.out.export(ts, who, rng.choice(targets), int(records * rng.uniform(0.6, 1.1)))
            ts += rng.uniform(120, 900)

    def credential_stuffing(self) -> None:
        rng = self.rng
        ip = f"{rng.choice(EXTERNAL)}.{rng.randint(2, 254)}"
        who = self.who("credential_stuffing", None, ip=ip, agent=rng.choice(SCRIPTS))
        day = rng.choice(self.test)
        ts = day.midnight + HOUR * rng.uniform(0, 23)
        rate = rng.uniform(2.0, 12.0)
        ds = DATASETS["population"]
        for _ in range(rng.randint(300, 1500)):
            self.out.read(ts, who, ds, rng.randint(1, ds.size), status=401)
            ts += rng.expovariate(rate)
        # one leaked token was still valid: the attacker uses it at once
        p = self.victim(lambda p: p.kind == "office")
        cracked = _who(p, ip, who.agent, _token(rng))
        cracked = cracked.but(kind=who.kind, actor=who.actor, label=who.label)
        for _ in range(rng.randint(10, 40)):
            ds = p.dataset()
            self.out.read(ts, cracked, ds, rng.randint(1, ds.size))
            ts += rng.uniform(0.5, 3)

    def slow_credential_stuffing(self, spread: int) -> None:
        """`spread` addresses of one /24 take turns, one attempt every 12-45 s between them."""
        rng = self.rng
        net, first = rng.choice(EXTERNAL), rng.randrange(2, 240)
        agent = rng.choice(BROWSERS)
        whos = [
            self.who("slow_credential_stuffing", None, ip=f"{net}.{first + i}", agent=agent)
            for i in range(spread)
        ]
        day = rng.choice(self.test[: max(1, len(self.test) - 1)])
        ts = day.midnight + HOUR * rng.uniform(0, 24)
        stop = ts + HOUR * rng.uniform(8, 30)
        while ts < stop:
            ds = DATASETS[rng.choice(("population", "social-security"))]
            self.out.read(ts, rng.choice(whos), ds, rng.randint(1, ds.size), status=401)
            ts += rng.uniform(12, 45)

    def stolen_token(self) -> None:
        rng = self.rng
        p = self.victim(lambda p: p.kind in ("office", "manager") and len(p.datasets) < 3)
        day, ts = self.session(p, 5400)
        known = {d.id for d, _ in p.datasets}
        never = [d for d in DATASETS.values() if d.id not in known]
        ip = f"{rng.choice(EXTERNAL)}.{rng.randint(2, 254)}" if rng.random() < 0.5 else _vpn(rng)
        who = self.who("stolen_token", p, day, ip=ip, agent=rng.choice(SCRIPTS + BROWSERS[:1]))
        stop = ts + rng.uniform(1800, 5400)
        while ts < stop:
            ds = rng.choice(never)
            granted = ds.level < 4 or rng.random() < 0.2
            if rng.random() < 0.25:
                self.out.page(ts, who, ds, rng.randint(1, 60), 50, status=200 if granted else 403)
            else:
                self.out.read(ts, who, ds, rng.randint(1, ds.size), status=0 if granted else 403)
            ts += rng.uniform(8, 60)

    def token_two_places(self) -> None:
        rng = self.rng
        p = self.victim(lambda p: p.kind in ("office", "early_starter", "late_worker"))
        day, ts = self.session(p, 3600)
        # the copied session keeps the owner's browser and today's token: only the address differs
        ip = f"{rng.choice(EXTERNAL)}.{rng.randint(2, 254)}"
        who = self.who("token_two_places", p, day, ip=ip)
        stop = ts + rng.uniform(900, 3600)
        while ts < stop:
            ds = p.dataset()
            self.out.read(ts, who, ds, p.pick(ds))
            ts += rng.uniform(10, 90)

    def night_core_peek(self) -> None:
        rng = self.rng
        p = self.victim(
            lambda p: p.department.name == "health" and p.kind in ("office", "early_starter")
        )
        day = rng.choice(self.test[1:] or self.test)
        who = self.who("night_core_peek", p, day, token=_token(rng))
        ts = day.midnight + HOUR * rng.uniform(0.3, 2.8)
        ds = DATASETS["medical"]
        for _ in range(rng.randint(3, 8)):
            self.out.read(ts, who, ds, rng.randint(1, ds.size))
            ts += rng.uniform(15, 120)

    def department_spread(self, accounts: int) -> None:
        rng = self.rng
        dept = rng.choice(["civil-affairs", "human-resources", "public-security"])
        crew = [
            self.victim(lambda p: p.department.name == dept and p.kind == "office")
            for _ in range(accounts)
        ]
        ds = DATASETS[DEPARTMENTS[dept].datasets[0][0]]
        days = sorted(rng.sample(self.working, min(2, len(self.working))), key=lambda d: d.index)
        # the crew shares one sweep of the ids: account i takes every len(crew)-th id, in
        # random order, so no account walks ids in sequence and each reads a normal amount
        first = rng.randint(1, ds.size)
        for i, p in enumerate(crew):
            who = self.who("department_spread", p, days[0])
            per_day = int(min(max(p.volume, 40) * rng.uniform(0.8, 1.2), 160))
            share = [(first + i + n * len(crew)) % ds.size + 1 for n in range(per_day * len(days))]
            rng.shuffle(share)
            for d, day in enumerate(days):
                who = who.but(token=p.worked.get(day.index, (who.token,))[0])
                begin = day.midnight + HOUR * (p.arrive + 0.3)
                end = day.midnight + HOUR * (p.leave - 0.3)
                stamps = sorted(rng.uniform(begin, end) for _ in range(per_day))
                for ts, record in zip(stamps, share[d * per_day :], strict=False):
                    self.out.read(ts, who, ds, record)

    def slow_ramp(self) -> None:
        rng = self.rng
        p = self.victim(lambda p: p.kind == "office" and p.volume < 120)
        ds = p.datasets[0][0]
        extra = max(p.volume * 0.3, 15)
        who = self.who("slow_ramp", p, self.working[0])
        for day in self.working:
            who = who.but(token=p.worked.get(day.index, (who.token,))[0], agent=_ua(p, day))
            begin = day.midnight + HOUR * (p.arrive + 0.5)
            end = day.midnight + HOUR * (p.leave - 0.5)
            for ts in sorted(rng.uniform(begin, end) for _ in range(int(extra))):
                self.out.read(ts, who, ds, rng.randint(1, ds.size))
            extra *= rng.uniform(1.4, 1.7)

    def nat_shelter(self) -> None:
        rng = self.rng
        address = rng.choice([a for a in self.org.nat if not a.endswith(".1")])
        p = self.victim(lambda p: p.nat == address)
        day, ts = self.session(p, 3600)
        who = self.who("nat_shelter", p, day, agent=rng.choice(SCRIPTS))
        ds = p.datasets[0][0]
        stop, rate = ts + rng.uniform(1200, 3000), rng.uniform(0.5, 1.5)
        while ts < stop:
            if rng.random() < 0.1:
                self.out.page(ts, who, ds, rng.randint(1, 500), 100)
            else:
                self.out.read(ts, who, ds, rng.randint(1, ds.size))
            ts += rng.expovariate(rate)

    def leaver_return(self) -> None:
        rng = self.rng
        leaver = next(p for p in self.org.people if p.left < len(self.org.days))
        self.used.add(leaver.name)
        day = rng.choice(self.test)
        who = self.who("leaver_return", leaver, day, ip=_vpn(rng), token=_token(rng))
        ts = day.midnight + HOUR * rng.uniform(19.0, 22.0)
        for _ in range(rng.randint(80, 200)):
            ds = leaver.dataset()
            if rng.random() < 0.04:
                self.out.export(ts, who, ds, rng.randint(500, 3000))
            else:
                self.out.read(ts, who, ds, rng.randint(1, ds.size))
            ts += rng.uniform(5, 40)

    def forbidden_probing(self) -> None:
        rng = self.rng
        p = self.victim(lambda p: p.kind == "office")
        day, ts = self.session(p, 6 * 3600)
        who = self.who("forbidden_probing", p, day)
        own = {d.id for d, _ in p.datasets}
        for _ in range(rng.randint(40, 120)):
            ds = rng.choice(list(DATASETS.values()))
            action = rng.choice(("read", "list", "export"))
            status = 200 if ds.id in own and action != "export" else 403
            if action == "read":
                self.out.read(ts, who, ds, rng.randint(1, ds.size), status=status)
            elif action == "list":
                self.out.page(ts, who, ds, rng.randint(1, 20), 100, status=status)
            else:
                self.out.export(ts, who, ds, 5000, status=status)
            ts += rng.uniform(30, 300)

    def page_harvest(self) -> None:
        rng = self.rng
        p = self.victim(lambda p: p.kind in ("office", "late_worker"))
        day, ts = self.session(p, 4 * 3600)
        who = self.who("page_harvest", p, day)
        ds = p.datasets[0][0]
        stop = ts + HOUR * rng.uniform(2, 4)
        page = rng.randint(1, 50)
        while ts < stop:
            self.out.page(ts, who, ds, page, 100)
            page += 1
            ts += rng.uniform(15, 45)

    def plan(self) -> None:
        rng = self.rng
        for _ in range(3):
            self.burst_scraping()
            self.slow_scraping()
        for _ in range(2):
            self.random_enumeration()
            self.off_hours_bulk()
            self.stolen_token()
            self.token_two_places()
            self.night_core_peek()
        self.bulk_export()
        self.bulk_export()
        self.export_new_context("svc_nightly_export")
        self.export_new_context("svc_nightly_sync")
        self.credential_stuffing()
        self.slow_credential_stuffing(1)
        self.slow_credential_stuffing(rng.randint(3, 5))
        self.department_spread(rng.randint(3, 5))
        self.slow_ramp()
        self.nat_shelter()
        self.leaver_return()
        self.forbidden_probing()
        self.page_harvest()


# --- output ------------------------------------------------------------------------------


_SECOND: list[Any] = [None, ""]


def _iso(ts: float) -> str:
    """ISO 8601 in Asia/Shanghai to the millisecond; one strftime per second."""
    whole = math.floor(ts)
    if _SECOND[0] != whole:
        _SECOND[0] = whole
        _SECOND[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole + UTC_OFFSET))
    return f"{_SECOND[1]}.{int((ts - whole) * 1000):03d}+08:00"


def _event(row: tuple[Any, ...], request_id: str) -> dict[str, Any]:
    ts, who, ds, action, status, records, size, path, record_id, query = row
    masked = {f: records for f, level in ds.masked if who.clearance < level} if records else {}
    decision = "deny" if status in (401, 403, 429) else "allow"  # an upstream 404 was allowed
    return {
        "type": "access",
        "ts": _iso(ts),
        "request_id": request_id,
        "principal": who.principal,
        "department": who.department,
        "clearance": who.clearance if who.principal else None,
        "roles": [who.role] if who.principal else [],
        "token_id": who.token,
        "client_ip": who.ip,
        "user_agent": who.agent,
        "method": "GET",
        "path": path,
        "query_keys": list(query),
        "dataset": ds.id,
        "level": ds.level,
        "action": action,
        "record_id": record_id,
        "purpose": who.purpose if who.principal else None,
        "decision": decision,
        "status": status,
        "bytes_out": size,
        "records_out": records,
        "masked_fields": masked,
        "latency_ms": round(4.0 + size / 150_000 + (ts * 7919) % 9, 2),
        "label": who.label,
        "kind": who.kind,
        "actor": who.actor,
    }


def generate(
    seed: int,
    *,
    start: dt.date = START,
    history_days: int = 21,
    test_days: int = 7,
    calendar: OrgCalendar = CALENDAR,
) -> Scenario:
    """History (normal only) and test days (normal plus about 30 attack actors) of one seed's
    organisation; the same seed gives the same events."""
    if history_days < 1 or test_days < 1:
        raise ValueError("history_days and test_days must be >= 1")
    org = _build(seed, start, history_days, test_days, calendar)
    # someone leaves after the first week; their account comes back as an attack
    leaver = min((p for p in org.people if p.kind == "office"), key=lambda p: p.name)
    leaver.left = min(7, history_days)
    history = Traffic(random.Random(f"orgsim/{seed}/history"))
    test = Traffic(random.Random(f"orgsim/{seed}/test"))
    for day in org.days:
        out = test if day.test else history
        campaign = org.campaign[0] <= day.index < org.campaign[1] and day.working
        for person in org.people:
            _person_day(person, day, out, campaign)
        for svc in org.services:
            _service_day(svc, day, out)
    Attacks(org, random.Random(f"orgsim/{seed}/attacks"), test).plan()
    split = org.days[history_days].midnight
    # a night's work may run past midnight into the other part: keep each part's time range
    rows = history.rows + test.rows
    rows.sort(key=lambda r: r[0])
    parts: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([], [])
    end = org.days[-1].midnight + DAY
    first = org.days[0].midnight
    for row in rows:
        if not first <= row[0] < end:
            continue
        which = row[0] >= split
        if not which and row[1].label != "normal":
            continue
        part = parts[which]
        part.append(_event(row, f"o{seed}-{'t' if which else 'h'}{len(part):07d}"))
    return Scenario(history=parts[0], test=parts[1])
