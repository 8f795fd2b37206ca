"""Prometheus metrics for the gateway, kept in one registry per app so tests stay isolated;
with `--workers N`, a scrape of any worker returns the sum over all of them."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import platform
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.parser import text_string_to_metric_families

from gateway.errors import StateUnavailable
from gateway.incidents import model
from gateway.logs import get_logger

if TYPE_CHECKING:
    from gateway.audit.writer import AuditWriter
    from gateway.breaker.store import Breakers
    from gateway.incidents.service import Incidents

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BREAKER_SCOPES = ("principal", "department", "dataset", "pair")
BREAKER_STATES = ("open", "half_open", "forced_open")
SEVERITIES = ("1", "2", "3", "4", "5")
STATUSES = ("new", "acknowledged", "resolved")
# How the workers' values of one gauge combine (counters and histograms add up).
GAUGE_MERGE: dict[str, Callable[[Iterable[float]], float]] = {
    "datagate_audit_healthy": min,  # one worker that cannot write is a problem
    "datagate_policy_loaded_timestamp_seconds": max,
    "datagate_build_info": max,
}
# Families about one process (CPU, memory, file descriptors): labelled by worker, not added.
PER_PROCESS = ("process_", "python_")
PEER_TIMEOUT = 2.0
PEER_MAX_BYTES = 16 * 1024 * 1024  # a worker's metrics text is kilobytes; more is a fault

log = get_logger("datagate.metrics")


class PeerUnavailable(Exception):
    """A live worker did not answer for its metrics: a partial sum would read as a counter
    reset, so the scrape fails instead."""


class RequestMetrics:
    """Requests, latency and upstream failures per dataset route.

    Counted in plain dicts on the request path (a few dict operations per request; the
    client library's labelled children cost several microseconds each) and turned into
    Prometheus families only when `/metrics` is scraped."""

    def __init__(self) -> None:
        self._requests: dict[tuple[str, str, str], int] = {}
        # route -> [count per bucket (the last is +Inf), sum of seconds]
        self._latency: dict[str, tuple[list[int], list[float]]] = {}
        self._upstream_errors: dict[tuple[str, str], int] = {}

    def observe(
        self, route: str, status: int, decision: str, seconds: float, failure: str | None
    ) -> None:
        key = (route, str(status), decision)
        requests = self._requests
        requests[key] = requests.get(key, 0) + 1
        entry = self._latency.get(route)
        if entry is None:
            entry = self._latency[route] = ([0] * (len(LATENCY_BUCKETS) + 1), [0.0])
        entry[0][bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        entry[1][0] += seconds
        if failure:
            errors = self._upstream_errors
            errors[(route, failure)] = errors.get((route, failure), 0) + 1

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "datagate_requests",
            "Requests answered, by dataset route, status and decision.",
            labels=["route", "status", "decision"],
        )
        for labels, count in sorted(self._requests.items()):
            requests.add_metric(list(labels), count)
        yield requests
        latency = HistogramMetricFamily(
            "datagate_request_latency_seconds",
            "Time from arrival to the last byte of the response.",
            labels=["route"],
        )
        bounds = [*(repr(float(b)) for b in LATENCY_BUCKETS), "+Inf"]
        for route, (counts, total) in sorted(self._latency.items()):
            cumulative, running = [], 0
            for bound, count in zip(bounds, counts, strict=True):
                running += count
                cumulative.append((bound, running))
            latency.add_metric([route], cumulative, total[0])
        yield latency
        errors = CounterMetricFamily(
            "datagate_upstream_errors",
            "Upstream failures, by dataset route and kind (error, timeout).",
            labels=["route", "kind"],
        )
        for labels, count in sorted(self._upstream_errors.items()):
            errors.add_metric(list(labels), count)
        yield errors


class ProcessState:
    """What this process's audit writer and incident sinks report, read at scrape time."""

    def __init__(self, audit: AuditWriter | None, incidents: Incidents) -> None:
        self.audit = audit
        self.incidents = incidents

    def collect(self) -> Iterator[Metric]:
        failures = CounterMetricFamily(
            "datagate_audit_write_failures",
            "Audit writes the disk refused (the records are kept and written again).",
        )
        failures.add_metric([], self.audit.failures if self.audit is not None else 0)
        yield failures
        sink_failures = CounterMetricFamily(
            "datagate_incident_sink_failures",
            "Failed deliveries to an incident sink (retried; nothing is dropped).",
            labels=["sink"],
        )
        backlog = GaugeMetricFamily(
            "datagate_incident_sink_backlog",
            "Incidents queued for a sink, not yet delivered.",
            labels=["sink"],
        )
        for sink in self.incidents.sinks.sinks:
            sink_failures.add_metric([sink.name], getattr(sink, "failures", 0))
            backlog.add_metric([sink.name], sink.backlog)
        yield sink_failures
        yield backlog


class SharedState:
    """Breakers and incidents, which every process shares: reported once per scrape by the
    process that answers it. Incident counts are read from the store just before."""

    def __init__(self, breakers: Breakers, incidents: Incidents) -> None:
        self.breakers = breakers
        self.incidents = incidents
        self._counts: dict[tuple[str, str], int] | None = None
        self._overdue = 0

    async def refresh(self) -> None:
        try:
            found = await self.incidents.search()
        except StateUnavailable as exc:
            log.warning("metrics_incidents_unavailable", error=str(exc))
            self._counts = None  # absent, not zero: the alert rules tell them apart
            return
        now = time.time()
        counts = {(s, st): 0 for s in SEVERITIES for st in STATUSES}
        overdue = 0
        for incident in found:
            state = model.state_of(incident)
            key = (str(incident["severity_id"]), state)
            counts[key] = counts.get(key, 0) + 1
            overdue += state == "new" and now >= model.sla_of(incident)["due_ts"]
        self._counts, self._overdue = counts, overdue

    def collect(self) -> Iterator[Metric]:
        breakers = GaugeMetricFamily(
            "datagate_breakers_open",
            "Breakers not closed, by scope and state (suspended sharing).",
            labels=["scope", "state"],
        )
        counted = {(s, st): 0 for s in BREAKER_SCOPES for st in BREAKER_STATES}
        for state in self.breakers.active.values():
            key = (state.scope, state.state)
            counted[key] = counted.get(key, 0) + 1
        for (scope, st), n in sorted(counted.items()):
            breakers.add_metric([scope, st], n)
        yield breakers
        if self._counts is None:
            return
        incidents = GaugeMetricFamily(
            "datagate_incidents",
            "Incidents in the store, by severity (1..5) and workflow status.",
            labels=["severity", "status"],
        )
        for (severity, status), n in sorted(self._counts.items()):
            incidents.add_metric([severity, status], n)
        yield incidents
        yield GaugeMetricFamily(
            "datagate_incidents_overdue",
            "Incidents still new past their handling deadline (sla.due_at).",
            value=self._overdue,
        )


class Metrics:
    """This process's metrics (`registry`) plus the shared state's (`shared`).

    With `peers` (a folder the `--workers` supervisor made), each worker also serves its own
    registry on a Unix socket there, and a scrape of any worker fetches the others' and adds
    them up: the request path keeps counting in plain dicts, the cost is paid per scrape."""

    def __init__(self, worker: int | None = None, peers: Path | None = None) -> None:
        self.worker = worker
        self.peers = peers
        self.registry = CollectorRegistry()
        self.shared = CollectorRegistry()
        self.requests = RequestMetrics()
        self.registry.register(self.requests)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.build_info = Gauge(
            "datagate_build_info",
            "Always 1; the running DataGate version and Python version as labels.",
            ["version", "python"],
            registry=self.registry,
        )
        self.build_info.labels(model.PRODUCT["version"], platform.python_version()).set(1)
        self.policy_info = Gauge(
            "datagate_policy_loaded_timestamp_seconds",
            "When the policy in force was loaded, labelled with its version.",
            ["version"],
            registry=self.registry,
        )
        self.policy_source = Gauge(
            "datagate_policy_source_info",
            "The policy in force: its version and source (files, store); the value is the "
            "store's activation sequence (0 for files).",
            ["version", "source"],
            registry=self.registry,
        )
        self.policy_reloads = Counter(
            "datagate_policy_reloads",
            "Policy reloads, by result (loaded, rejected: the last good policy stays).",
            ["result"],
            registry=self.registry,
        )
        self.config_reloads = Counter(
            "datagate_config_reloads",
            "Config reloads (SIGHUP), by result (loaded, rejected: the running config stays).",
            ["result"],
            registry=self.registry,
        )
        for result in ("loaded", "rejected"):
            self.policy_reloads.labels(result)
            self.config_reloads.labels(result)
        self.audit_healthy = Gauge(
            "datagate_audit_healthy",
            "1 while the audit log is being written, 0 while its disk refuses writes (classified "
            "routes then answer 503).",
            registry=self.registry,
        )
        self.audit_backlog = Gauge(
            "datagate_audit_backlog_records",
            "Audit records held in memory, not yet on disk.",
            registry=self.registry,
        )
        self._state: SharedState | None = None
        self._runner: web.AppRunner | None = None

    def watch(self, *, audit: AuditWriter | None, breakers: Breakers, incidents: Incidents) -> None:
        """Report on these parts of the gateway."""
        if audit is not None:
            self.audit_healthy.set_function(lambda: 1.0 if audit.healthy else 0.0)
            self.audit_backlog.set_function(lambda: float(audit.backlog))
        self.registry.register(ProcessState(audit, incidents))
        self._state = SharedState(breakers, incidents)
        self.shared.register(self._state)

    # ---- the scrape ----------------------------------------------------------------------

    async def exposition(self) -> bytes:
        """The text a scrape gets: every worker's metrics added up, then the shared state.
        Raises PeerUnavailable if a live worker does not answer."""
        if self._state is not None:
            await self._state.refresh()
        own = generate_latest(self.registry)
        if self.peers is not None:
            texts = [(self.worker or 0, own.decode()), *await self._peer_texts()]
            try:
                own = merge(texts)
            except ValueError as exc:  # a peer's text that is not Prometheus exposition
                raise PeerUnavailable(f"a worker's metrics cannot be read: {exc}") from None
        return own + generate_latest(self.shared)

    async def _peer_texts(self) -> list[tuple[int, str]]:
        assert self.peers is not None
        mine = self._socket()
        # Only worker-N.sock: any other file in the folder is not a peer.
        sockets = [
            p
            for p in sorted(self.peers.glob("worker-*.sock"))
            if p != mine and p.stem.removeprefix("worker-").isdigit()
        ]
        return [t for t in await asyncio.gather(*map(_fetch, sockets)) if t is not None]

    # ---- serving this worker's metrics to the others ----------------------------------------

    def _socket(self) -> Path:
        assert self.peers is not None
        return self.peers / f"worker-{self.worker or 0}.sock"

    async def start(self) -> None:
        if self.peers is None:
            return

        async def own(_: web.Request) -> web.Response:
            return web.Response(body=generate_latest(self.registry))

        app = web.Application()
        app.router.add_get("/metrics", own)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        path = self._socket()
        path.unlink(missing_ok=True)  # left by a worker that was killed
        await web.UnixSite(self._runner, str(path)).start()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            with contextlib.suppress(OSError):
                self._socket().unlink()


async def _fetch(path: Path) -> tuple[int, str] | None:
    """(worker, its metrics text); None if the worker is gone (its socket refuses)."""
    worker = int(path.stem.removeprefix("worker-"))
    timeout = aiohttp.ClientTimeout(total=PEER_TIMEOUT)
    try:
        async with (
            aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=str(path)), timeout=timeout
            ) as session,
            session.get("http://worker/metrics") as resp,
        ):
            if resp.status != 200:
                raise PeerUnavailable(f"worker {worker}: answered {resp.status}")
            body = await resp.content.read(PEER_MAX_BYTES + 1)
            if len(body) > PEER_MAX_BYTES:
                raise PeerUnavailable(f"worker {worker}: metrics over {PEER_MAX_BYTES} bytes")
            return worker, body.decode()
    except UnicodeDecodeError:
        raise PeerUnavailable(f"worker {worker}: metrics that are not UTF-8") from None
    except (ConnectionRefusedError, FileNotFoundError):
        return None
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, ConnectionRefusedError | FileNotFoundError):
            return None
        raise PeerUnavailable(f"worker {worker}: {exc}") from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise PeerUnavailable(f"worker {worker}: {exc or type(exc).__name__}") from None


def merge(texts: list[tuple[int, str]]) -> bytes:
    """Several workers' exposition texts as one: counters and histograms added up, gauges
    combined as GAUGE_MERGE says (summed otherwise), per-process families labelled by worker."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], list[float]]] = {}
    for worker, text in sorted(texts):
        for family in text_string_to_metric_families(text):
            per_process = family.name.startswith(PER_PROCESS)
            families.setdefault(family.name, family)
            samples = values.setdefault(family.name, {})
            for s in family.samples:
                labels = {**s.labels, "worker": str(worker)} if per_process else s.labels
                samples.setdefault((s.name, tuple(sorted(labels.items()))), []).append(s.value)
    out = []
    for name, first in families.items():
        family = Metric(name, first.documentation, first.type, first.unit)
        combine: Callable[[Iterable[float]], float] = sum
        if name.endswith("_created"):  # when a counter started: the first worker's
            combine = min
        elif first.type == "gauge":
            combine = GAUGE_MERGE.get(name, sum)
        for (sample, labels), found in values[name].items():
            family.add_sample(sample, dict(labels), combine(found))
        out.append(family)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(out))
    return generate_latest(registry)


class _Fixed:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families
