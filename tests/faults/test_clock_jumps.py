"""The wall clock of the running gateway jumps forward and back (hours, a day), through
libfaketime: tokens, grants, breakers and rate limits are judged by the new time, nothing
sticks or vanishes, and sharing never stalls.

libfaketime re-reads FAKETIME_TIMESTAMP_FILE on every call (FAKETIME_NO_CACHE=1), so the test
moves the gateway's clock by rewriting the file. The monotonic clock is left alone
(FAKETIME_DONT_FAKE_MONOTONIC=1), as a real clock step (NTP, an operator) leaves it alone.
"""

from __future__ import annotations

import asyncio
import glob
import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.config import load_config
from gateway.identity.mint import mint_token
from tests.faults.conftest import (
    GatewayProcess,
    UpstreamProcess,
    base_config,
    error_of,
    get,
    readyz,
    until,
    write_gateway,
)

HOUR = 3600
DAY = 24 * HOUR
HANG_GUARD = aiohttp.ClientTimeout(total=10)
LIMIT = 10  # limits.per_principal.requests (per 60 s)
COOLDOWN = 2.0  # the SOC's breaker duration in the backward-jump case


def libfaketime() -> str:
    found = sorted(
        glob.glob("/usr/lib/*/faketime/libfaketime.so.1")
        + glob.glob("/usr/lib/faketime/libfaketime.so.1")
    )
    if not found:
        reason = "libfaketime is not installed (Debian: apt-get install faketime)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI installs it in .ci/run", pytrace=False)
        pytest.skip(reason)
    return found[0]


class Clock:
    """The gateway's clock offset from the real one, in seconds."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.set(0)

    def set(self, offset: int) -> None:
        self.offset = offset
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(f"{offset:+d}\n")
        os.replace(tmp, self.path)  # the gateway never reads a half-written offset

    def now(self) -> float:
        """What the gateway's clock says now."""
        return time.time() + self.offset


