"""Redis Sentinel failover under load (issue 16): two gateway processes on a master, a replica
and three Sentinels; the master is killed while requests keep coming. Classified routes fail
closed only while Sentinel promotes the replica, then serve again, and nothing written before
the kill is lost: the open breaker, the grant, the token revocation, the incident, the rate
limit's count."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections import Counter
from pathlib import Path

import aiohttp
import orjson
import pytest

from gateway.identity.revocation import REVOKED_HASH
from gateway.state import RedisBackend
from loadtests.topologies import SentinelTopology
from tests.cluster.conftest import Cluster, run_cluster

ACCOUNTS = "/api/social-security/accounts?size=5"  # level 3: a classified route
STEADY = 20  # principals sharing the steady stream, so none of them looks like a burst
LIMIT = 60  # the rate-limited principal's requests per window
BEFORE = 40  # of which it sends this many before the kill
# How long the failover may take before the test fails: Sentinel's down-after (1 s), its
# election and promotion, and the gateways' reconnects. A hang guard; the time measured is
# printed and asserted against this bound.
FAILOVER_BOUND = 20.0


async def _status(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> int:
    try:
        async with session.get(url, headers=headers) as resp:
            await resp.read()
            return resp.status
    except (aiohttp.ClientError, TimeoutError):
        return -1  # no answer at all: counted, and asserted never to happen


async def test_killing_the_master_under_load_loses_nothing_and_serves_again(
    tmp_path: Path, own_sentinel: SentinelTopology, upstream_url: str
) -> None:
    prefix = f"datagate-test:failover:{uuid.uuid4().hex}:"
    state = {"state": {"url": own_sentinel.url, "wait_replicas": 1, "wait_timeout": 0.5}}
    limits = {"limits": {"per_principal": {"requests": LIMIT, "window": 3600}}}
    breaker = {"breaker": {"reload_interval": 0.5, "stale_after": 3.0}}
    # Revocations are read back from the store every second here (30 s by default).
    identity = {"identity": {"revocation_reload": 1.0}}
    # The steady stream is a script's, from one address: a rate rule would only add noise.
    detection = {"detection": {"high_frequency": {"enabled": False}}}
    extra = {**state, **limits, **breaker, **identity, **detection}
    with run_cluster(
        tmp_path / "gateways",
        upstream_url=upstream_url,
        redis_url=own_sentinel.url,
        prefix=prefix,
        overrides=[extra, extra],
    ) as cluster:
        await _run(cluster, own_sentinel, prefix)


async def _run(cluster: Cluster, topology: SentinelTopology, prefix: str) -> None:
    gw0, gw1 = cluster.gateways
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        # Before the kill: a breaker, a grant, a revocation, an incident and a count.
        async with session.post(
            gw0.admin_url + "/breakers",
            json={"scope": "principal", "key": "mallory", "note": "failover test"},
            headers=cluster.soc(),
        ) as resp:
            assert resp.status == 201, await resp.text()
        grant = {
            "principal": "he",
            "dataset": "social-security",
            "actions": ["read", "list"],
            "purpose": "tax-audit",
            "duration": 3600,
            "reason": "failover test",
        }
        async with session.post(gw1.admin_url + "/grants", json=grant, headers=cluster.soc()) as r:
            assert r.status == 201, await r.text()
        auditor = cluster.auth("he", dept="tax", clearance=2, purpose="tax-audit")
        revoked_token = cluster.token("eve", dept="human-resources", clearance=3)
        revoked = {"Authorization": f"Bearer {revoked_token}"}
        jti = _claims(revoked_token)["jti"]
        writer = RedisBackend(topology.url, prefix, timeout=2.0, wait_replicas=1)
        await writer.start()
        try:
            await writer.hset(REVOKED_HASH, jti, repr(time.time() + 3600).encode())
        finally:
            await writer.close()
        mallory = cluster.auth("mallory", dept="human-resources", clearance=3)
        counted = cluster.auth("counted", dept="human-resources", clearance=3)
        for n in range(BEFORE):
            gw = cluster.gateways[n % 2]
            assert await _status(session, gw.data_url + ACCOUNTS, counted) == 200

        async def settled() -> bool:
            return (
                await _status(session, gw0.data_url + ACCOUNTS, mallory) == 423
                and await _status(session, gw1.data_url + ACCOUNTS, auditor) == 200
                and await _status(session, gw0.data_url + ACCOUNTS, revoked) == 401
            )

        await _poll(settled, "the breaker, grant and revocation seen before the kill")
        async with session.get(gw0.admin_url + "/incidents", headers=cluster.soc()) as resp:
            before_incidents = {i["id"] for i in (await resp.json())["incidents"]}

        # The steady stream over both processes, then the kill.
        answers: list[tuple[float, int]] = []
        stop = asyncio.Event()

        async def steady() -> None:
            n = 0
            while not stop.is_set():
                headers = cluster.auth(f"steady-{n % STEADY}", dept="human-resources", clearance=3)
                gw = cluster.gateways[n % 2]
                answers.append(
                    (time.monotonic(), await _status(session, gw.data_url + ACCOUNTS, headers))
                )
                n += 1
                await asyncio.sleep(0.02)

        load = asyncio.create_task(steady())
        await asyncio.sleep(1.0)
        old_master = topology.master_port()
        killed_at = time.monotonic()
        topology.master.kill()

        async def promoted_and_serving() -> bool:
            recent = [s for t, s in answers if t > time.monotonic() - 0.5]
            return (
                topology.master_port() != old_master and len(recent) >= 4 and set(recent) == {200}
            )

        await _poll(
            promoted_and_serving, "a new master and the stream served again", FAILOVER_BOUND
        )
        recovered_in = time.monotonic() - killed_at
        await asyncio.sleep(1.0)
        stop.set()
        await load

    statuses = [s for _, s in answers]
    refused = [t - killed_at for t, s in answers if s != 200]
    print(
        f"\nfailover: master {old_master} -> {topology.master_port()}; serving again "
        f"{recovered_in:.1f} s after the kill; answers {dict(sorted(Counter(statuses).items()))}; "
        f"refusals from {min(refused, default=0):.1f} s to {max(refused, default=0):.1f} s"
    )
    assert set(statuses) <= {200, 503}, "during a failover classified routes fail closed: 503"
    assert all(0 <= t <= recovered_in for t in refused), "503 only while failing over"
    assert recovered_in < FAILOVER_BOUND

    # After: nothing written before the kill is lost.
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for gw in (gw0, gw1):
            assert await _status(session, gw.data_url + ACCOUNTS, mallory) == 423
            assert await _status(session, gw.data_url + ACCOUNTS, auditor) == 200
            assert await _status(session, gw.data_url + ACCOUNTS, revoked) == 401
        async with session.get(gw1.admin_url + "/incidents", headers=cluster.soc()) as resp:
            after_incidents = {i["id"] for i in (await resp.json())["incidents"]}
        assert before_incidents <= after_incidents
        # The rate limit's count survived: only LIMIT - BEFORE more requests pass.
        passed = 0
        for n in range(LIMIT):
            status = await _status(session, cluster.gateways[n % 2].data_url + ACCOUNTS, counted)
            if status != 200:
                assert status == 429
                break
            passed += 1
        assert passed == LIMIT - BEFORE, f"{passed} passed after the failover"


def _claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    return dict(orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


async def _poll(check: object, what: str, patience: float = 10.0) -> None:
    deadline = time.monotonic() + patience
    while not await check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {patience:.0f} s")
        await asyncio.sleep(0.05)
