"""The state backend contract: every test runs on the memory and the Redis backend."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from gateway.state import StateBackend

# A hang guard for waits on asynchronous delivery, not a timing assertion.
PATIENCE = 10.0
T0 = 1_700_000_000.0  # a bucket boundary for every window used below


class Inbox:
    """Collects pub/sub messages so a test can await them."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def sync_handler(self, message: bytes) -> None:
        self.queue.put_nowait(message)

    async def async_handler(self, message: bytes) -> None:
        await asyncio.sleep(0)
        self.queue.put_nowait(message)

    async def next(self) -> bytes:
        async with asyncio.timeout(PATIENCE):
            return await self.queue.get()


async def eventually_none(read: Any) -> None:
    """Poll `read()` until it answers None (an expired TTL), within the hang guard."""
    async with asyncio.timeout(PATIENCE):
        while await read() is not None:
            await asyncio.sleep(0.02)


# -- counters -------------------------------------------------------------------------------


async def test_count_adds_and_returns_the_window_total(backend: StateBackend) -> None:
    assert await backend.count([("alice", 60)], T0) == [1]
    assert await backend.count([("alice", 60)], T0 + 1) == [2]
    assert await backend.count([("alice", 60)], T0 + 2, amount=5) == [7]


async def test_count_with_amount_zero_reads_without_adding(backend: StateBackend) -> None:
    assert await backend.count([("alice", 60)], T0, amount=0) == [0]
    await backend.count([("alice", 60)], T0, amount=3)
    assert await backend.count([("alice", 60)], T0, amount=0) == [3]
    assert await backend.count([("alice", 60)], T0, amount=0) == [3]


async def test_count_several_keys_and_windows_in_one_call(backend: StateBackend) -> None:
    hits = [("p:alice", 60), ("p:alice", 3600), ("d:health", 60)]
    assert await backend.count(hits, T0) == [1, 1, 1]
    assert await backend.count([("p:alice", 60)], T0) == [2]
    assert await backend.count(hits, T0, amount=2) == [4, 3, 3]


async def test_count_same_pair_twice_in_one_call_counts_twice(backend: StateBackend) -> None:
    assert await backend.count([("k", 10), ("k", 10)], T0) == [1, 2]


async def test_count_empty_hits_answers_nothing(backend: StateBackend) -> None:
    assert await backend.count([], T0) == []


async def test_count_window_slides_over_the_previous_bucket(backend: StateBackend) -> None:
    # 10 hits in bucket [T0, T0+10); later reads weigh them by the share of the sliding
    # window that still overlaps that bucket.
    await backend.count([("k", 10)], T0 + 5, amount=10)
    assert await backend.count([("k", 10)], T0 + 9.999, amount=0) == [10]
    assert await backend.count([("k", 10)], T0 + 10, amount=0) == [10]
    assert await backend.count([("k", 10)], T0 + 12, amount=0) == [8]
    assert await backend.count([("k", 10)], T0 + 17.5, amount=0) == [2]
    assert await backend.count([("k", 10)], T0 + 19.999, amount=0) == [0]
    assert await backend.count([("k", 10)], T0 + 20, amount=0) == [0]
    assert await backend.count([("k", 10)], T0 + 45, amount=0) == [0]