@pytest.fixture
def faked(tmp_path: Path, upstream: UpstreamProcess) -> Iterator[tuple[GatewayProcess, Clock]]:
    clock = Clock(tmp_path / "faketime")
    env = {
        "LD_PRELOAD": libfaketime(),
        "FAKETIME_TIMESTAMP_FILE": str(clock.path),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
    config = base_config(
        tmp_path,
        upstream.url,
        limits={"per_principal": {"requests": LIMIT, "window": 60}, "per_dataset": None},
        audit={"checkpoint_interval": 1.0, "flush_interval": 0.05},
        breaker={"half_open_probes": 1},
    )
    gw = write_gateway(tmp_path, config, env=env)
    gw.start()
    try:
        gw.wait_ready()
        yield gw, clock
    finally:
        code = gw.stop()
    assert code == 0, gw.output()
    assert gw.log_events("stage_failed") == [], gw.output()


async def test_the_clock_jumps_forward_and_back(faked: tuple[GatewayProcess, Clock]) -> None:
    gw, clock = faked
    identity = load_config(gw.config_path, environ={}).identity
    plain = itertools.count()  # a fresh caller for each check, so no limit is reached
    async with aiohttp.ClientSession(timeout=HANG_GUARD) as session:

        async def status(headers: dict[str, str], path: str = "/api/open/ok") -> tuple[int, Any]:
            code, body = await get(session, gw.url + path, headers)
            return code, (None if code == 200 else error_of(body))

        async def still_sharing() -> None:
            """Whatever the clock says, a plain caller is served and the gateway is ready."""
            assert await status(token(f"plain-{next(plain)}")) == (200, None)
            code, ready = await readyz(session, gw)
            assert (code, ready["checks"]) == (
                200,
                {"started": True, "breakers": True, "audit": True},
            )

        def token(sub: str, **claims: Any) -> dict[str, str]:
            args = {"dept": "market-regulation", "clearance": 1, "now": clock.now(), **claims}
            return {"Authorization": f"Bearer {mint_token(identity, sub=sub, **args)}"}

        await still_sharing()
        # Tokens: exp and nbf are judged by the gateway's new time, cached or not.
        today = token("alice")  # exp in 1 h
        assert await status(today) == (200, None)
        clock.set(2 * HOUR)
        assert await status(today) == (401, ("unauthenticated", "expired"))
        later = token("alice")  # minted by the new clock: nbf two hours from real time
        assert await status(later) == (200, None)
        await still_sharing()
        clock.set(0)
        assert await status(today) == (200, None)
        assert await status(later) == (401, ("unauthenticated", "not_yet_valid"))
        await still_sharing()

        # Grants: a 30-minute grant is over an hour later, and not yet begun a day before.
        bob = token("bob", clearance=2, purpose="case-review")
        assert await status(bob, "/api/cases/ok") == (403, ("forbidden", "default_deny"))
        async with session.post(
            gw.admin_url + "/grants",
            headers=token("soc1", dept="soc", clearance=4, roles=["soc"]),
            json={
                "principal": "bob",
                "dataset": "cases",
                "actions": ["read", "list"],
                "purpose": "case-review",
                "duration": 1800,
                "reason": "clock test",
            },
        ) as resp:
            assert resp.status == 201, await resp.text()
        assert await status(bob, "/api/cases/ok") == (200, None)
        clock.set(HOUR)
        bob = token("bob", clearance=2, purpose="case-review")
        assert await status(bob, "/api/cases/ok") == (403, ("forbidden", "default_deny"))
        clock.set(-DAY)
        bob = token("bob", clearance=2, purpose="case-review")
        assert await status(bob, "/api/cases/ok") == (403, ("forbidden", "default_deny"))
        await still_sharing()
        clock.set(0)
        bob = token("bob", clearance=2, purpose="case-review")
        assert await status(bob, "/api/cases/ok") == (200, None)

        await _breakers(gw, clock, session, status, token, still_sharing)
        await _rate_limits(clock, status, token, still_sharing)
        await _checkpoints(gw, clock, status, token, plain)


async def _breakers(
    gw: GatewayProcess,
    clock: Clock,
    session: aiohttp.ClientSession,
    status: Any,
    token: Any,
    still_sharing: Any,
) -> None:
    """A timed suspension neither sticks for the length of a backward jump nor vanishes."""
    soc = token("soc1", dept="soc", clearance=4, roles=["soc"])

    async def suspend(key: str, duration: float) -> None:
        async with session.post(
            gw.admin_url + "/breakers",
            headers=soc,
            json={
                "scope": "principal",
                "key": key,
                "mode": "open",
                "duration": duration,
                "note": "clock test",
            },
        ) as resp:
            assert resp.status == 201, await resp.text()

    await suspend("carol", COOLDOWN)
    assert (await status(token("carol")))[0] == 423
    clock.set(-DAY)
    carol = token("carol")
    assert (await status(carol))[1] == ("sharing_suspended", "open"), "it did not vanish"

    async def served() -> bool:
        return (await status(token("carol")))[0] == 200

    # Served again after about its duration, not after the day the clock went back.
    await until(served, "a 2 s suspension lifted after the clock went back a day")
    await still_sharing()
    clock.set(0)
    assert (await status(token("carol")))[0] == 200
    await suspend("dave", 60)
    assert (await status(token("dave")))[0] == 423
    clock.set(2 * HOUR)  # by the new clock the minute is long over: a probe is let through
    assert (await status(token("dave")))[0] == 200
    await still_sharing()
    clock.set(0)
    assert (await status(token("dave")))[0] == 200  # closed by the clean probe


async def _rate_limits(clock: Clock, status: Any, token: Any, still_sharing: Any) -> None:
    """The limit keeps counting whichever way the clock jumps: never wedged, never off."""
    for offset in (0, 2 * HOUR):
        clock.set(offset)
        headers = token("erin")
        answers = [(await status(headers))[0] for _ in range(LIMIT + 2)]
        assert answers == [200] * LIMIT + [429, 429], (offset, answers)
    # A caller seen over the last few minutes (one request a minute, by the gateway's
    # clock), then the clock goes back a day: the limit still counts from the first request.
    for minute in range(4):
        clock.set(60 * minute)
        assert (await status(token("fay")))[0] == 200
    clock.set(-DAY)
    headers = token("fay")
    answers = [(await status(headers))[0] for _ in range(LIMIT + 2)]
    assert answers == [200] * LIMIT + [429, 429], answers
    clock.set(0)
    await still_sharing()


async def _checkpoints(
    gw: GatewayProcess, clock: Clock, status: Any, token: Any, plain: Iterator[int]
) -> None:
    """Signed audit checkpoints keep coming every `checkpoint_interval` after a jump back."""
    marks = gw.data_dir / "var" / "audit" / "checkpoints.jsonl"
    clock.set(-DAY)
    await asyncio.sleep(0.2)  # any checkpoint begun before the jump is written
    before = marks.read_bytes().count(b"\n") if marks.exists() else 0

    async def signed() -> bool:
        await status(token(f"plain-{next(plain)}"))  # something new to sign
        return marks.exists() and marks.read_bytes().count(b"\n") > before

    await until(signed, "a checkpoint signed after the clock went back a day", patience=5.0)
    clock.set(0)
