"""Policy files replaced by garbage, truncated or deleted while the gateway runs: the last good
policy stays in force, each rejection is logged and raises a low-severity incident, /readyz
keeps the running version, and a good file afterwards is picked up."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import aiohttp

from tests.faults.conftest import (
    CATALOG,
    GatewayProcess,
    UpstreamProcess,
    base_config,
    get,
    readyz,
    until,
    write_gateway,
)

HANG_GUARD = aiohttp.ClientTimeout(total=10)
WATCH = 0.1  # policy.watch_interval
ROWS = "p, user:contractor, *, *, deny\np, user:bob, cases, read|list, allow, case-review\n"
GOOD_CASES = """cases:
  - name: the contractor is refused
    principal: {sub: contractor, dept: market-regulation, clearance: 4}
    request: {method: GET, path: /api/people/ok}
    expect: deny
"""
# (file, what it becomes): each must be refused while the last good policy keeps deciding.
GARBAGE: list[tuple[str, bytes | None]] = [
    ("catalog.yaml", random.Random(8).randbytes(2048)),  # binary noise, not UTF-8
    ("catalog.yaml", CATALOG.encode()[: len(CATALOG) // 2]),  # truncated mid-entry
    ("catalog.yaml", b""),  # emptied
    ("catalog.yaml", b"datasets: 5\n"),  # YAML of the wrong shape
    ("catalog.yaml", b"[" * 20000),  # nested past any parser's recursion limit
    ("policy.csv", ROWS.encode()[:20]),  # truncated mid-row
    ("policy.csv", b"p, user:x, people, read, allow\x00\n"),  # a NUL byte
    ("model.conf", None),  # deleted
    ("model.conf", b"[request_definition]\nr = "),  # truncated
    # A change that breaks one of the policy's own test cases (the contractor let in).
    ("policy.csv", ROWS.replace("contractor", "someone-else").encode()),
]


async def decisions(session: aiohttp.ClientSession, gw: GatewayProcess) -> dict[str, int]:
    """The statuses of the requests the policy decides, by caller."""
    asks = {
        "alice/people": (gw.auth(), "/api/people/ok"),
        "contractor/people": (gw.auth(sub="contractor"), "/api/people/ok"),
        "bob/cases": (gw.auth(sub="bob", clearance=2, purpose="case-review"), "/api/cases/ok"),
        "alice/cases": (gw.auth(clearance=2, purpose="case-review"), "/api/cases/ok"),
    }
    return {
        who: (await get(session, gw.url + path, headers))[0]
        for who, (headers, path) in asks.items()
    }


async def test_bad_policy_files_keep_the_last_good_policy(
    tmp_path: Path, upstream: UpstreamProcess
) -> None:
    # The decisions are asked in a tight loop for as long as the files take to change.
    config = base_config(tmp_path, upstream.url, limits={"per_principal": None})
    policies = Path(config["policy"]["dir"])
    (policies / "policy.csv").write_text(ROWS)
    (policies / "tests").mkdir()
    (policies / "tests" / "cases.yaml").write_text(GOOD_CASES)
    config["policy"].update({"watch": True, "watch_interval": WATCH})
    good = {
        name: (policies / name).read_bytes()
        for name in ("catalog.yaml", "policy.csv", "model.conf", "tests/cases.yaml")
    }
    gw = write_gateway(tmp_path, config)
    gw.start()
    try:
        gw.wait_ready()
        async with aiohttp.ClientSession(timeout=HANG_GUARD) as session:
            await _break_and_mend(session, gw, policies, good)
    finally:
        code = gw.stop()
    assert code == 0, gw.output()


async def _break_and_mend(
    session: aiohttp.ClientSession, gw: GatewayProcess, policies: Path, good: dict[str, bytes]
) -> None:
    expected = {"alice/people": 200, "contractor/people": 403, "bob/cases": 200, "alice/cases": 403}
    assert await decisions(session, gw) == expected
    _, ready = await readyz(session, gw)
    version = ready["policy_version"]
    stop = asyncio.Event()
    during: list[dict[str, int]] = []

    async def load() -> None:  # the decisions go on being asked while the files change
        while not stop.is_set():
            during.append(await decisions(session, gw))

    task = asyncio.create_task(load())
    try:
        broken: Path | None = None
        for n, (name, garbage) in enumerate(GARBAGE, start=1):
            path = policies / name
            if broken is not None and broken != path:  # mended in the same save
                broken.write_bytes(good[broken.relative_to(policies).as_posix()])
            if garbage is None:
                path.unlink()
            else:
                path.write_bytes(garbage)
            broken = path

            async def rejected(n: int = n) -> bool:
                return len(gw.log_events("policy_rejected")) >= n

            await until(rejected, f"the change to {name} rejected ({n})")
            [*_, last] = gw.log_events("policy_rejected")
            assert last["level"] == "error" and last["version"] == version, last
            _, ready = await readyz(session, gw)
            assert (ready["ready"], ready["policy_version"]) == (True, version)
            assert await decisions(session, gw) == expected, f"after {name} ({n})"
        assert broken is not None
        broken.write_bytes(good[broken.relative_to(policies).as_posix()])
        await asyncio.sleep(3 * WATCH)  # the good files are seen (unchanged: no reload)
    finally:
        stop.set()
        await task
    assert during and all(d == expected for d in during)
    assert gw.log_events("policy_loaded") == []

    # One incident for the SOC, updated on each rejection (low severity).
    async with session.get(
        gw.admin_url + "/incidents", headers=gw.soc(), params={"status": "new"}
    ) as resp:
        incidents = (await resp.json())["incidents"]
    [incident] = [
        i for i in incidents if i["finding_info"]["analytic"]["name"] == "policy_rejected"
    ]
    assert (incident["count"], incident["severity_id"]) == (len(GARBAGE), 2)

    # A good change afterwards is picked up: the contractor's row now covers alice too.
    (policies / "policy.csv").write_bytes(good["policy.csv"] + b"p, user:alice, people, *, deny\n")

    async def loaded() -> bool:
        return (await readyz(session, gw))[1]["policy_version"] != version

    await until(loaded, "a good policy change picked up")
    assert (await decisions(session, gw))["alice/people"] == 403
    swaps = await until(lambda: _logged(gw, "policy_loaded"), "the swap logged")
    assert [s["previous"] for s in swaps] == [version]
    print(
        f"\npolicy faults: {len(GARBAGE)} bad changes rejected, {len(during)} decision rounds "
        f"unchanged meanwhile; the good change loaded"
    )


async def _logged(gw: GatewayProcess, event: str) -> list[dict[str, object]]:
    return gw.log_events(event)
