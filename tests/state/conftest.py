"""The state suites' backends: the contract runs on memory, one Redis, Sentinel and Cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.state import StateBackend
from tests.conftest import open_test_backend


@pytest.fixture(params=["memory", "redis", "sentinel", "cluster"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[StateBackend]:
    """A started backend of each kind and topology, on this test's own prefix."""
    state = open_test_backend(request.param, request)
    await state.start()
    yield state
    await state.close()
