"""Request metrics: counted in plain dicts, exposed in the Prometheus text format."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import LATENCY_BUCKETS, Metrics


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_requests_latency_and_upstream_errors_are_exposed() -> None:
    metrics = Metrics()
    observe = metrics.requests.observe
    observe("open", 200, "allow", 0.0004, None)
    observe("open", 200, "allow", 0.003, None)
    observe("open", 502, "allow", 0.02, "error")
    observe("-", 404, "deny", 0.001, None)
    got = samples(metrics)
    route = (("route", "open"),)
    assert got[("datagate_requests_total", (("decision", "allow"), *route, ("status", "200")))] == 2
    assert got[("datagate_requests_total", (("decision", "allow"), *route, ("status", "502")))] == 1
    assert got[
        ("datagate_requests_total", (("decision", "deny"), ("route", "-"), ("status", "404")))
    ]
    assert got[("datagate_upstream_errors_total", (("kind", "error"), *route))] == 1
    assert got[("datagate_request_latency_seconds_count", route)] == 3
    assert abs(got[("datagate_request_latency_seconds_sum", route)] - 0.0234) < 1e-9
    buckets = {
        float(dict(labels)["le"]): value
        for (name, labels), value in got.items()
        if name == "datagate_request_latency_seconds_bucket" and ("route", "open") in labels
    }
    assert sorted(buckets) == [*LATENCY_BUCKETS, float("inf")]
    # Cumulative: le=0.0005 holds one, le=0.005 two, le=0.025 and above all three.
    assert (buckets[0.0005], buckets[0.002], buckets[0.005], buckets[0.025]) == (1, 1, 2, 3)
    assert buckets[float("inf")] == 3


def test_an_observation_on_a_bucket_bound_counts_in_that_bucket() -> None:
    metrics = Metrics()
    metrics.requests.observe("open", 200, "allow", 0.001, None)
    got = samples(metrics)
    key = (("le", "0.001"), ("route", "open"))
    assert got[("datagate_request_latency_seconds_bucket", key)] == 1
    assert (
        got[("datagate_request_latency_seconds_bucket", (("le", "0.0005"), ("route", "open")))] == 0
    )
