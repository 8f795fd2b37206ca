"""Shared fixtures: a real Redis for the state tests, unique key prefixes, both backends;
and hypothesis settings that do not time examples (CI machines are shared and loaded)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
from hypothesis import settings

from gateway.state import MemoryBackend, RedisBackend, StateBackend
from loadtests.topologies import REDIS_CLI, REDIS_SERVER, ClusterTopology, SentinelTopology
from tests.support import delete_prefix

settings.register_profile("datagate", deadline=None)
settings.load_profile("datagate")

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"


def _shown(url: str) -> str:
    """The URL without credentials, for skip and failure messages."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else url


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis: DATAGATE_TEST_REDIS_URL, or the default database 15 on localhost.

    Skips (with the reason shown by `-ra`) when nothing answers, unless
    DATAGATE_REQUIRE_REDIS=1, when the test fails instead.
    """
    url = os.environ.get("DATAGATE_TEST_REDIS_URL", DEFAULT_REDIS_URL)
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        reason = f"no Redis answers at {_shown(url)} ({exc})"
        if os.environ.get("DATAGATE_REQUIRE_REDIS") == "1":
            pytest.fail(f"{reason}; DATAGATE_REQUIRE_REDIS=1 requires one", pytrace=False)
        pytest.skip(f"{reason}; set DATAGATE_TEST_REDIS_URL or start redis-server")
    finally:
        client.close()
    return url


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix used by this test only; every key under it is deleted afterwards."""
    prefix = f"datagate-test:{uuid.uuid4().hex}:"
    yield prefix
    delete_prefix(redis_url, prefix)


def require_topology_tools() -> None:
    if REDIS_SERVER is None or REDIS_CLI is None:
        reason = "no redis-server/redis-cli to start Sentinel and Cluster topologies"
        if os.environ.get("DATAGATE_REQUIRE_REDIS") == "1":
            pytest.fail(f"{reason}; DATAGATE_REQUIRE_REDIS=1 requires them", pytrace=False)
        pytest.skip(f"{reason} (apt-get install redis-server)")


@pytest.fixture(scope="session")
def sentinel_topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelTopology]:
    """A master, a replica and three Sentinels for the session's contract tests."""
    require_topology_tools()
    topology = SentinelTopology(tmp_path_factory.mktemp("sentinel"))
    yield topology
    topology.stop()


@pytest.fixture(scope="session")
def cluster_topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterTopology]:
    """A three-master Redis Cluster for the session's contract tests."""
    require_topology_tools()
    topology = ClusterTopology(tmp_path_factory.mktemp("cluster"))
    yield topology
    topology.stop()


@pytest.fixture
def own_sentinel(tmp_path: Path) -> Iterator[SentinelTopology]:
    """A Sentinel topology of this test's own, for tests that stop or kill its servers."""
    require_topology_tools()
    topology = SentinelTopology(tmp_path / "redis")
    yield topology
    topology.stop()


def open_test_backend(kind: str, request: pytest.FixtureRequest) -> StateBackend:
    """A backend of `kind` (memory, redis, sentinel, cluster) on this test's own prefix."""
    if kind == "memory":
        return MemoryBackend()
    prefix = request.getfixturevalue("redis_prefix")
    if kind == "redis":
        return RedisBackend(request.getfixturevalue("redis_url"), prefix)
    topology = request.getfixturevalue(f"{kind}_topology")
    # Topologies' servers are the session's own: their keys go with them.
    return RedisBackend(topology.url, prefix, timeout=2.0)


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[StateBackend]:
    """A started backend of each kind; the Redis one uses this test's own prefix."""
    state = open_test_backend(request.param, request)
    await state.start()
    yield state
    await state.close()


@pytest.fixture
async def peer(
    backend: StateBackend, request: pytest.FixtureRequest
) -> AsyncIterator[StateBackend]:
    """Another process's view of `backend`'s state: a second Redis backend on the same
    prefix; for memory, which is one process's state, the backend itself."""
    if backend.name == "memory":
        yield backend
        return
    other = open_test_backend(request.node.callspec.params["backend"], request)
    await other.start()
    yield other
    await other.close()
