"""A seeded, labelled traffic generator: normal principals and attack scenarios as access events.

Each actor is a plain object whose `plan(start, end)` yields its requests in time order, so
the same behaviour drives both the detector evaluation and the Locust load tests.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import heapq
import math
import random
import zoneinfo
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import orjson

__all__ = [
    "ATTACKS",
    "DATASETS",
    "Actor",
    "NormalActor",
    "PlannedRequest",
    "Scenario",
    "ServiceActor",
    "generate",
    "to_event",
    "write",
]

ZONE = zoneinfo.ZoneInfo("Asia/Shanghai")
DAY = 86400.0


@dataclasses.dataclass(frozen=True, slots=True)
class DemoDataset:
    id: str
    level: int
    prefix: str  # records are prefix/{id}
    export: str  # bulk export path
    size: int  # ids 1..size exist


DATASETS: dict[str, DemoDataset] = {
    d.id: d
    for d in (
        DemoDataset(
            "population", 3, "/api/population/persons", "/api/population/persons.csv", 200_000
        ),
        DemoDataset(
            "enterprise", 1, "/api/enterprise/companies", "/api/enterprise/companies.csv", 50_000
        ),
        DemoDataset(
            "social-security",
            3,
            "/api/social-security/accounts",
            "/api/social-security/accounts.ndjson",
            150_000,
        ),
        DemoDataset("medical", 4, "/api/medical/records", "/api/medical/records.ndjson", 80_000),
    )
}
DEPARTMENTS: dict[str, tuple[str, ...]] = {
    "statistics": ("population", "enterprise"),
    "tax": ("enterprise", "population"),
    "social-affairs": ("social-security", "population"),
    "health": ("medical", "population"),
    "civil-affairs": ("population", "social-security"),
}
BROWSERS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 Version/17.4 Safari",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "DeptPortal/2.3 (+intranet)",
)
SCRIPTS = ("python-requests/2.31.0", "curl/8.5.0", "Go-http-client/1.1", "okhttp/4.12.0")
ATTACKS = (
    "burst_scraping",
    "slow_scraping",
    "off_hours_bulk",
    "enumeration",
    "bulk_export",
    "credential_stuffing",
    "stolen_token",
)


@dataclasses.dataclass(slots=True)
class PlannedRequest:
    """One request an actor makes, with the response the demo upstream would give."""

    ts: float
    principal: str | None
    department: str | None
    client_ip: str
    user_agent: str
    token_id: str | None
    method: str
    path: str
    dataset: str
    level: int
    action: str
    status: int
    records_out: int
    bytes_out: int
    label: str = "normal"


class Actor(Protocol):
    """Anything that plans requests between two timestamps."""

    def plan(self, start: float, end: float) -> Iterator[PlannedRequest]: ...


def _local(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, ZONE)


def _midnights(start: float, end: float) -> Iterator[float]:
    day = _local(start).date()
    while True:
        midnight = dt.datetime.combine(day, dt.time(), ZONE).timestamp()
        if midnight >= end:
            return
        yield midnight
        day += dt.timedelta(days=1)


def _month_end(midnight: float) -> bool:
    day = _local(midnight).date()
    return (day + dt.timedelta(days=2)).month != day.month


def _token(principal: str, midnight: float) -> str:
    return f"tok-{principal}-{_local(midnight).strftime('%m%d')}"


class _Requester:
    """Shared request shapes: record reads, pages, exports, with their responses."""

    principal: str | None
    department: str | None
    rng: random.Random

    def _request(
        self,
        ts: float,
        ip: str,
        agent: str,
        token: str | None,
        dataset: DemoDataset,
        kind: str,
        label: str,
        record: int | None = None,
        status: int | None = None,
    ) -> PlannedRequest:
        rng = self.rng
        if kind == "read":
            number = record if record is not None else rng.randint(1, dataset.size)
            path = f"{dataset.prefix}/{number}"
            code = status or (200 if number <= dataset.size and rng.random() > 0.02 else 404)
            records = 1 if code == 200 else 0
            action = "read"
        elif kind == "list":
            path = f"{dataset.prefix}?page={rng.randint(1, 400)}"
            code, records, action = status or 200, rng.randint(10, 50), "list"
        else:
            path = dataset.export
            code, action = status or 200, "export"
            records = record if record is not None else int(math.exp(rng.uniform(4.0, 7.6)))
        if code != 200:
            records = 0
        size = records * rng.randint(180, 420) + 120
        return PlannedRequest(
            ts,
            self.principal,
            self.department,
            ip,
            agent,
            token,
            "GET",
            path,
            dataset.id,
            dataset.level,
            action,
            code,
            records,
            size,
            label,
        )


class NormalActor(_Requester):
    """A person at work: daily and weekly rhythm, lunch, occasional late evenings and weekend
    sessions, month-end spikes, and now and then a new device."""

    def __init__(self, principal: str, department: str, rng: random.Random) -> None:
        self.principal = principal
        self.department = department
        self.rng = rng
        self.datasets = [DATASETS[d] for d in DEPARTMENTS[department]]
        dept = list(DEPARTMENTS).index(department) + 1
        self.office_ip = f"10.{dept}.{rng.randint(0, 255)}.{rng.randint(2, 254)}"
        self.vpn_ip = f"172.16.{rng.randint(0, 255)}.{rng.randint(2, 254)}"
        self.agent = rng.choice(BROWSERS)
        self.volume = math.exp(rng.uniform(math.log(40), math.log(400)))  # requests per day
        self.arrive = rng.gauss(8.8, 0.4)
        self.leave = rng.gauss(17.8, 0.5)

    def _session(
        self, start: float, end: float, count: int, ip: str, token: str
    ) -> Iterator[PlannedRequest]:
        """`count` requests between start and end in clicks of 1-6 requests, lunch quieter."""
        rng = self.rng
        ts = start
        mean_gap = max((end - start) / max(count, 1) * 3.0, 1.0)
        made = 0
        while made < count and ts < end:
            hour = _local(ts).hour + _local(ts).minute / 60
            lunch = 12.0 <= hour < 13.25
            if lunch and rng.random() < 0.85:
                ts += rng.expovariate(1 / 900)
                continue
            dataset = self.datasets[0] if rng.random() < 0.75 else self.datasets[-1]
            for _ in range(rng.randint(1, 6)):
                roll = rng.random()
                if roll < 0.004:
                    yield self._request(
                        ts, ip, self.agent, token, dataset, "read", "normal", status=401
                    )
                elif roll < 0.012:
                    other = (
                        DATASETS["medical"] if dataset.id != "medical" else DATASETS["enterprise"]
                    )
                    yield self._request(
                        ts, ip, self.agent, token, other, "read", "normal", status=403
                    )
                elif roll < 0.035:
                    yield self._request(ts, ip, self.agent, token, dataset, "export", "normal")
                elif roll < 0.28:
                    yield self._request(ts, ip, self.agent, token, dataset, "list", "normal")
                else:
                    yield self._request(ts, ip, self.agent, token, dataset, "read", "normal")
                made += 1
                ts += rng.uniform(0.3, 4.0)
            ts += rng.expovariate(1 / mean_gap)

    def plan(self, start: float, end: float) -> Iterator[PlannedRequest]:
        rng = self.rng
        for midnight in _midnights(start, end):
            token = _token(self.principal, midnight)  # type: ignore[arg-type]
            if rng.random() < 0.03:  # a new laptop or browser, and often a new address
                self.agent = rng.choice([b for b in BROWSERS if b != self.agent])
                if rng.random() < 0.5:
                    self.office_ip = (
                        f"10.{self.office_ip.split('.')[1]}.{rng.randint(0, 255)}."
                        f"{rng.randint(2, 254)}"
                    )
            weekday = _local(midnight).isoweekday()
            volume = self.volume * math.exp(rng.gauss(0, 0.3))
            if _month_end(midnight):
                volume *= rng.uniform(1.8, 3.0)
            sessions: list[Iterator[PlannedRequest]] = []
            if weekday <= 5 and rng.random() > 0.04:  # some days off
                begin = midnight + 3600 * (self.arrive + rng.gauss(0, 0.3))
                finish = midnight + 3600 * (self.leave + rng.gauss(0, 0.4))
                sessions.append(self._session(begin, finish, int(volume), self.office_ip, token))
                if rng.random() < 0.07:
                    late = midnight + 3600 * rng.uniform(20.0, 22.0)
                    sessions.append(
                        self._session(
                            late,
                            late + 3600 * rng.uniform(0.3, 1.5),
                            rng.randint(10, 40),
                            self.vpn_ip,
                            token,
                        )
                    )
            elif rng.random() < 0.06:
                begin = midnight + 3600 * rng.uniform(10.0, 15.0)
                sessions.append(
                    self._session(
                        begin,
                        begin + 3600 * rng.uniform(0.5, 2.0),
                        rng.randint(10, 40),
                        self.vpn_ip,
                        token,
                    )
                )
            for request in heapq.merge(*sessions, key=lambda r: r.ts):
                if start <= request.ts < end:
                    yield request


class ServiceActor(_Requester):
    """A partner system polling around the clock at a steady pace."""

    def __init__(self, principal: str, department: str, rng: random.Random) -> None:
        self.principal = principal
        self.department = department
        self.rng = rng
        self.dataset = DATASETS[rng.choice(DEPARTMENTS[department])]
        self.ip = f"10.200.{rng.randint(0, 255)}.{rng.randint(2, 254)}"
        self.agent = f"sync-service/{rng.randint(1, 4)}.{rng.randint(0, 9)}"
        self.period = rng.uniform(60.0, 180.0)

    def plan(self, start: float, end: float) -> Iterator[PlannedRequest]:
        rng = self.rng
        ts = start + rng.uniform(0, self.period)
        while ts < end:
            token = _token(self.principal, math.floor(ts / DAY) * DAY)  # type: ignore[arg-type]
            yield self._request(ts, self.ip, self.agent, token, self.dataset, "list", "normal")
            ts += self.period * rng.uniform(0.9, 1.1)


class AttackActor(_Requester):
    """One attack: a scenario name, its start, and the insider or victim it uses."""

    def __init__(
        self, scenario: str, victim: NormalActor | None, start: float, rng: random.Random
    ) -> None:
        self.scenario = scenario
        self.victim = victim
        self.start = start
        self.rng = rng
        self.principal = victim.principal if victim else None
        self.department = victim.department if victim else None

    def plan(self, start: float, end: float) -> Iterator[PlannedRequest]:
        for request in getattr(self, f"_{self.scenario}")():
            if start <= request.ts < end:
                yield request

    def _identity(self, ts: float) -> tuple[str, str, str | None]:
        victim = self.victim
        assert victim is not None
        return victim.office_ip, victim.agent, _token(victim.principal, ts)

    def _burst_scraping(self) -> Iterator[PlannedRequest]:
        rng = self.rng
        ip, agent, token = self._identity(self.start)
        dataset = DATASETS["population"]
        ts, stop = self.start, self.start + rng.uniform(180, 600)
        rate = rng.uniform(3.0, 10.0)
        while ts < stop:
            yield self._request(ts, ip, agent, token, dataset, "read", self.scenario)
            ts += rng.expovariate(rate)

    def _slow_scraping(self) -> Iterator[PlannedRequest]:
        rng = self.rng
        ip, _, token = self._identity(self.start)
        agent = rng.choice(SCRIPTS)
        dataset = DATASETS[rng.choice(("population", "social-security"))]
        period = rng.uniform(5.0, 9.0)
        ts, stop = self.start, self.start + 3600 * rng.uniform(4, 10)
        while ts < stop:
            yield self._request(ts, ip, agent, token, dataset, "read", self.scenario)
            ts += period * rng.uniform(0.85, 1.15)

    def _off_hours_bulk(self) -> Iterator[PlannedRequest]:
        rng = self.rng
        victim = self.victim
        assert victim is not None
        token = _token(victim.principal, self.start)
        ts = self.start
        for _ in range(rng.randint(4, 12)):
            dataset = DATASETS[rng.choice(("population", "social-security", "medical"))]
            yield self._request(
                ts,
                victim.vpn_ip,
                victim.agent,
                token,
                dataset,
                "export",
                self.scenario,
                record=rng.randint(2500, 9000),
            )
            for _ in range(rng.randint(0, 5)):
                ts += rng.uniform(2, 30)
                yield self._request(
                    ts, victim.vpn_ip, victim.agent, token, dataset, "list", self.scenario
                )
            ts += rng.uniform(60, 600)

    def _enumeration(self) -> Iterator[PlannedRequest]:
        rng = self.rng
        ip, _, token = self._identity(self.start)
        agent = rng.choice(SCRIPTS)
        dataset = DATASETS[rng.choice(("population", "social-security", "medical"))]
        number = rng.randint(1, dataset.size)
        ts, stop = self.start, self.start + rng.uniform(300, 1200)
        while ts < stop:
            missing = rng.random() < 0.6
            yield self._request(
                ts,
                ip,
                agent,
                token,
                dataset,
                "read",
                self.scenario,
                record=number,
                status=404 if missing else 200,
            )
            number += 1
            ts += rng.uniform(0.3, 2.0)

    def _bulk_export(self) -> Iterator[PlannedRequest]:
        rng = self.rng
        ip, agent, token = self._identity(self.start)
        ts = self.start
        for _ in range(rng.randint(5, 15)):
            dataset = DATASETS[rng.choice(("population", "social-security"))]
            yield self._request(
                ts,
                ip,
                agent,
                token,
                dataset,
                "export",
                self.scenario,
                record=rng.randint(5000, 9500),
            )
            ts += rng.uniform(120, 900)

    def _credential_stuffing(self) -> Iterator[PlannedRequest]:
        rng = self.rng
        ip = f"203.0.113.{rng.randint(2, 254)}"
        agent = rng.choice(SCRIPTS)
        dataset = DATASETS["population"]
        ts, attempts = self.start, rng.randint(200, 1500)
        rate = rng.uniform(2.0, 10.0)
        self.principal = self.department = None
        for _ in range(attempts):
            yield self._request(ts, ip, agent, None, dataset, "read", self.scenario, status=401)
            ts += rng.expovariate(rate)

    def _stolen_token(self) -> Iterator[PlannedRequest]:
        rng = self.rng
        victim = self.victim
        assert victim is not None
        ip = f"198.51.100.{rng.randint(2, 254)}"
        agent = rng.choice(SCRIPTS)
        token = _token(victim.principal, self.start - 6 * 3600)  # the day's token, still valid
        ts, stop = self.start, self.start + rng.uniform(1200, 3600)
        while ts < stop:
            dataset = DATASETS[rng.choice(("population", "medical", "social-security"))]
            kind = "export" if rng.random() < 0.05 else "read"
            yield self._request(ts, ip, agent, token, dataset, kind, self.scenario)
            ts += rng.uniform(5, 60)


def to_event(request: PlannedRequest, request_id: str) -> dict[str, Any]:
    """The access event (PRODUCT.md shape, plus `token_id` and `label`) for a request."""
    allowed = request.status < 400
    return {
        "ts": _local(request.ts).isoformat(timespec="milliseconds"),
        "request_id": request_id,
        "principal": request.principal,
        "department": request.department,
        "client_ip": request.client_ip,
        "user_agent": request.user_agent,
        "token_id": request.token_id,
        "method": request.method,
        "path": request.path,
        "dataset": request.dataset,
        "level": request.level,
        "action": request.action,
        "decision": "allow" if allowed or request.status == 404 else "deny",
        "status": request.status,
        "bytes_out": request.bytes_out,
        "records_out": request.records_out,
        "masked_fields": {"id_number": request.records_out} if request.level >= 3 else {},
        "latency_ms": round(3.0 + request.bytes_out / 200_000, 2),
        "label": request.label,
    }


@dataclasses.dataclass(slots=True)
class Scenario:
    """Normal history (for training) and later labelled test days with attacks."""

    history: list[dict[str, Any]]
    test: list[dict[str, Any]]


def _attack_start(scenario: str, test_start: float, days: int, rng: random.Random) -> float:
    """When an attack begins: working hours for the loud insider ones, nights for the others."""
    candidates = [test_start + DAY * d for d in range(days)]
    if scenario in ("burst_scraping", "bulk_export", "enumeration"):
        candidates = [d for d in candidates if _local(d + DAY / 2).isoweekday() <= 5] or candidates
    day = rng.choice(candidates)
    if scenario in ("off_hours_bulk", "stolen_token"):
        return day + 3600 * rng.uniform(0.5, 4.5)
    if scenario == "slow_scraping":
        return day + 3600 * rng.uniform(0, 20)
    return day + 3600 * rng.uniform(9.5, 16.5)


def _events(actors: Sequence[Actor], start: float, end: float, prefix: str) -> list[dict[str, Any]]:
    merged = heapq.merge(*(a.plan(start, end) for a in actors), key=lambda r: r.ts)
    return [to_event(r, f"{prefix}{i:07d}") for i, r in enumerate(merged)]


def generate(
    seed: int,
    *,
    principals: int = 60,
    start: dt.date = dt.date(2026, 3, 14),
    history_days: int = 13,
    test_days: int = 5,
    attacks_per_scenario: int = 3,
) -> Scenario:
    """Generate history (normal only) and test days (normal plus injected attacks)."""
    rng = random.Random(seed)
    names = list(DEPARTMENTS)
    people: list[NormalActor] = []
    actors: list[Actor] = []
    for i in range(principals):
        department = names[i % len(names)]
        actor_rng = random.Random(rng.getrandbits(64))
        if i % 10 == 9:
            actors.append(ServiceActor(f"svc{i:03d}", department, actor_rng))
        else:
            person = NormalActor(f"u{i:03d}", department, actor_rng)
            people.append(person)
            actors.append(person)
    begin = dt.datetime.combine(start, dt.time(), ZONE).timestamp()
    test_start = begin + DAY * history_days
    test_end = test_start + DAY * test_days
    history = _events(actors, begin, test_start, f"h{seed}-")
    attackers: list[Actor] = []
    victims = rng.sample(people, min(len(people), len(ATTACKS) * attacks_per_scenario))
    for n, scenario in enumerate(ATTACKS * attacks_per_scenario):
        victim = None if scenario == "credential_stuffing" else victims[n % len(victims)]
        when = _attack_start(scenario, test_start, test_days, rng)
        attackers.append(AttackActor(scenario, victim, when, random.Random(rng.getrandbits(64))))
    test = _events([*actors, *attackers], test_start, test_end, f"t{seed}-")
    return Scenario(history, test)


def write(scenario: Scenario, out: Path) -> tuple[Path, Path]:
    """Write history.jsonl and test.jsonl into `out` (created if needed)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = (out / "history.jsonl", out / "test.jsonl")
    for path, events in zip(paths, (scenario.history, scenario.test), strict=True):
        with path.open("wb") as handle:
            for event in events:
                handle.write(orjson.dumps(event) + b"\n")
    return paths
