"""Redis-only behaviour: URLs, names in Redis, a dead Redis, recovery, same answers as memory."""

from __future__ import annotations

import asyncio
import random
import shutil
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import ConfigError
from gateway.state import MemoryBackend, RedisBackend, StateUnavailable, open_backend
from gateway.state.redis import _coalesced

PATIENCE = 10.0  # a hang guard, not a timing assertion
T0 = 1_700_000_000.0
REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
async def shared(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisBackend]:
    state = RedisBackend(redis_url, redis_prefix)
    await state.start()
    yield state
    await state.close()


# -- URLs -----------------------------------------------------------------------------------


def test_open_backend_picks_the_backend_from_the_url() -> None:
    assert isinstance(open_backend("memory"), MemoryBackend)
    assert isinstance(open_backend("redis://127.0.0.1:6379/15"), RedisBackend)
    assert isinstance(open_backend("rediss://cache.example:6380/0"), RedisBackend)
    assert isinstance(open_backend("unix:///run/redis.sock?db=2"), RedisBackend)
    assert isinstance(open_backend("redis://localhost"), RedisBackend)


BAD_URLS = [
    ("", "state URL is empty; expected 'memory' or a redis:// URL"),
    ("   ", "state URL is empty; expected 'memory' or a redis:// URL"),
    (
        "Memory",
        "state URL 'Memory': unsupported scheme ''; expected 'memory', redis://, rediss://, "
        "unix://, redis+sentinel:// or redis+cluster://",
    ),
    (
        "http://127.0.0.1:6379",
        "state URL 'http://127.0.0.1:6379': unsupported scheme 'http'; expected 'memory', "
        "redis://, rediss://, unix://, redis+sentinel:// or redis+cluster://",
    ),
    ("redis://", "state URL 'redis://': has no host (redis://HOST:PORT/DB)"),
    ("redis://:6379/0", "state URL 'redis://:6379/0': has no host (redis://HOST:PORT/DB)"),
    (
        "redis://host:99999/0",
        "state URL 'redis://host:99999/0': cannot be parsed (Port out of range 0-65535)",
    ),
    (
        "redis://host:port/0",
        "state URL 'redis://host:port/0': cannot be parsed (Port could not be cast to integer "
        "value as 'port')",
    ),
    ("redis://host:0/0", "state URL 'redis://host:0/0': port must be from 1 to 65535"),
    (
        "redis://host/db15",
        "state URL 'redis://host/db15': the path must be a database number such as /15, "
        "got '/db15'",
    ),
    (
        "redis://host/0?timeout=3",
        "state URL 'redis://host/0?timeout=3': unknown parameter 'timeout' (known: db, "
        "ssl_ca_certs, ssl_cert_reqs, ssl_certfile, ssl_check_hostname, ssl_keyfile)",
    ),
    ("redis://host/?db=x", "state URL 'redis://host/?db=x': db must be a database number, got 'x'"),
    ("redis://host/0#frag", "state URL 'redis://host/0#frag': must not have a #fragment"),
    ("unix://", "state URL 'unix://': has no socket path (unix:///path/to/redis.sock)"),
    (
        "redis+sentinel://",
        "state URL 'redis+sentinel://': has no host "
        "(redis+sentinel://HOST:PORT[,HOST:PORT]/MASTER/DB)",
    ),
    (
        "redis+sentinel://s1:26379,s2:26379",
        "state URL 'redis+sentinel://s1:26379,s2:26379': the path must be /MASTER or "
        "/MASTER/DB (redis+sentinel://HOST:PORT[,HOST:PORT]/MASTER/DB), got ''",
    ),
    (
        "redis+sentinel://s1:26379/mymaster/x",
        "state URL 'redis+sentinel://s1:26379/mymaster/x': the database must be a number, got 'x'",
    ),
    (
        "redis+sentinel://s1:26379,,s2/mymaster",
        "state URL 'redis+sentinel://s1:26379,,s2/mymaster': has an empty host in its host list",
    ),
    (
        "redis+sentinel://s1:0/mymaster",
        "state URL 'redis+sentinel://s1:0/mymaster': port must be from 1 to 65535",
    ),
    (
        "redis+sentinel://s1:26379/mymaster?db=2",
        "state URL 'redis+sentinel://s1:26379/mymaster?db=2': unknown parameter 'db' (known: "
        "ssl_ca_certs, ssl_cert_reqs, ssl_certfile, ssl_check_hostname, ssl_keyfile)",
    ),
    (
        "redis+cluster://n1:7000,n2:7001/0",
        "state URL 'redis+cluster://n1:7000,n2:7001/0': a cluster has one database and no "
        "path; got '/0'",
    ),
    (
        "redis+cluster://n1:x",
        "state URL 'redis+cluster://n1:x': host 'n1:x' cannot be parsed (Port could not be "
        "cast to integer value as 'x')",
    ),
    (
        "redis+cluster://",
        "state URL 'redis+cluster://': has no host (redis+cluster://HOST:PORT[,HOST:PORT])",
    ),
    (
        "redis://[::1/0",
        "state URL 'redis://[::1/0': cannot be parsed (Invalid IPv6 URL)",
    ),
]


