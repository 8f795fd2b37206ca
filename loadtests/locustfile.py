"""Locust load test of the hot request path, with the scenario generator's actors as users.

Normal analysts, exporters, burst scrapers and off-hours pullers (detectors/scenarios.py):
each user has its own principal, minted at start with the demo config's signing key (or the
config named by DATAGATE_LOCUST_CONFIG), and its own client address in X-Forwarded-For (the
gateway must trust the Locust host in `server.trusted_proxies`). The checks: analysts are
never refused with 423/429, and burst scrapers end up refused with 423 or 429; either
failing sets the exit code to 1.

    DATAGATE_LOCUST_ADMIN=http://127.0.0.1:9090 locust -f loadtests/locustfile.py \
        --headless -u 12 -r 12 -t 30s --host http://127.0.0.1:8080 --only-summary

Exporters need a temporary export grant for their department: with DATAGATE_LOCUST_ADMIN set
to the admin listener's URL the grants are added at test start (with a SOC token minted from
the same config) and revoked at the end; without it exporters stop at once. docs/loadtests.md
has the rest.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import secrets
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from locust import FastHttpUser, between, constant, events, task
from locust.env import Environment
from locust.exception import StopUser
from locust.runners import MasterRunner, WorkerRunner

from detectors.scenarios import DATASETS
from gateway.config import load_config, parse_config
from gateway.demo.config import demo_config_data, demo_config_path
from gateway.identity.mint import mint_token

CONFIG_PATH = os.environ.get("DATAGATE_LOCUST_CONFIG") or None
ADMIN_URL = os.environ.get("DATAGATE_LOCUST_ADMIN", "").rstrip("/")
# Principals are unique per run, so a second run against the same gateway starts clean.
RUN = os.environ.get("DATAGATE_LOCUST_RUN") or secrets.token_hex(3)
EXPORT_PURPOSE = "load-test"
STOPPED = (423, 429)
ANALYST_SHIFT = float(os.environ.get("DATAGATE_LOCUST_ANALYST_SHIFT", "600"))


def _load_identity() -> Any:
    """The identity config (issuer, audience, signing key) tokens are minted with."""
    # DATAGATE_* variables override config keys: leave this file's own variables out.
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DATAGATE_LOCUST_")}
    if CONFIG_PATH:
        return load_config(Path(CONFIG_PATH), environ=environ).identity
    data = demo_config_data(
        port=8080,
        admin_port=9090,
        upstream_port=8081,
        data_dir=Path("datagate-demo").resolve(),
        state="memory",
    )
    return parse_config(data, base_dir=demo_config_path().parent, environ=environ).identity


_identity = _load_identity()
_serial = itertools.count(1)

# This process's tallies: responses per (user kind, status), and which scrapers were refused.
statuses: Counter[tuple[str, int]] = Counter()
scrapers: dict[str, bool] = {}  # sub -> ended with 423/429
grant_ids: list[str] = []


def _sizes() -> dict[str, int]:
    """Record ids 1..size exist; the demo serves 500 per dataset (DATAGATE_LOCUST_RECORDS)."""
    size = int(os.environ.get("DATAGATE_LOCUST_RECORDS", "500"))
    return {name: min(size, d.size) for name, d in DATASETS.items()}


SIZES = _sizes()


class _Principal(FastHttpUser):
    """A user with its own principal(s) and its own client address. The address goes in
    X-Forwarded-For, which the gateway believes only from `server.trusted_proxies`: trust the
    Locust host there, or every user shares one client IP and the IP-wide frequency rule
    suspends whichever principal crosses it (docs/loadtests.md)."""

    abstract = True
    kind = "user"

    def on_start(self) -> None:
        self.move()

    def move(self) -> None:
        """Take a new client address."""
        # Worker processes forked by --processes share RUN and the serial: the worker index
        # keeps their principals and addresses apart.
        self.worker = getattr(self.environment.runner, "worker_index", 0)
        n = next(_serial)
        self.client_ip = f"10.{self.worker % 256}.{n // 250 % 250}.{n % 250 + 2}"

    def mint(
        self, kind: str, dept: str, clearance: int, purpose: str | None = None
    ) -> tuple[str, str]:
        """A fresh principal of `kind` and its bearer token."""
        sub = f"lt-{RUN}-w{self.worker}-{kind}-{next(_serial)}"
        jwt = mint_token(
            _identity, sub=sub, dept=dept, clearance=clearance, roles=(), purpose=purpose, ttl=7200
        )
        return sub, jwt

    def _auth(self, jwt: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {jwt}", "X-Forwarded-For": self.client_ip}

    def _get(self, path: str, jwt: str, name: str, ok: tuple[int, ...] = (200,)) -> int:
        """GET `path`; statuses outside `ok` are failures. Returns the status."""
        with self.client.get(
            path, headers=self._auth(jwt), name=name, catch_response=True
        ) as response:
            status = response.status_code
            statuses[(self.kind, status)] += 1
            if status in ok:
                response.success()
            else:
                response.failure(f"{self.kind}: unexpected {status}: {response.text[:120]}")
        return status


class NormalAnalyst(_Principal):
    """A person at work: enterprise register lookups and list pages, paced like a human.

    At this pace one principal makes about 1,200 requests an hour, where the scenario's
    analysts make 40-400 a day, and the detector's above-baseline rule would rightly flag it
    after 300. So every ANALYST_SHIFT seconds the user hands over to a fresh principal (and
    address): many humans, each within a human's volume."""

    weight = 6
    kind = "analyst"
    wait_time = between(1, 5)

    def on_start(self) -> None:
        self.shift_ends = 0.0

    def _token(self) -> str:
        if time.monotonic() >= self.shift_ends:
            self.move()
            self.jwt = self.mint("analyst", "statistics", 2)[1]
            self.shift_ends = time.monotonic() + ANALYST_SHIFT
        return self.jwt

    @task(4)
    def read_company(self) -> None:
        number = random.randint(1, SIZES["enterprise"])
        self._get(f"/api/enterprise/companies/{number}", self._token(), "analyst: company")

    @task(1)
    def list_companies(self) -> None:
        pages = max(1, SIZES["enterprise"] // 20)
        self._get(
            f"/api/enterprise/companies?page={random.randint(1, pages)}",
            self._token(),
            "analyst: companies page",
        )


class Exporter(_Principal):
    """An owner department's data officer: now and then a bulk export under a grant, taking
    turns between two principals. About 30 exports of 500 records an hour each stays under
    the detector's bulk-export limit (20,000 records an hour)."""

    weight = 1
    kind = "exporter"
    wait_time = between(30, 90)

    def on_start(self) -> None:
        super().on_start()
        if not ADMIN_URL:
            raise StopUser()  # no grant without the admin API: see the module docstring
        self.population = self.mint("exporter", "public-security", 3, EXPORT_PURPOSE)[1]
        self.accounts = self.mint("exporter", "human-resources", 3, EXPORT_PURPOSE)[1]
        self.turn = random.random() < 0.5

    @task
    def export(self) -> None:
        self.turn = not self.turn
        if self.turn:
            self._get(DATASETS["population"].export, self.population, "exporter: persons.csv")
        else:
            self._get(DATASETS["social-security"].export, self.accounts, "exporter: ndjson")


class BurstScraper(_Principal):
    """An insider walking population record ids in sequence, flat out: the detector should
    suspend it (423) or the hard limit stop it (429). Once refused it stops."""

    weight = 1
    kind = "scraper"
    wait_time = constant(0)

    def on_start(self) -> None:
        super().on_start()
        self.sub, self.jwt = self.mint("scraper", "public-security", 3)
        scrapers[self.sub] = False
        self.next_id = random.randint(1, SIZES["population"])

    @task
    def scrape(self) -> None:
        path = f"{DATASETS['population'].prefix}/{self.next_id}"
        self.next_id = self.next_id % SIZES["population"] + 1
        if self._get(path, self.jwt, "scraper: person", ok=(200, *STOPPED)) in STOPPED:
            scrapers[self.sub] = True
            raise StopUser()


class OffHoursPuller(_Principal):
    """A civil-affairs account paging through level-3 lists. The policy allows it only in
    office hours (Mon-Fri 08-18 policy time, masked): outside them 403, and in the detector's
    off-hours the volume may trip the breaker (423). Each of those is an expected answer."""

    weight = 1
    kind = "puller"
    wait_time = between(0.5, 2)

    def on_start(self) -> None:
        super().on_start()
        self.jwt = self.mint("puller", "civil-affairs", 2, "benefit-eligibility")[1]
        self.page = 0

    @task
    def pull(self) -> None:
        dataset = DATASETS["population"]
        self.page = self.page % max(1, SIZES["population"] // 50) + 1
        self._get(
            f"{dataset.prefix}?page={self.page}&size=50",
            self.jwt,
            "puller: persons page",
            ok=(200, 403, *STOPPED),
        )


# -- grants for the exporters ------------------------------------------------------------------


def _admin(method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    soc = mint_token(_identity, sub=f"lt-{RUN}-soc", dept="soc", clearance=4, roles=("soc",))
    request = urllib.request.Request(
        ADMIN_URL + path,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Authorization": f"Bearer {soc}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"{}")


@events.test_start.add_listener
def _add_grants(environment: Environment, **_: Any) -> None:
    if not ADMIN_URL or isinstance(environment.runner, WorkerRunner) or grant_ids:
        return
    for dept, dataset in (
        ("public-security", "population"),
        ("human-resources", "social-security"),
    ):
        body = {
            "department": dept,
            "dataset": dataset,
            "actions": ["export"],
            "purpose": EXPORT_PURPOSE,
            "reason": f"locust load test run {RUN}",
            "duration": 3600,
        }
        grant_ids.append(_admin("POST", "/grants", body)["grant"]["id"])


# -- checks ------------------------------------------------------------------------------------


def _merge(report: dict[str, Any]) -> None:
    for key, count in report["statuses"]:
        statuses[(key[0], key[1])] += count
    scrapers.update(report["scrapers"])


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, MasterRunner):
        environment.runner.register_message("datagate_checks", lambda msg, **_: _merge(msg.data))


@events.test_stop.add_listener
def _report_to_master(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        environment.runner.send_message(
            "datagate_checks",
            {"statuses": [[list(k), v] for k, v in statuses.items()], "scrapers": scrapers},
        )


@events.quitting.add_listener
def _check(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return
    for grant_id in grant_ids:
        try:
            _admin("DELETE", f"/grants/{grant_id}")
        except OSError as exc:
            print(f"datagate-locust: could not revoke grant {grant_id}: {exc}")
    refused = sum(statuses[("analyst", s)] for s in STOPPED)
    stopped = sum(scrapers.values())
    by_kind: dict[str, Counter[int]] = {}
    for (kind, status), count in sorted(statuses.items()):
        by_kind.setdefault(kind, Counter())[status] = count
    for kind, counts in by_kind.items():
        shown = " ".join(f"{status}:{n}" for status, n in sorted(counts.items()))
        print(f"datagate-locust: {kind} statuses {shown}")
    problems = []
    if refused:
        problems.append(f"{refused} analyst requests refused with 423/429")
    if scrapers and not stopped:
        problems.append("no burst scraper was stopped")
    verdict = "FAIL: " + "; ".join(problems) if problems else "ok"
    print(
        f"datagate-locust: analysts_refused={refused} scrapers_stopped={stopped}/{len(scrapers)}"
        f" {verdict}"
    )
    if problems:
        environment.process_exit_code = 1
