"""Metrics: requests counted in plain dicts, workers' metrics merged into one sum, the
gateway's state as gauges, and the shipped alerting rules checked by promtool."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import LATENCY_BUCKETS, Metrics, PeerUnavailable, merge
from tests.gateway.conftest import CATALOG, REPO, gateway_config, running_gateway


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


def test_workers_metrics_merge_into_one_sum() -> None:
    """Counters and histograms add up; a gauge combines as its rule says; per-process
    families are labelled by worker instead of added."""
    workers = [Metrics(0), Metrics(1)]
    workers[0].requests.observe("open", 200, "allow", 0.001, None)
    for _ in range(2):
        workers[1].requests.observe("open", 200, "allow", 0.003, "timeout")
    workers[1].config_reloads.labels("rejected").inc()
    workers[0].audit_healthy.set(1)
    workers[1].audit_healthy.set(0)
    texts = [(i, generate_latest(m.registry).decode()) for i, m in enumerate(workers)]
    got = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(merge(texts).decode())
        for s in family.samples
    }
    route = (("route", "open"),)
    assert got[("datagate_requests_total", (("decision", "allow"), *route, ("status", "200")))] == 3
    assert got[("datagate_request_latency_seconds_count", route)] == 3
    assert got[("datagate_request_latency_seconds_bucket", (("le", "0.002"), *route))] == 1
    assert got[("datagate_upstream_errors_total", (("kind", "timeout"), *route))] == 2
    assert got[("datagate_config_reloads_total", (("result", "rejected"),))] == 1
    assert got[("datagate_audit_healthy", ())] == 0, "one worker that cannot write is enough"
    cpu = {labels for name, labels in got if name == "process_cpu_seconds_total"}
    assert cpu == {(("worker", "0"),), (("worker", "1"),)}
    created = [v for (name, _), v in got.items() if name == "datagate_config_reloads_created"]
    assert created and all(v <= time.time() for v in created), "start times are not added up"


RULES = REPO / "deploy" / "prometheus" / "datagate-rules.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not installed (Debian package prometheus; .ci/run installs it)",
)


@needs_promtool
def test_alerting_rules_pass_promtool_check() -> None:
    done = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@needs_promtool
def test_alerting_rules_unit_tests_pass_promtool_test() -> None:
    tests = RULES.with_name("datagate-rules.test.yml")
    done = subprocess.run([PROMTOOL, "test", "rules", str(tests)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_promtool_refuses_a_broken_rule(tmp_path: Path) -> None:
    """The check above can fail: a rule with a bad expression does not pass."""
    broken = tmp_path / "broken.yml"
    broken.write_text(RULES.read_text().replace("== 0", "== == 0", 1))
    done = subprocess.run([PROMTOOL, "check", "rules", str(broken)], capture_output=True, text=True)
    assert done.returncode != 0


async def test_a_real_gateway_scrape_reports_breakers_incidents_and_reloads(
    tmp_path: Path,
) -> None:
    config = gateway_config(
        tmp_path,
        {"up": "http://127.0.0.1:9", "dead": "http://127.0.0.1:9"},
        CATALOG,
        "p, user:alice, open, read, allow\n",
        detection={"high_frequency": {"per_minute": 5}, "off_hours": {"enabled": False}},
    )
    async with running_gateway(config) as gw:
        statuses = [(await gw.get(f"/api/open/{n}")).status for n in range(8)]
        assert 423 in statuses, statuses
        await gw.gateway.reload(tmp_path / "missing.yaml")  # a rejected config reload
        async with gw.session.get(gw.admin_url + "/metrics") as resp:
            assert resp.status == 200
            text = await resp.text()
    got = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert got[("datagate_breakers_open", (("scope", "principal"), ("state", "open")))] == 1
    assert got[("datagate_incidents", (("severity", "4"), ("status", "new")))] == 1
    assert got[("datagate_incidents_overdue", ())] == 0
    assert got[("datagate_config_reloads_total", (("result", "rejected"),))] == 1
    assert got[("datagate_audit_write_failures_total", ())] == 0
    assert got[("datagate_incident_sink_failures_total", (("sink", "file"),))] == 0
    version = gw.gateway.policy.current.version
    assert ("datagate_policy_loaded_timestamp_seconds", (("version", version),)) in got
    assert got[("process_open_fds", ())] > 0, "a single process has no worker label"
    # Every metric the alerting rules use is one the gateway exposes.
    names = {name for name, _ in got} | {
        f.name + "_total" for f in text_string_to_metric_families(text) if f.type == "counter"
    }
    used = set(re.findall(r"\b(datagate_[a-z_]+)\b", RULES.read_text()))
    assert used - names == set(), "rules use metrics the gateway does not expose"


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (web.Response(status=500, text="oops"), "answered 500"),
        (web.Response(body=b"\xff\xfe not text"), "not UTF-8"),
        (web.Response(text="this is { not prometheus\n"), "cannot be read"),
    ],
    ids=["status", "not-utf8", "not-exposition"],
)
async def test_a_misbehaving_peer_fails_the_scrape_clearly(
    tmp_path: Path, answer: web.Response, problem: str
) -> None:
    """A worker that answers wrongly makes the scrape a 503 (PeerUnavailable), never a
    partial sum or a crash; a stray file in the folder is not taken for a worker."""
    (tmp_path / "worker-abc.sock").write_text("")

    async def metrics_of_peer(_: web.Request) -> web.Response:
        return answer

    app = web.Application()
    app.router.add_get("/metrics", metrics_of_peer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.UnixSite(runner, str(tmp_path / "worker-1.sock")).start()
    mine = Metrics(0, peers=tmp_path)
    try:
        with pytest.raises(PeerUnavailable) as failed:
            await mine.exposition()
        assert problem in str(failed.value)
    finally:
        await runner.cleanup()
