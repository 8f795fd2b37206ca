"""Prometheus metrics for the gateway, kept in one registry per app so tests stay isolated."""

from __future__ import annotations

import bisect
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


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


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = RequestMetrics()
        self.registry.register(self.requests)
        self.policy_info = Gauge(
            "datagate_policy_loaded_timestamp_seconds",
            "When the policy in force was loaded, labelled with its version.",
            ["version"],
            registry=self.registry,
        )
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
