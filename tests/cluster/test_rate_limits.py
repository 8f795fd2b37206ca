"""Hard rate limits are atomic across processes: two gateways on one Redis prefix, a limit of
N per window, and at most N requests allowed whichever process answers."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.cluster.conftest import Cluster, run_cluster

LIMIT = 40
REQUESTS = 120


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    upstream_url: str,
    redis_url: str,
    cluster_prefix: str,
) -> Iterator[Cluster]:
    settings: dict[str, Any] = {
        "limits": {"per_principal": {"requests": LIMIT, "window": 60}},
        # Only the limiter may refuse here: a burst detection would answer 423 instead.
        "detection": {"high_frequency": {"enabled": False}},
    }
    with run_cluster(
        tmp_path_factory.mktemp("rate"),
        upstream_url=upstream_url,
        redis_url=redis_url,
        prefix=cluster_prefix,
        overrides=[settings, settings],
    ) as running:
        yield running


async def test_two_processes_together_allow_at_most_the_limit(cluster: Cluster) -> None:
    headers = cluster.auth("rl-user")
    urls = [gw.data_url for gw in cluster.gateways]

    async def one(session: aiohttp.ClientSession, i: int) -> tuple[int, int, str | None, Any]:
        url = urls[i % 2] + "/api/enterprise/companies?size=1"
        async with session.get(url, headers=headers) as resp:
            return i % 2, resp.status, resp.headers.get("Retry-After"), await resp.json()

    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        results = await asyncio.gather(*(one(session, i) for i in range(REQUESTS)))

    by_status = Counter(status for _, status, _, _ in results)
    by_process = Counter((gw, status) for gw, status, _, _ in results)
    print(f"\nrate limit {LIMIT}/60 s, {REQUESTS} requests: {dict(by_status)}, {dict(by_process)}")
    assert 0 < by_status[200] <= LIMIT
    assert by_status[200] + by_status[429] == REQUESTS, dict(by_status)
    for _, status, retry_after, body in results:
        if status == 429:
            assert body["error"] == "rate_limited"
            assert retry_after is not None and 1 <= int(retry_after) <= 60
