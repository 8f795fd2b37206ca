"""Breaker test helpers: a settable clock and small config/context builders."""

from __future__ import annotations

import socket

import pytest
from aiohttp.test_utils import make_mocked_request

from gateway.breaker.config import BreakerConfig
from gateway.context import RequestContext
from gateway.identity.principal import Principal
from gateway.policy.catalog import Dataset


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def config() -> BreakerConfig:
    return BreakerConfig(
        cooldown_base=60.0,
        cooldown_cap=300.0,
        half_open_probes=2,
        anomaly_min_requests=10,
        anomaly_rate=0.5,
        anomaly_window=60.0,
        reload_interval=0.05,
        stale_after=5.0,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_ctx(
    subject: str = "alice",
    department: str = "tax",
    dataset: str = "citizens",
    level: int = 3,
    now: float = 1_700_000_000.0,
) -> RequestContext:
    ctx = RequestContext(
        request=make_mocked_request("GET", "/citizens/1"),
        request_id="req-1",
        ts=now,
        started=0.0,
        client_ip="10.0.0.1",
        method="GET",
    )
    ctx.principal = Principal(subject=subject, department=department, clearance=3)
    ctx.dataset = Dataset(
        id=dataset,
        route=f"/{dataset}/",
        upstream="http://127.0.0.1:1",
        owner="civil",
        level=level,
    )
    return ctx
