"""`datagate run --workers 2`: every scrape of /metrics, whichever worker answers it, counts
the requests of both workers; per-process metrics are labelled by worker; the Grafana
dashboard queries only metrics a real scrape has."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import load_config
from gateway.identity.mint import mint_token
from tests.cluster.conftest import REPO, base_config, start_process, stop_process, wait_for_workers

WORKERS = 2
REQUESTS = 40
SCRAPES = 8
DASHBOARD = REPO / "deploy" / "grafana" / "datagate.json"


SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}


def parse(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """sample name -> labels -> value; a family without samples yet (no upstream error so
    far) is there with its sample names and no values."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for suffix in SUFFIXES.get(family.type, ("",)):
            out.setdefault(family.name + suffix, {})
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def dashboard_metrics() -> set[str]:
    """Every metric name the dashboard's queries use."""
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", ())]
    assert exprs, "the dashboard has queries"
    return {n for e in exprs for n in re.findall(r"\b((?:datagate|process)_[a-z_]+)\b", e)}


async def test_one_scrape_counts_every_workers_requests(
    tmp_path: Path, upstream_url: str, redis_url: str, redis_prefix: str
) -> None:
    config = base_config(
        upstream_url=upstream_url,
        redis_url=redis_url,
        prefix=redis_prefix,
        policies=REPO / "policies",
        data_dir=tmp_path / "data",
    )
    config_path = tmp_path / "gateway.yaml"
    config_path.write_text(yaml.safe_dump(config))
    port, admin_port = config["server"]["port"], config["admin"]["port"]
    log = tmp_path / "datagate.log"
    proc, log_file = start_process("workers", config_path, log, ("--workers", str(WORKERS)))
    try:
        wait_for_workers(proc, (port, admin_port), log, WORKERS)
        identity = load_config(config_path, environ={}).identity
        token = mint_token(identity, sub="alice", dept="market-regulation", clearance=1)
        headers = {"Authorization": f"Bearer {token}"}
        url = f"http://127.0.0.1:{port}/api/enterprise/companies?size=1"
        # A new connection per request and per scrape, so the kernel spreads them.
        connector = aiohttp.TCPConnector(force_close=True)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            for _ in range(REQUESTS):
                async with session.get(url, headers=headers) as resp:
                    assert resp.status == 200
            scrapes, took = [], []
            for _ in range(SCRAPES):
                started = time.perf_counter()
                async with session.get(f"http://127.0.0.1:{admin_port}/metrics") as resp:
                    assert resp.status == 200, await resp.text()
                    text = await resp.text()
                took.append(time.perf_counter() - started)
                scrapes.append(parse(text))
    finally:
        code = stop_process(proc, log_file)
    assert code == 0, log.read_text()[-4000:]

    for got in scrapes:
        requests = got["datagate_requests_total"]
        assert sum(requests.values()) == REQUESTS, requests
        latency = got["datagate_request_latency_seconds_count"]
        assert sum(latency.values()) == REQUESTS
        workers = {dict(labels)["worker"] for labels in got["process_cpu_seconds_total"]}
        assert workers == {"0", "1"}, "each worker's own CPU, labelled"
        assert list(got["datagate_build_info"].values()) == [1.0]
        assert got["datagate_audit_healthy"][()] == 1.0
        open_breakers = got["datagate_breakers_open"]
        assert len(open_breakers) == 12 and sum(open_breakers.values()) == 0
        assert ("status", "new") in {kv for labels in got["datagate_incidents"] for kv in labels}
    # Each worker answered requests (else the sum would prove nothing): per-worker audit logs.
    audit = load_config(config_path, environ={}).audit.path
    per_worker = [
        audit.with_name(f"{audit.stem}.w{w}{audit.suffix}").read_bytes().count(b'"request_id"')
        for w in range(WORKERS)
    ]
    assert all(n > 0 for n in per_worker), per_worker

    took.sort()
    print(
        f"\n{WORKERS}-worker scrape: median {took[len(took) // 2] * 1000:.1f} ms, {len(text)} bytes"
    )
    names = set().union(*(set(s) for s in scrapes))
    missing = sorted(dashboard_metrics() - names)
    assert missing == [], f"the dashboard queries metrics no scrape has: {missing}"
