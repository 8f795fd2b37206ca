"""What one gateway process decides reaches the other through Redis: a detection's breaker,
a policy reload, a grant and its revocation (issue 7, "Cluster test")."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import pytest

from tests.cluster.conftest import Cluster, run_cluster

PER_MINUTE = 15  # the burst detection's threshold on the detecting process
POLL_TIMEOUT = 5.0  # bound of every polling loop; what they measure is asserted separately
ENTERPRISE = "/api/enterprise/companies?size=1"
ACCOUNTS = "/api/social-security/accounts?size=5"


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    upstream_url: str,
    redis_url: str,
    cluster_prefix: str,
) -> Iterator[Cluster]:
    # gw1 never detects a burst itself, so a 423 there can only come from gw0's breaker.
    detecting = {"detection": {"high_frequency": {"per_minute": PER_MINUTE}}}
    watching = {"detection": {"high_frequency": {"per_minute": 100_000}}}
    with run_cluster(
        tmp_path_factory.mktemp("propagation"),
        upstream_url=upstream_url,
        redis_url=redis_url,
        prefix=cluster_prefix,
        overrides=[detecting, watching],
    ) as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as client:
        yield client


async def status_of(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> tuple[int, Any]:
    async with session.get(url, headers=headers) as resp:
        return resp.status, await resp.json()


async def poll_until(
    check: Callable[[], Awaitable[bool]],
    since: float | None = None,
    timeout: float = POLL_TIMEOUT,
    every: float = 0.02,
) -> float:
    """Seconds from `since` (default: now) until `check()` first holds; fails if it does not
    within `timeout`."""
    start = time.monotonic() if since is None else since
    while not await check():
        if time.monotonic() - start > timeout:
            pytest.fail(f"condition not met within {timeout} s")
        await asyncio.sleep(every)
    return time.monotonic() - start


async def test_a_detection_in_one_process_suspends_the_principal_in_the_other(
    cluster: Cluster, session: aiohttp.ClientSession
) -> None:
    gw0, gw1 = cluster.gateways
    headers = cluster.auth("burst-user")
    assert (await status_of(session, gw1.data_url + ENTERPRISE, headers))[0] == 200
    for _ in range(3 * PER_MINUTE):
        status, body = await status_of(session, gw0.data_url + ENTERPRISE, headers)
        if status != 200:
            break
    assert status == 423, body
    assert body["error"] == "sharing_suspended" and body.get("incident_id")

    async def suspended_on_gw1() -> bool:
        return (await status_of(session, gw1.data_url + ENTERPRISE, headers))[0] == 423

    delay = await poll_until(suspended_on_gw1)
    print(f"\nbreaker propagation gw0 -> gw1: {delay * 1000:.0f} ms")
    assert delay <= 1.0
    status, body = await status_of(session, gw1.data_url + ENTERPRISE, headers)
    assert status == 423 and body["error"] == "sharing_suspended"


async def test_a_policy_reloaded_by_one_process_is_enforced_by_both(
    cluster: Cluster, session: aiohttp.ClientSession
) -> None:
    gw0, gw1 = cluster.gateways
    headers = cluster.auth("pat")
    for gw in (gw0, gw1):
        assert (await status_of(session, gw.data_url + ENTERPRISE, headers))[0] == 200
    policy = cluster.policies / "policy.csv"
    policy.write_text(policy.read_text() + "p, user:pat, enterprise, *, deny\n")
    async with session.post(gw0.admin_url + "/policy/reload", headers=cluster.soc()) as resp:
        assert resp.status == 200, await resp.text()
    status, body = await status_of(session, gw0.data_url + ENTERPRISE, headers)
    assert status == 403 and body["error"] == "forbidden", body

    async def denied_on_gw1() -> bool:
        return (await status_of(session, gw1.data_url + ENTERPRISE, headers))[0] == 403

    delay = await poll_until(denied_on_gw1)
    print(f"\npolicy reload gw0 -> gw1: {delay * 1000:.0f} ms")
    assert delay < 2.0
    # Someone else is not affected by the new row.
    other = cluster.auth("quinn")
    for gw in (gw0, gw1):
        assert (await status_of(session, gw.data_url + ENTERPRISE, other))[0] == 200


async def test_a_grant_added_on_one_works_on_the_other_and_its_revocation_on_both(
    cluster: Cluster, session: aiohttp.ClientSession
) -> None:
    gw0, gw1 = cluster.gateways
    auditor = cluster.auth("he", dept="tax", clearance=2, purpose="tax-audit")
    for gw in (gw0, gw1):
        assert (await status_of(session, gw.data_url + ACCOUNTS, auditor))[0] == 403
    grant = {
        "principal": "he",
        "dataset": "social-security",
        "actions": ["read", "list"],
        "purpose": "tax-audit",
        "duration": 600,
        "reason": "cluster test",
    }
    async with session.post(gw0.admin_url + "/grants", json=grant, headers=cluster.soc()) as resp:
        assert resp.status == 201, await resp.text()
        grant_id = (await resp.json())["grant"]["id"]

    async def allowed_on(url: str) -> bool:
        return (await status_of(session, url + ACCOUNTS, auditor))[0] == 200

    added = await poll_until(lambda: allowed_on(gw1.data_url))
    assert await allowed_on(gw0.data_url)

    # Revoked through the other process: refused on both.
    async with session.delete(f"{gw1.admin_url}/grants/{grant_id}", headers=cluster.soc()) as resp:
        assert resp.status == 200, await resp.text()
    since = time.monotonic()

    async def refused_on(url: str) -> bool:
        return (await status_of(session, url + ACCOUNTS, auditor))[0] == 403

    on_gw0, on_gw1 = await asyncio.gather(
        poll_until(lambda: refused_on(gw0.data_url), since),
        poll_until(lambda: refused_on(gw1.data_url), since),
    )
    print(
        f"\ngrant gw0 -> gw1: {added * 1000:.0f} ms; revocation through gw1, refused on "
        f"gw1 after {on_gw1 * 1000:.0f} ms, on gw0 after {on_gw0 * 1000:.0f} ms"
    )
    assert added < 2.0 and on_gw0 < 2.0 and on_gw1 < 2.0