async def test_count_adds_current_bucket_to_weighted_previous(backend: StateBackend) -> None:
    await backend.count([("k", 10)], T0 + 1, amount=4)
    assert await backend.count([("k", 10)], T0 + 12.5, amount=3) == [3 + 4 * 75 // 100]
    assert await backend.count([("k", 10)], T0 + 21, amount=0) == [3 * 9 // 10]


async def test_count_sub_second_windows(backend: StateBackend) -> None:
    assert await backend.count([("k", 0.5)], T0 + 0.1) == [1]
    assert await backend.count([("k", 0.5)], T0 + 0.75, amount=0) == [1 * 350 // 500]


async def test_count_one_bucket_late_caller_still_reads_both(backend: StateBackend) -> None:
    # Processes' clocks differ slightly: a call just behind another's bucket still counts.
    await backend.count([("k", 10)], T0 + 1)
    await backend.count([("k", 10)], T0 + 11)
    assert await backend.count([("k", 10)], T0 + 9, amount=0) == [1]


async def test_count_goes_on_counting_after_the_clock_jumps_back(backend: StateBackend) -> None:
    # A key counted over several minutes, then the clock is set back a day: the limit must
    # keep counting, not read 0 (which would switch it off for the length of the jump).
    for minute in range(4):
        await backend.count([("k", 60)], T0 + 60 * minute)
    counts = [(await backend.count([("k", 60)], T0 - 86400 + n))[0] for n in range(3)]
    assert counts == [1, 2, 3]


async def test_count_is_shared_by_every_view(backend: StateBackend, peer: StateBackend) -> None:
    await backend.count([("k", 60)], T0, amount=2)
    assert await peer.count([("k", 60)], T0, amount=3) == [5]


async def test_concurrent_counts_are_not_lost(backend: StateBackend, peer: StateBackend) -> None:
    await asyncio.gather(*(view.count([("k", 60)], T0) for view in [backend, peer] * 25))
    assert await backend.count([("k", 60)], T0, amount=0) == [50]


# -- key-value ------------------------------------------------------------------------------


async def test_set_get_delete(backend: StateBackend) -> None:
    assert await backend.get("k") is None
    await backend.set("k", b"\x00v1")
    assert await backend.get("k") == b"\x00v1"
    await backend.set("k", b"v2")
    assert await backend.get("k") == b"v2"
    assert await backend.delete("k") is True
    assert await backend.get("k") is None
    assert await backend.delete("k") is False


async def test_set_with_ttl_keeps_the_value_until_it_expires(backend: StateBackend) -> None:
    await backend.set("long", b"v", ttl=300)
    assert await backend.get("long") == b"v"
    await backend.set("short", b"v", ttl=0.01)
    await eventually_none(lambda: backend.get("short"))
    assert await backend.delete("short") is False


async def test_set_without_ttl_removes_an_earlier_ttl(backend: StateBackend) -> None:
    await backend.set("k", b"v1", ttl=0.01)
    await backend.set("k", b"v2")
    await asyncio.sleep(0.05)
    assert await backend.get("k") == b"v2"


async def test_keys_are_distinct_from_hashes_and_streams(backend: StateBackend) -> None:
    await backend.set("same", b"kv")
    await backend.hset("same", "f", b"hash")
    await backend.xadd("same", b"stream")
    await backend.count([("same", 60)], T0)
    assert await backend.get("same") == b"kv"
    assert await backend.hgetall("same") == {"f": b"hash"}
    assert [v for _, v in await backend.xrange("same")] == [b"stream"]


# -- compare-and-set ------------------------------------------------------------------------


async def test_cas_with_expected_none_only_creates(backend: StateBackend) -> None:
    assert await backend.compare_and_set("k", None, b"first") is True
    assert await backend.compare_and_set("k", None, b"second") is False
    assert await backend.get("k") == b"first"


async def test_cas_replaces_only_the_expected_value(backend: StateBackend) -> None:
    await backend.set("k", b"v1")
    assert await backend.compare_and_set("k", b"other", b"v2") is False
    assert await backend.get("k") == b"v1"
    assert await backend.compare_and_set("k", b"v1", b"v2") is True
    assert await backend.get("k") == b"v2"


async def test_cas_on_a_missing_key_with_a_value_expected_fails(backend: StateBackend) -> None:
    assert await backend.compare_and_set("k", b"v1", b"v2") is False
    assert await backend.get("k") is None


async def test_cas_after_expiry_sees_the_key_as_missing(backend: StateBackend) -> None:
    assert await backend.compare_and_set("k", None, b"v1", ttl=0.01) is True
    await eventually_none(lambda: backend.get("k"))
    assert await backend.compare_and_set("k", b"v1", b"v2") is False
    assert await backend.compare_and_set("k", None, b"v2", ttl=300) is True
    assert await backend.get("k") == b"v2"


async def test_cas_has_exactly_one_winner(backend: StateBackend, peer: StateBackend) -> None:
    views = [backend, peer] * 10
    results = await asyncio.gather(
        *(view.compare_and_set("lock", None, str(i).encode()) for i, view in enumerate(views))
    )
    assert results.count(True) == 1
    assert await backend.get("lock") == str(results.index(True)).encode()


async def test_cas_version_check_serialises_updates(
    backend: StateBackend, peer: StateBackend
) -> None:
    # Read-modify-write with a version check, as the breaker does: no update is lost.
    await backend.set("n", b"0")

    async def increment(view: StateBackend) -> None:
        while True:
            old = await view.get("n")
            assert old is not None
            if await view.compare_and_set("n", old, str(int(old) + 1).encode()):
                return

    await asyncio.gather(*(increment(view) for view in [backend, peer] * 10))
    assert await backend.get("n") == b"20"


# -- hashes ---------------------------------------------------------------------------------


async def test_hash_set_get_getall_delete(backend: StateBackend) -> None:
    assert await backend.hgetall("grants") == {}
    assert await backend.hget("grants", "g1") is None
    await backend.hset("grants", "g1", b"one")
    await backend.hset("grants", "g2", b"two")
    await backend.hset("grants", "g1", b"uno")
    assert await backend.hget("grants", "g1") == b"uno"
    assert await backend.hgetall("grants") == {"g1": b"uno", "g2": b"two"}
    assert await backend.hdel("grants", "g1") is True
    assert await backend.hdel("grants", "g1") is False
    assert await backend.hdel("nothing", "g1") is False
    assert await backend.hgetall("grants") == {"g2": b"two"}
    assert await backend.hdel("grants", "g2") is True
    assert await backend.hgetall("grants") == {}


async def test_hash_fields_may_be_any_text(backend: StateBackend) -> None:
    await backend.hset("breakers", "principal×dataset:张三|population", b"open")
    assert await backend.hgetall("breakers") == {"principal×dataset:张三|population": b"open"}


async def test_hcas_with_expected_none_only_creates(backend: StateBackend) -> None:
    assert await backend.hcas("breakers", "b1", None, b"open") is True
    assert await backend.hcas("breakers", "b1", None, b"closed") is False
    assert await backend.hget("breakers", "b1") == b"open"


async def test_hcas_replaces_only_the_expected_value(backend: StateBackend) -> None:
    await backend.hset("breakers", "b1", b"v1")
    assert await backend.hcas("breakers", "b1", b"v0", b"v2") is False
    assert await backend.hcas("breakers", "b2", b"v1", b"v2") is False
    assert await backend.hget("breakers", "b1") == b"v1"
    assert await backend.hget("breakers", "b2") is None
    assert await backend.hcas("breakers", "b1", b"v1", b"v2") is True
    assert await backend.hgetall("breakers") == {"b1": b"v2"}


async def test_hcas_has_exactly_one_winner(backend: StateBackend, peer: StateBackend) -> None:
    await backend.hset("h", "f", b"v0")
    views = [backend, peer] * 10
    results = await asyncio.gather(
        *(view.hcas("h", "f", b"v0", str(i).encode()) for i, view in enumerate(views))
    )
    assert results.count(True) == 1
    assert await backend.hget("h", "f") == str(results.index(True)).encode()


# -- publish/subscribe ----------------------------------------------------------------------


async def test_published_messages_reach_sync_and_async_handlers(
    backend: StateBackend, peer: StateBackend
) -> None:
    first, second = Inbox(), Inbox()
    await backend.subscribe("policy", first.sync_handler)
    await backend.subscribe("policy", second.async_handler)
    await peer.publish("policy", b"reloaded v2")
    assert await first.next() == b"reloaded v2"
    assert await second.next() == b"reloaded v2"


async def test_messages_arrive_in_order_on_their_channel_only(
    backend: StateBackend, peer: StateBackend
) -> None:
    breakers, policy = Inbox(), Inbox()
    await backend.subscribe("breakers", breakers.sync_handler)
    await backend.subscribe("policy", policy.sync_handler)
    for i in range(20):
        await peer.publish("breakers", str(i).encode())
    await peer.publish("policy", b"last")
    assert [await breakers.next() for _ in range(20)] == [str(i).encode() for i in range(20)]
    assert await policy.next() == b"last"
    assert breakers.queue.empty()


async def test_a_failing_handler_does_not_stop_delivery(
    backend: StateBackend, peer: StateBackend
) -> None:
    inbox = Inbox()

    def broken(message: bytes) -> None:
        raise RuntimeError("handler bug")

    await backend.subscribe("c", broken)
    await backend.subscribe("c", inbox.sync_handler)
    await peer.publish("c", b"1")
    await peer.publish("c", b"2")
    assert [await inbox.next(), await inbox.next()] == [b"1", b"2"]


async def test_subscribing_the_same_handler_twice_delivers_once(
    backend: StateBackend, peer: StateBackend
) -> None:
    inbox = Inbox()
    await backend.subscribe("c", inbox.sync_handler)
    await backend.subscribe("c", inbox.sync_handler)
    await peer.publish("c", b"1")
    await peer.publish("c", b"2")
    assert [await inbox.next(), await inbox.next()] == [b"1", b"2"]
    assert inbox.queue.empty()


async def test_publish_without_subscribers_is_fine(backend: StateBackend) -> None:
    await backend.publish("nobody", b"x")


# -- streams --------------------------------------------------------------------------------

STREAM_ID = re.compile(r"(\d+)-(\d+)")


def id_key(entry_id: str) -> tuple[int, int]:
    match = STREAM_ID.fullmatch(entry_id)
    assert match, entry_id
    return int(match[1]), int(match[2])


async def test_stream_ids_look_like_redis_and_increase(backend: StateBackend) -> None:
    ids = [await backend.xadd("incidents", str(i).encode()) for i in range(50)]
    keys = [id_key(i) for i in ids]
    assert keys == sorted(keys)
    assert len(set(keys)) == 50


async def test_xrange_reads_in_order_after_an_id(backend: StateBackend) -> None:
    ids = [await backend.xadd("incidents", f"e{i}".encode()) for i in range(5)]
    assert await backend.xrange("incidents") == [(ids[i], f"e{i}".encode()) for i in range(5)]
    assert await backend.xrange("incidents", after=ids[1]) == [
        (ids[i], f"e{i}".encode()) for i in range(2, 5)
    ]
    assert await backend.xrange("incidents", after=ids[1], count=2) == [
        (ids[2], b"e2"),
        (ids[3], b"e3"),
    ]
    assert await backend.xrange("incidents", after=ids[4]) == []
    assert await backend.xrange("incidents", after="0-0") == await backend.xrange("incidents")
    assert await backend.xrange("missing") == []
    largest = f"{2**64 - 1}-{2**64 - 1}"
    assert await backend.xrange("incidents", after=largest) == []


async def test_xrange_after_a_bare_millisecond_id(backend: StateBackend) -> None:
    entry_id = await backend.xadd("s", b"v")
    ms, _ = id_key(entry_id)
    assert await backend.xrange("s", after=str(ms - 1)) == [(entry_id, b"v")]
    assert await backend.xrange("s", after=str(ms + 1)) == []


async def test_xrange_pages_through_a_stream(backend: StateBackend) -> None:
    for i in range(25):
        await backend.xadd("s", str(i).encode())
    seen: list[bytes] = []
    after = "0"
    while page := await backend.xrange("s", after=after, count=10):
        seen += [value for _, value in page]
        after = page[-1][0]
    assert seen == [str(i).encode() for i in range(25)]


async def test_xadd_maxlen_keeps_at_least_the_newest_entries(backend: StateBackend) -> None:
    for i in range(500):
        await backend.xadd("s", str(i).encode(), maxlen=10)
    kept = [value for _, value in await backend.xrange("s", count=1000)]
    # Memory trims exactly; Redis trims in whole blocks (MAXLEN ~) and may keep more.
    assert 10 <= len(kept) < 500
    assert kept[-10:] == [str(i).encode() for i in range(490, 500)]


async def test_streams_are_shared_by_every_view(backend: StateBackend, peer: StateBackend) -> None:
    entry_id = await backend.xadd("s", b"v")
    assert await peer.xrange("s") == [(entry_id, b"v")]


# -- bad input ------------------------------------------------------------------------------

BAD_CALLS: list[tuple[str, str, tuple[Any, ...], dict[str, Any], type[Exception], str]] = [
    ("window 0", "count", ([("k", 0)], T0), {}, ValueError, "window must be at least 0.001"),
    ("window -1", "count", ([("k", -1)], T0), {}, ValueError, "window must be at least 0.001"),
    ("window nan", "count", ([("k", float("nan"))], T0), {}, ValueError, "window must be finite"),
    ("window str", "count", ([("k", "60")], T0), {}, TypeError, "window must be a number"),
    ("hit shape", "count", ([("k",)], T0), {}, TypeError, "each hit must be a (key, window"),
    ("empty key", "count", ([("", 60)], T0), {}, ValueError, "counter key must not be empty"),
    ("now inf", "count", ([("k", 60)], float("inf")), {}, ValueError, "now must be finite"),
    ("amount <0", "count", ([("k", 60)], T0), {"amount": -1}, ValueError, "amount must be >= 0"),
    ("amount bool", "count", ([("k", 60)], T0), {"amount": True}, TypeError, "amount must be an"),
    ("key int", "get", (1,), {}, TypeError, "key must be a string, got int"),
    ("key empty", "set", ("", b"v"), {}, ValueError, "key must not be empty"),
    ("value str", "set", ("k", "v"), {}, TypeError, "value must be bytes, got str"),
    ("ttl 0", "set", ("k", b"v"), {"ttl": 0}, ValueError, "ttl must be positive"),
    ("ttl -1", "set", ("k", b"v"), {"ttl": -1}, ValueError, "ttl must be positive"),
    ("ttl nan", "set", ("k", b"v"), {"ttl": float("nan")}, ValueError, "ttl must be finite"),
    ("cas expected", "compare_and_set", ("k", "v", b"n"), {}, TypeError, "expected must be"),
    ("cas new", "compare_and_set", ("k", None, "n"), {}, TypeError, "value must be bytes"),
    ("cas ttl", "compare_and_set", ("k", None, b"n", 0), {}, ValueError, "ttl must be"),
    ("hash name", "hget", ("", "f"), {}, ValueError, "hash name must not be empty"),
    ("hash field", "hset", ("h", "", b"v"), {}, ValueError, "hash field must not be empty"),
    ("hash value", "hset", ("h", "f", 1), {}, TypeError, "value must be bytes, got int"),
    ("hcas expected", "hcas", ("h", "f", 1, b"v"), {}, TypeError, "expected must be bytes"),
    ("channel", "publish", ("", b"m"), {}, ValueError, "channel must not be empty"),
    ("message", "publish", ("c", "m"), {}, TypeError, "value must be bytes, got str"),
    ("handler", "subscribe", ("c", None), {}, TypeError, "handler must be callable"),
    ("stream", "xadd", ("", b"v"), {}, ValueError, "stream must not be empty"),
    ("maxlen 0", "xadd", ("s", b"v"), {"maxlen": 0}, ValueError, "maxlen must be >= 1"),
    ("after", "xrange", ("s",), {"after": "last"}, ValueError, "stream id must look like"),
    ("after -", "xrange", ("s",), {"after": "1-"}, ValueError, "stream id must look like"),
    ("after int", "xrange", ("s",), {"after": 5}, TypeError, "stream id must be a string"),
    ("count 0", "xrange", ("s",), {"count": 0}, ValueError, "count must be >= 1"),
    ("after 2**64", "xrange", ("s", str(2**64)), {}, ValueError, "stream id out of range"),
]


@pytest.mark.parametrize(
    ("method", "args", "kwargs", "error", "message"),
    [call[1:] for call in BAD_CALLS],
    ids=[call[0] for call in BAD_CALLS],
)
async def test_bad_arguments_are_refused_with_a_clear_error(
    backend: StateBackend,
    method: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        await getattr(backend, method)(*args, **kwargs)


async def test_ping_answers(backend: StateBackend) -> None:
    await backend.ping()
