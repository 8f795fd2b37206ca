"""Prometheus metrics for the gateway, kept in one registry per app so tests stay isolated."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "datagate_requests_total",
            "Requests answered, by dataset route, status and decision.",
            ["route", "status", "decision"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "datagate_request_latency_seconds",
            "Time from arrival to the last byte of the response.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            "datagate_upstream_errors_total",
            "Upstream failures, by dataset route and kind (error, timeout).",
            ["route", "kind"],
            registry=self.registry,
        )
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