@pytest.mark.parametrize(("url", "message"), BAD_URLS, ids=[u or "empty" for u, _ in BAD_URLS])
def test_bad_urls_give_one_config_error_naming_the_problem(url: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        open_backend(url)
    assert str(caught.value) == message


def test_config_errors_never_show_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        open_backend("redis://user:s3cret@host/x")
    assert str(caught.value) == (
        "state URL 'redis://user:***@host/x': the path must be a database number such as /15, "
        "got '/x'"
    )


@pytest.mark.parametrize("prefix", ["", None])
def test_an_empty_prefix_is_refused(prefix: Any) -> None:
    with pytest.raises(ConfigError, match=r"^state prefix must be a non-empty string$"):
        open_backend("redis://127.0.0.1/15", prefix)


# -- names in Redis -------------------------------------------------------------------------


async def test_names_in_redis_carry_the_prefix(
    shared: RedisBackend, sync_redis: redis.Redis, redis_prefix: str
) -> None:
    await shared.set("k", b"v")
    await shared.hset("h", "f", b"v")
    await shared.xadd("s", b"v")
    await shared.count([("c", 60)], T0)
    names = {key.decode() for key in sync_redis.scan_iter(match=f"{redis_prefix}*")}
    bucket = int(T0 * 1000) // 60_000
    assert names == {
        f"{redis_prefix}kv:k",
        f"{redis_prefix}hash:h",
        f"{redis_prefix}stream:s",
        f"{redis_prefix}count:c:60000:{bucket}",
    }


async def test_counter_buckets_expire_after_two_windows(
    shared: RedisBackend, sync_redis: redis.Redis, redis_prefix: str
) -> None:
    await shared.count([("c", 60)], T0)
    ttl_ms = sync_redis.pttl(f"{redis_prefix}count:c:60000:{int(T0 * 1000) // 60_000}")
    assert 0 < ttl_ms <= 121_000


async def test_backends_on_other_prefixes_share_nothing(
    shared: RedisBackend, redis_url: str, redis_prefix: str
) -> None:
    other = RedisBackend(redis_url, f"{redis_prefix}other:")
    await other.start()
    try:
        received: list[bytes] = []
        await other.subscribe("c", received.append)
        await shared.set("k", b"v")
        await shared.count([("c", 60)], T0)
        await shared.publish("c", b"m")
        await other.publish("c", b"own")
        async with asyncio.timeout(PATIENCE):
            while not received:
                await asyncio.sleep(0.01)
        assert received == [b"own"]
        assert await other.get("k") is None
        assert await other.count([("c", 60)], T0, amount=0) == [0]
    finally:
        await other.close()


async def test_count_answers_like_memory_for_the_same_sequence(shared: RedisBackend) -> None:
    memory = MemoryBackend()
    pairs = [(key, window) for key in ("a", "b") for window in (0.5, 5, 60)]
    for seed in range(5):
        rng = random.Random(seed)
        clock = T0 + seed * 1000
        for _ in range(150):
            clock += rng.uniform(0, 2)
            now = clock - rng.uniform(0, 0.5)  # callers' clocks may lag by up to a bucket
            hits = [(f"{seed}:{k}", w) for k, w in rng.sample(pairs, rng.randint(1, len(pairs)))]
            amount = rng.choice([0, 1, 1, 1, 3])
            assert await shared.count(hits, now, amount) == await memory.count(hits, now, amount)


async def test_concurrent_counts_answer_like_the_same_calls_in_order(
    shared: RedisBackend,
) -> None:
    # Concurrent calls share script runs (batches); answers are as if run one by one.
    memory = MemoryBackend()
    calls = [([("a", 10), ("b", 60), ("a", 10)], T0 + i * 0.05, i % 3) for i in range(300)]
    together = await asyncio.gather(*(shared.count(h, now, n) for h, now, n in calls))
    assert together == [await memory.count(h, now, n) for h, now, n in calls]


# -- a Redis that does not answer -----------------------------------------------------------

CALLS: list[tuple[str, Callable[[RedisBackend], Awaitable[object]]]] = [
    ("start", lambda s: s.start()),
    ("ping", lambda s: s.ping()),
    ("count", lambda s: s.count([("k", 60)], T0)),
    ("get", lambda s: s.get("k")),
    ("set", lambda s: s.set("k", b"v", ttl=5)),
    ("delete", lambda s: s.delete("k")),
    ("compare_and_set", lambda s: s.compare_and_set("k", None, b"v")),
    ("hget", lambda s: s.hget("h", "f")),
    ("hset", lambda s: s.hset("h", "f", b"v")),
    ("hdel", lambda s: s.hdel("h", "f")),
    ("hgetall", lambda s: s.hgetall("h")),
    ("hcas", lambda s: s.hcas("h", "f", None, b"v")),
    ("publish", lambda s: s.publish("c", b"m")),
    ("subscribe", lambda s: s.subscribe("c", print)),
    ("xadd", lambda s: s.xadd("s", b"v", maxlen=10)),
    ("xrange", lambda s: s.xrange("s")),
]


@pytest.mark.parametrize("call", [c for _, c in CALLS], ids=[name for name, _ in CALLS])
async def test_every_method_raises_state_unavailable_when_redis_is_down(
    call: Callable[[RedisBackend], Awaitable[object]],
) -> None:
    state = RedisBackend(f"redis://127.0.0.1:{free_port()}/0", "datagate-test:")
    try:
        async with asyncio.timeout(PATIENCE):
            with pytest.raises(StateUnavailable, match=r"^redis: "):
                await call(state)
    finally:
        await state.close()


# -- recovery after a Redis restart ---------------------------------------------------------


class RedisServer:
    """A throwaway redis-server on its own port, so the test can stop and restart it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        assert REDIS_SERVER is not None
        self.process = subprocess.Popen(
            [
                *(REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.asyncio.Redis.from_url(self.url, socket_connect_timeout=0.2)
        try:
            await eventually(client.ping)
        finally:
            await client.aclose()

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


async def eventually(call: Callable[[], Awaitable[Any]]) -> Any:
    """Retry `call` until it stops failing, within the hang guard."""
    async with asyncio.timeout(PATIENCE):
        while True:
            try:
                return await call()
            except (StateUnavailable, redis.RedisError, OSError):
                await asyncio.sleep(0.05)


@pytest.fixture
async def own_redis() -> AsyncIterator[RedisServer]:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed: cannot test recovery after a restart")
    server = RedisServer(free_port())
    await server.start()
    yield server
    server.stop()


async def test_backend_recovers_after_redis_restarts(own_redis: RedisServer) -> None:
    state = RedisBackend(own_redis.url, "datagate-test:")
    publisher = RedisBackend(own_redis.url, "datagate-test:")
    early: list[bytes] = []
    late: list[bytes] = []
    reconnects: list[str] = []

    async def reread() -> None:
        reconnects.append("async")

    state.on_reconnect(lambda: reconnects.append("sync"))
    state.on_reconnect(reread)
    try:
        await state.start()
        await state.subscribe("policy", early.append)
        assert reconnects == []  # the first connection is not a reconnect
        await state.set("k", b"v")
        assert await state.count([("c", 60)], T0) == [1]

        own_redis.stop()
        with pytest.raises(StateUnavailable):
            await state.get("k")
        with pytest.raises(StateUnavailable):
            await state.count([("c", 60)], T0)
        with pytest.raises(StateUnavailable):
            await state.subscribe("breakers", late.append)

        await own_redis.start()
        # The data was not persisted; the Lua scripts are gone from the new server's cache.
        assert await eventually(lambda: state.get("k")) is None
        assert await state.count([("c", 60)], T0) == [1]
        assert await state.compare_and_set("k", None, b"v2") is True
        assert await state.hcas("h", "f", None, b"v") is True

        # The listener reconnects and resubscribes both channels, the one subscribed while
        # Redis was down included.
        async with asyncio.timeout(PATIENCE):
            while not (early and late):
                await publisher.publish("policy", b"p")
                await publisher.publish("breakers", b"b")
                await asyncio.sleep(0.05)
        assert set(early) == {b"p"}
        assert set(late) == {b"b"}
        # Messages published while it was away are lost: the views were told to re-read.
        assert reconnects[:2] == ["sync", "async"]
    finally:
        await state.close()
        await publisher.close()


async def test_a_hung_redis_gives_state_unavailable_instead_of_a_hang(
    own_redis: RedisServer,
) -> None:
    state = RedisBackend(own_redis.url, "datagate-test:", timeout=0.2, health_interval=0.2)
    publisher = RedisBackend(own_redis.url, "datagate-test:")
    received: list[bytes] = []
    try:
        await state.subscribe("policy", received.append)
        await state.set("k", b"v")
        assert own_redis.process is not None
        own_redis.process.send_signal(signal.SIGSTOP)  # accepts connections, never answers
        try:
            async with asyncio.timeout(PATIENCE):
                with pytest.raises(StateUnavailable):
                    await state.get("k")
                with pytest.raises(StateUnavailable):
                    await state.count([("c", 60)], T0)
                # The listener's unanswered PING makes it drop the connection and reconnect.
                while state._pubsub is not None:
                    await asyncio.sleep(0.05)
        finally:
            own_redis.process.send_signal(signal.SIGCONT)
        assert await eventually(lambda: state.get("k")) == b"v"
        async with asyncio.timeout(PATIENCE):
            while not received:
                await publisher.publish("policy", b"p")
                await asyncio.sleep(0.05)
    finally:
        await state.close()
        await publisher.close()


def _script(store: dict[str, int], keys: list[str], args: list[int]) -> list[int]:
    """The count script's semantics (without expiry), for checking what is sent to it."""
    out = []
    for i in range(0, len(keys), 2):
        store[keys[i]] = store.get(keys[i], 0) + args[i]
        out += (store[keys[i]], store.get(keys[i + 1], 0))
    return out


@given(
    st.lists(
        st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 3)), min_size=1, max_size=4),
        min_size=1,
        max_size=12,
    )
)
def test_a_coalesced_batch_answers_each_call_as_if_run_alone_in_order(
    calls: list[list[tuple[str, int]]],
) -> None:
    """Repeated counters go to Redis once per batch, with their summed amounts."""
    batch = [
        (
            [k for key, _ in hits for k in (f"{key}:1", f"{key}:0")],
            [a for _, amount in hits for a in (amount, 60_000)],
            None,
        )
        for hits in calls
    ]
    one_by_one: dict[str, int] = {"a:0": 5}
    expected = [_script(one_by_one, keys, args) for keys, args, _ in batch]
    keys, args, answer = _coalesced(batch)  # type: ignore[arg-type]
    assert len(set(keys[::2])) == len(keys) // 2, "each counter is sent once"
    together: dict[str, int] = {"a:0": 5}
    assert answer(_script(together, keys, args)) == expected
    assert together == one_by_one
