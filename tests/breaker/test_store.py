"""Breakers on both state backends: atomic transitions, shared views, trust, probes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from gateway.breaker.config import BreakerConfig
from gateway.breaker.store import HASH, Breakers
from gateway.errors import StateUnavailable
from gateway.state import RedisBackend, StateBackend
from tests.breaker.conftest import Clock, free_port
from tests.incidents.conftest import RedisServer


async def wait_for(cond: Callable[[], bool], timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.005)


@pytest.fixture
async def pair(
    backend: StateBackend, peer: StateBackend, config: BreakerConfig, clock: Clock
) -> AsyncIterator[tuple[Breakers, Breakers]]:
    one, two = Breakers(backend, config, clock), Breakers(peer, config, clock)
    await one.start()
    await two.start()
    yield one, two
    await one.close()
    await two.close()


async def test_a_trip_reaches_the_other_view_by_message(pair: tuple[Breakers, Breakers]) -> None:
    one, two = pair
    assert not one.check("alice", "tax", "citizens")
    s = await one.trip("principal", "alice", "burst", "inc-1")
    assert s is not None and s.state == "open"
    assert [b.field for b in one.check("alice", "tax", "citizens")] == ["principal:alice"]
    await wait_for(lambda: bool(two.check("alice", "tax", "citizens")))
    assert two.check("alice", "tax", "citizens")[0].incident_id == "inc-1"
    assert not two.check("bob", "tax", "citizens")


async def test_each_scope_matches(pair: tuple[Breakers, Breakers]) -> None:
    one, _ = pair
    await one.soc_open("department", "tax", "soc", "n", None, forced=True)
    await one.soc_open("pair", "bob|medical", "soc", "n", None, forced=True)
    await one.soc_open("dataset", "medical", "soc", "n", None, forced=True)
    assert [s.field for s in one.check("bob", "tax", "medical")] == [
        "department:tax",
        "dataset:medical",
        "pair:bob|medical",
    ]
    assert [s.field for s in one.check("bob", "health", "citizens")] == []


async def test_reset_clears_both_views_and_is_listed(pair: tuple[Breakers, Breakers]) -> None:
    one, two = pair
    await one.soc_open("principal", "alice", "soc-ann", "look", None, forced=True)
    await wait_for(lambda: bool(two.active))
    await two.reset("principal", "alice", "soc-bob", "cleared")
    await wait_for(lambda: not one.active)
    [listed] = await one.list_all()
    assert (listed.state, listed.by, listed.note) == ("closed", "soc-bob", "cleared")
    assert await one.get("principal", "nobody") is None


async def test_probe_slots_are_reserved_atomically_across_views(
    pair: tuple[Breakers, Breakers], clock: Clock
) -> None:
    one, two = pair
    await one.trip("principal", "alice", "burst", "inc-1")
    clock.advance(61)
    results = await asyncio.gather(
        *(view.reserve_probe("principal:alice") for view in (one, two) * 10)
    )
    assert sum(r is not None for r in results) == 2  # half_open_probes


async def test_clean_probes_close_bad_probe_reopens(
    pair: tuple[Breakers, Breakers], clock: Clock
) -> None:
    one, _ = pair
    await one.trip("principal", "alice", "burst", "inc-1")
    clock.advance(61)
    await one.reserve_probe("principal:alice")
    s = await one.probe_done("principal:alice", clean=False)
    assert s is not None and (s.state, s.cooldown) == ("open", 120)
    clock.advance(121)
    for _ in range(2):
        await one.reserve_probe("principal:alice")
    await one.probe_done("principal:alice", clean=True)
    s = await one.probe_done("principal:alice", clean=True)
    assert s is not None and s.state == "closed"
    assert not one.check("alice", None, None)


async def test_rejects_bad_soc_input(pair: tuple[Breakers, Breakers]) -> None:
    one, _ = pair
    with pytest.raises(ValueError, match="scope must be one of"):
        await one.soc_open("team", "x", "soc", "n", None, forced=True)
    with pytest.raises(ValueError, match="until: must be a time in the future"):
        await one.soc_open("principal", "x", "soc", "n", None, forced=False)
    with pytest.raises(ValueError, match="note: a reset requires a note"):
        await one.reset("principal", "x", "soc", "")


async def test_view_goes_untrusted_when_reloads_stop(
    backend: StateBackend, config: BreakerConfig, clock: Clock
) -> None:
    view = Breakers(backend, config, clock, age_clock=clock)
    await view.start()
    try:
        assert view.trusted
        await view.close()  # no more reloads or heartbeats
        clock.advance(config.stale_after + 1)
        assert not view.trusted
    finally:
        await view.close()


async def test_a_newer_version_wins_over_an_older_message(
    pair: tuple[Breakers, Breakers],
) -> None:
    one, two = pair
    s = await one.soc_open("principal", "alice", "soc", "n", None, forced=True)
    r = await one.reset("principal", "alice", "soc", "ok")
    await wait_for(lambda: two._versions.get("principal:alice") == r.version)
    two._apply(s)  # a late, older message is ignored
    assert not two.active


async def test_a_corrupt_record_keeps_the_view_untrusted_until_removed(
    backend: StateBackend, config: BreakerConfig, clock: Clock
) -> None:
    await backend.hset(HASH, "principal:x", b"not json")
    view = Breakers(backend, config, clock)
    await view.start()
    try:
        await asyncio.sleep(0.15)  # several reloads, each refusing the corrupt record
        assert not view.trusted
        await backend.hdel(HASH, "principal:x")
        await wait_for(lambda: view.trusted)
    finally:
        await view.close()


async def test_redis_down_means_untrusted_and_transitions_raise(
    config: BreakerConfig, clock: Clock
) -> None:
    dead = RedisBackend(f"redis://127.0.0.1:{free_port()}/0", "t:", timeout=0.1)
    view = Breakers(dead, config, clock)
    await view.start()
    try:
        assert not view.trusted
        with pytest.raises(StateUnavailable):
            await view.trip("principal", "alice", "burst", None)
    finally:
        await view.close()
        await dead.close()


async def test_a_redis_outage_makes_the_view_untrusted_until_it_is_back() -> None:
    server = RedisServer()
    await server.start()
    backend = RedisBackend(server.url, "outage:", timeout=0.1)
    cfg = BreakerConfig(reload_interval=0.05, stale_after=0.3)
    view = Breakers(backend, cfg)  # the real clock: the outage is real
    try:
        await backend.start()
        await view.start()
        await wait_for(lambda: view.trusted)
        await server.stop()
        await wait_for(lambda: not view.trusted)
        await server.start()
        await wait_for(lambda: view.trusted, timeout=10)
    finally:
        await view.close()
        await backend.close()
        await server.stop()


async def test_an_address_breaker_covers_the_address_and_its_range(
    pair: tuple[Breakers, Breakers],
) -> None:
    one, two = pair
    await one.trip("address", "203.0.113.7", "auth_failures", "inc-a")
    await one.trip("address", "198.51.100.0/24", "auth_failures", "inc-b")
    assert [s.field for s in one.check("bob", "tax", "citizens", "203.0.113.7")] == [
        "address:203.0.113.7"
    ]
    await wait_for(lambda: bool(two.check(None, None, None, "198.51.100.42")))
    assert two.check(None, None, None, "198.51.100.42")[0].key == "198.51.100.0/24"
    assert not one.check("bob", "tax", "citizens", "203.0.113.8")
    assert not one.check("bob", "tax", "citizens")
    with pytest.raises(ValueError, match="an address key is an IP address or network"):
        await one.soc_open("address", "not-an-ip", "soc", "n", None, forced=True)
