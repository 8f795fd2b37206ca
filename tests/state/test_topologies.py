"""Sentinel and Cluster specifics: durable writes that wait for a replica, counters' hash
tags on a Cluster, and the `state` config section's checks."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot
from structlog.testing import capture_logs

from gateway.configtree import Secret
from gateway.errors import ConfigError
from gateway.state import RedisBackend, StateUnavailable
from gateway.state.config import StateConfig
from loadtests.topologies import ClusterTopology, SentinelTopology
from tests.conftest import require_topology_tools

T0 = 1_700_000_000.0


async def test_a_durable_write_is_on_the_replica_when_it_returns(
    own_sentinel: SentinelTopology,
) -> None:
    prefix = f"t:{uuid.uuid4().hex}:"
    state = RedisBackend(own_sentinel.url, prefix, timeout=2.0, wait_replicas=1, wait_timeout=2)
    await state.start()
    try:
        for n in range(20):
            await state.hset("breakers", f"b{n}", b"open")
            # Read from the replica at once: WAIT returned only once it had the write.
            assert own_sentinel.replica.client.hget(f"{prefix}hash:breakers", f"b{n}") == b"open"
    finally:
        await state.close()


async def test_a_write_the_replica_cannot_take_stands_and_is_logged(
    own_sentinel: SentinelTopology,
) -> None:
    prefix = f"t:{uuid.uuid4().hex}:"
    state = RedisBackend(own_sentinel.url, prefix, timeout=2.0, wait_replicas=1, wait_timeout=0.2)
    await state.start()
    os.kill(own_sentinel.replica.process.pid, signal.SIGSTOP)
    try:
        with capture_logs() as logs:
            assert await state.hcas("grants", "g1", None, b"grant") is True
        assert await state.hget("grants", "g1") == b"grant"  # on the master all the same
        lagging = [e for e in logs if e["event"] == "state.replication_lagging"]
        assert lagging == [
            {
                "event": "state.replication_lagging",
                "log_level": "warning",
                "replicas": 0,
                "wanted": 1,
                "wait_ms": 200,
            }
        ]
    finally:
        os.kill(own_sentinel.replica.process.pid, signal.SIGCONT)
        await state.close()


async def test_a_counter_keeps_its_two_buckets_on_one_cluster_slot(
    cluster_topology: ClusterTopology,
) -> None:
    prefix = f"t:{uuid.uuid4().hex}:"
    state = RedisBackend(cluster_topology.url, prefix, timeout=2.0)
    await state.start()
    try:
        hits = [(f"p:user{n}", 60.0) for n in range(12)]
        assert await state.count(hits, T0) == [1] * 12
        assert await state.count(hits, T0 + 61) == [1] * 12  # the next bucket, read with its pair
    finally:
        await state.close()
    keys: list[bytes] = []
    for server in cluster_topology.servers:
        keys += server.client.keys(f"{prefix}count:*")
    assert len(keys) == 24
    by_counter: dict[bytes, set[int]] = {}
    for key in keys:
        counter = key.rpartition(b":")[0]
        by_counter.setdefault(counter, set()).add(key_slot(key))
    assert len(by_counter) == 12 and all(len(slots) == 1 for slots in by_counter.values())
    assert len({s for slots in by_counter.values() for s in slots}) > 1  # spread over slots


def test_a_cluster_client_does_not_follow_a_wait_it_cannot_place() -> None:
    with pytest.raises(ConfigError) as caught:
        RedisBackend("redis+cluster://127.0.0.1:7000", wait_replicas=1)
    assert str(caught.value) == "state.wait_replicas: not supported with redis+cluster:// URLs"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"password": Secret("x")}, "state.password: the memory backend takes no password"),
        ({"wait_replicas": 1}, "state.wait_replicas: the memory backend has no replicas"),
        (
            {"url": "redis://r:6379/0", "sentinel_password": Secret("x")},
            "state.sentinel_password: only for redis+sentinel:// URLs",
        ),
        (
            {"url": "redis+cluster://r:7000", "wait_replicas": 1},
            "state.wait_replicas: not supported with redis+cluster:// URLs",
        ),
        (
            {"url": "redis+sentinel://:pw@s1:26379"},
            "state.url: state URL 'redis+sentinel://:***@s1:26379': the path must be /MASTER or "
            "/MASTER/DB (redis+sentinel://HOST:PORT[,HOST:PORT]/MASTER/DB), got ''",
        ),
    ],
)
def test_the_state_section_refuses_what_cannot_work(
    section: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        StateConfig(**section).validate("state")  # type: ignore[arg-type]
    assert str(caught.value) == message


async def test_a_password_protected_sentinel_topology(tmp_path: Path) -> None:
    require_topology_tools()
    topology = SentinelTopology(
        tmp_path / "redis", password="s3cret-data", sentinel_password="s3cret-watch"
    )
    try:
        prefix = f"t:{uuid.uuid4().hex}:"
        wrong = RedisBackend(topology.url, prefix, timeout=2.0, sentinel_password="s3cret-watch")
        with pytest.raises(StateUnavailable) as refused:
            await wrong.start()
        assert "authenticated" in str(refused.value)
        await wrong.close()
        state = RedisBackend(
            topology.url,
            prefix,
            timeout=2.0,
            password="s3cret-data",
            sentinel_password="s3cret-watch",
        )
        await state.start()
        try:
            await state.set("k", b"v")
            assert await state.get("k") == b"v"
        finally:
            await state.close()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=topology.sentinels[0].port).ping()
    finally:
        topology.stop()


@pytest.mark.parametrize("path", ["//0", "/%20/0", "//mymaster"])
def test_a_sentinel_url_with_a_blank_master_name_is_refused(path: str) -> None:
    url = f"redis+sentinel://:s3cret@s1:26379,[::1]:26380{path}"
    with pytest.raises(ConfigError) as caught:
        StateConfig(url=url).validate("state")  # type: ignore[arg-type]
    assert "the master name is empty" in str(caught.value)
    assert "s3cret" not in str(caught.value)
