"""Redis killed under load, then restarted: classified routes refuse with 503 while it is down,
level-1 routes do what `breaker.level1_fail_open` and `limits` say, the gateways recover
without a restart, and every incident raised meanwhile reaches the file and the stream."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from tests.faults.conftest import (
    GatewayProcess,
    RedisServer,
    UpstreamProcess,
    base_config,
    error_of,
    get,
    no_leak,
    readyz,
    until,
    write_gateway,
)

HANG_GUARD = aiohttp.ClientTimeout(total=10)
RELOAD = 0.2  # breaker.reload_interval: the view refreshes five times a second...
STALE = 1.0  # ...and is not trusted once it is a second old
BAD_TOKENS = 30  # failed authentications sent while Redis is down
AUTH_BURST = 5  # auth_failures.per_minute: the burst rule fires from the 5th


@dataclasses.dataclass
class Answer:
    gateway: str
    route: str
    started: float
    finished: float
    status: int
    error: str | None
    reason: str | None


def gateways(tmp: Path, upstream: UpstreamProcess, redis_url: str) -> dict[str, GatewayProcess]:
    """`strict`: the defaults (level-1 routes fail closed too, rate limits on).
    `lenient`: `level1_fail_open: true` and no rate limits."""
    common = {
        "state": {"url": redis_url},
        "breaker": {"reload_interval": RELOAD, "stale_after": STALE},
        "incidents": {"stream": {"stream": "incidents"}},
        "detection": {"auth_failures": {"per_minute": AUTH_BURST}},
        # The revocation list goes untrusted at its first failed reload; pushed out of the
        # test's window so that the breaker view alone decides what level 1 gets.
        "identity": {"revocation_reload": 300},
    }
    strict = base_config(tmp / "strict", upstream.url, **common)
    strict["state"]["prefix"] = "strict:"
    lenient = base_config(
        tmp / "lenient",
        upstream.url,
        **common,
        limits={"per_principal": None, "per_dataset": None},
    )
    lenient["state"]["prefix"] = "lenient:"
    lenient["breaker"]["level1_fail_open"] = True
    return {
        "strict": write_gateway(tmp, strict, name="strict"),
        "lenient": write_gateway(tmp, lenient, name="lenient"),
    }


async def test_redis_killed_under_load_then_restarted(
    tmp_path: Path, upstream: UpstreamProcess, own_redis: RedisServer
) -> None:
    gws = gateways(tmp_path, upstream, own_redis.url)
    for gw in gws.values():
        gw.start()
    try:
        for gw in gws.values():
            gw.wait_ready()
        await _outage(gws, own_redis)
    finally:
        codes = {name: gw.stop() for name, gw in gws.items()}
    assert codes == {"strict": 0, "lenient": 0}, gws["strict"].output()
    for gw in gws.values():
        assert gw.log_events("stage_failed") == [], gw.output()


async def _outage(gws: dict[str, GatewayProcess], own_redis: RedisServer) -> None:
    strict = gws["strict"]
    answers: list[Answer] = []
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    async with aiohttp.ClientSession(timeout=HANG_GUARD) as session:
        # A breaker the SOC forced open before the outage must hold after it.
        async with session.post(
            strict.admin_url + "/breakers",
            headers=strict.soc(),
            json={"scope": "principal", "key": "mallory", "note": "before the outage"},
        ) as resp:
            assert resp.status == 201, await resp.text()
        mallory = strict.auth(sub="mallory")
        assert (await get(session, strict.url + "/api/open/ok", mallory))[0] == 423

        async def load(name: str, gw: GatewayProcess, route: str) -> None:
            headers = gw.auth()
            while not stop.is_set():
                started = loop.time()
                status, body = await get(session, f"{gw.url}/api/{route}/ok", headers)
                error, reason = error_of(body) if status != 200 else (None, None)
                if status == 200 and route == "people":
                    no_leak(body)
                answers.append(Answer(name, route, started, loop.time(), status, error, reason))
                await asyncio.sleep(0.01)

        tasks = [
            asyncio.create_task(load(name, gw, route))
            for name, gw in gws.items()
            for route in ("people", "open", "people")
        ]
        try:
            kill_at, dead_at, up_at, recovered_at = await _kill_and_restart(
                session, gws, own_redis, loop.time
            )
        finally:
            stop.set()
            await asyncio.gather(*tasks)
        assert (await get(session, strict.url + "/api/open/ok", mallory))[0] == 423

        incidents = await until(
            lambda: _delivered(strict, own_redis),
            "incidents raised while Redis was down delivered to the stream",
        )
    _check_answers(answers, (kill_at, dead_at, up_at, recovered_at))
    print(
        f"\nredis outage {up_at - kill_at:.1f} s, recovered {recovered_at - up_at:.1f} s after "
        f"restart; {len(answers)} answers; incidents raised while down: {incidents[0]} "
        f"({incidents[1]} detections, {incidents[2]} lines in file and stream), lost: 0"
    )


async def _kill_and_restart(
    session: aiohttp.ClientSession,
    gws: dict[str, GatewayProcess],
    own_redis: RedisServer,
    now: Callable[[], float],
) -> tuple[float, float, float, float]:
    """Kill Redis under the running load, check what the gateways say, restart it and wait
    for them to serve again. The times: the kill, the death, the restart, the recovery."""
    strict = gws["strict"]
    await asyncio.sleep(0.5)
    kill_at = now()
    own_redis.kill()  # returns once the process is gone
    dead_at = now()

    async def not_ready() -> bool:
        results = [await readyz(session, gw) for gw in gws.values()]
        return all(status == 503 and not body["ready"] for status, body in results)

    await until(not_ready, "/readyz not ready with Redis down")
    _, body = await readyz(session, strict)
    assert body["checks"]["breakers"] is False
    # The SOC asks what is suspended: the answer is that nobody can tell.
    async with session.get(strict.admin_url + "/breakers", headers=strict.soc()) as resp:
        assert resp.status == 503
        assert (await resp.json())["error"] == "unavailable"

    # Failed authentications from one address while Redis is down: the burst rule
    # raises incidents that cannot be stored in Redis; the sinks must keep every one.
    for _ in range(BAD_TOKENS):
        status, body = await get(
            session, strict.url + "/api/open/ok", {"Authorization": "Bearer not.a.jwt"}
        )
        assert (status, error_of(body)[0]) == (401, "unauthenticated")
    await asyncio.sleep(STALE + 2 * RELOAD)  # every view is past its staleness bound
    up_at = now()
    own_redis.start()

    async def served_again() -> bool:
        statuses = [
            (await get(session, f"{gw.url}/api/people/ok", gw.auth()))[0] for gw in gws.values()
        ]
        return statuses == [200, 200]

    await until(served_again, "classified routes served again without a restart")
    recovered_at = now()

    async def ready_again() -> bool:
        statuses = [(await readyz(session, gw))[0] for gw in gws.values()]
        return statuses == [200, 200]

    await until(ready_again, "/readyz ready again")
    await asyncio.sleep(0.3)  # some load after the recovery too
    return kill_at, dead_at, up_at, recovered_at


async def _delivered(gw: GatewayProcess, own_redis: RedisServer) -> tuple[int, ...]:
    """The incidents the file holds that Redis could not store, the detections they count
    and their lines; nothing until the stream holds every one of those lines, once."""
    filed = gw.incidents()
    unstored = {i["finding_info"]["uid"] for i in filed if i["unmapped"].get("stored") is False}
    assert unstored, "the burst while Redis was down raised incidents"
    keys = {
        i["finding_info"]["uid"]: i["unmapped"]["dedup_key"]
        for i in filed
        if i["unmapped"].get("stored") is False
    }
    assert len(set(keys.values())) == len(keys), "repeats during the outage update one incident"
    client = own_redis.client()
    try:
        entries = await asyncio.to_thread(client.xrange, "strict:stream:incidents")
    finally:
        client.close()
    streamed = [orjson.loads(fields[b"v"]) for _, fields in entries]

    def lines(incidents: list[dict[str, Any]]) -> Counter[tuple[str, int]]:
        return Counter(
            (i["finding_info"]["uid"], i["count"])
            for i in incidents
            if i["finding_info"]["uid"] in unstored
        )

    if lines(streamed) != lines(filed):
        assert lines(streamed) - lines(filed) == Counter(), "the stream never has more"
        return ()
    detections = sum(max(c for u, c in lines(filed) if u == uid) for uid in unstored)
    assert detections >= BAD_TOKENS - AUTH_BURST + 1, "every detection of the burst counted"
    return len(unstored), detections, sum(lines(filed).values())


def _check_answers(answers: list[Answer], times: tuple[float, float, float, float]) -> None:
    """`times`: just before Redis was killed, once it was dead, just before it was started
    again, and once both gateways served classified data again."""
    kill_at, dead_at, up_at, back = times
    assert not [a for a in answers if a.status >= 500 and a.status != 503], "never a 500"
    by: dict[tuple[str, str, str], Counter[tuple[int, str | None, str | None]]] = {}
    for a in answers:
        if a.finished < kill_at or a.started > back:
            phase = "up"
        elif a.started > dead_at and a.finished < up_at:
            phase = "down"
        else:
            continue  # in flight across the kill or the restart: either answer is right
        # The lenient view is trusted for up to `stale_after` after its last reload.
        if a.gateway == "lenient" and phase == "down" and a.started < dead_at + STALE + RELOAD:
            phase = "stale"
        key = (a.gateway, a.route, phase)
        by.setdefault(key, Counter())[(a.status, a.error, a.reason)] += 1

    def only(key: tuple[str, str, str]) -> set[tuple[int, str | None, str | None]]:
        assert key in by, f"no answers for {key}"
        return set(by[key])

    for gw in ("strict", "lenient"):
        for route in ("people", "open"):
            assert only((gw, route, "up")) <= {(200, None, None)}, (gw, route, by)
    # strict: rate limits cannot be counted, then the breaker view goes stale: all refused.
    assert only(("strict", "people", "down")) <= {
        (503, "unavailable", "rate_limit_unavailable"),
        (503, "unavailable", "breaker_state_unavailable"),
    }
    assert only(("strict", "open", "down")) <= {
        (503, "unavailable", "rate_limit_unavailable"),
        (503, "unavailable", "breaker_state_unavailable"),
    }
    assert (503, "unavailable", "breaker_state_unavailable") in by["strict", "people", "down"]
    # lenient: no limits to count; classified data is refused once the view is stale,
    # level-1 data keeps flowing, as `level1_fail_open` says.
    assert only(("lenient", "people", "down")) == {
        (503, "unavailable", "breaker_state_unavailable")
    }
    assert only(("lenient", "open", "down")) == {(200, None, None)}
