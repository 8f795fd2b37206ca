"""Memory-only behaviour: injected clocks for TTLs and stream ids, bounded memory."""

from __future__ import annotations

import asyncio

from gateway.state import MemoryBackend

T0 = 1_700_000_000.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_ttl_follows_the_injected_clock() -> None:
    clock = Clock(100.0)
    state = MemoryBackend(clock=clock)
    await state.set("k", b"v", ttl=5)
    clock.now = 104.999
    assert await state.get("k") == b"v"
    clock.now = 105.0
    assert await state.get("k") is None


async def test_cas_ttl_follows_the_injected_clock() -> None:
    clock = Clock(100.0)
    state = MemoryBackend(clock=clock)
    assert await state.compare_and_set("lock", None, b"a", ttl=10) is True
    clock.now = 109.0
    assert await state.compare_and_set("lock", None, b"b", ttl=10) is False
    clock.now = 110.0
    assert await state.compare_and_set("lock", None, b"b", ttl=10) is True
    assert await state.get("lock") == b"b"


async def test_expired_keys_are_swept_without_being_read() -> None:
    clock = Clock(0.0)
    state = MemoryBackend(clock=clock)
    for i in range(100):
        await state.set(f"k{i}", b"v", ttl=1)
    clock.now = 1000.0
    await state.set("fresh", b"v")
    assert await state.get("k0") is None
    assert await state.get("fresh") == b"v"
    assert len(state._values) == 1


async def test_stale_counters_are_swept() -> None:
    state = MemoryBackend()
    for i in range(100):
        await state.count([(f"p{i}", 10)], T0)
    await state.count([("fresh", 10)], T0 + 3600)
    assert list(state._counters) == [("fresh", 10_000)]


async def test_stream_ids_use_the_wall_clock_and_never_go_back() -> None:
    wall = Clock(1000.0)
    state = MemoryBackend(wall=wall)
    assert await state.xadd("s", b"a") == "1000000-0"
    assert await state.xadd("s", b"b") == "1000000-1"
    wall.now = 999.0  # the wall clock stepped back: ids still increase
    assert await state.xadd("s", b"c") == "1000000-2"
    wall.now = 1000.5
    assert await state.xadd("s", b"d") == "1000500-0"
    assert await state.xadd("other", b"e") == "1000500-0"


async def test_maxlen_trims_exactly() -> None:
    state = MemoryBackend()
    for i in range(20):
        await state.xadd("s", str(i).encode(), maxlen=5)
    assert [v for _, v in await state.xrange("s")] == [str(i).encode() for i in range(15, 20)]


async def test_handlers_run_after_publish_returns_and_stop_on_close() -> None:
    state = MemoryBackend()
    received: list[bytes] = []
    await state.subscribe("c", received.append)
    await state.publish("c", b"1")
    assert received == []  # delivered by the dispatcher task, as Redis's listener does
    while not received:
        await asyncio.sleep(0)
    assert received == [b"1"]
    await state.close()
    await state.publish("c", b"2")
    await asyncio.sleep(0.01)
    assert received == [b"1"]


async def test_separate_memory_backends_share_nothing() -> None:
    one, two = MemoryBackend(), MemoryBackend()
    received: list[bytes] = []
    await two.subscribe("c", received.append)
    await one.set("k", b"v")
    await one.publish("c", b"m")
    await asyncio.sleep(0.01)
    assert await two.get("k") is None
    assert received == []
    await two.close()
