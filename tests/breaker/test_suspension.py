"""The suspension stage: 423 with incident and Retry-After, probes, 503 when the view is stale."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest

from gateway.breaker.config import BreakerConfig
from gateway.breaker.store import Breakers
from gateway.errors import GatewayError
from gateway.stages.suspension import PROBES_KEY, SuspensionStage
from gateway.state import MemoryBackend, RedisBackend
from tests.breaker.conftest import Clock, free_port, make_ctx


@pytest.fixture
def config(config: BreakerConfig) -> BreakerConfig:
    # These tests move the clock by minutes; the view must stay fresh across that.
    return dataclasses.replace(config, stale_after=10_000.0)


@pytest.fixture
async def breakers(config: BreakerConfig, clock: Clock) -> AsyncIterator[Breakers]:
    backend = MemoryBackend()
    view = Breakers(backend, config, clock)
    await view.start()
    yield view
    await view.close()
    await backend.close()


async def test_closed_breakers_let_the_request_through(
    breakers: Breakers, config: BreakerConfig, clock: Clock
) -> None:
    ctx = make_ctx(now=clock.now)
    await SuspensionStage(breakers, config)(ctx)
    assert PROBES_KEY not in ctx.extra


@pytest.mark.parametrize(
    "scope,key",
    [
        ("principal", "alice"),
        ("department", "tax"),
        ("dataset", "citizens"),
        ("pair", "alice|citizens"),
    ],
)
async def test_open_breaker_refuses_with_incident_and_retry_after(
    breakers: Breakers, config: BreakerConfig, clock: Clock, scope: str, key: str
) -> None:
    await breakers.trip(scope, key, "burst", "inc-7")
    clock.advance(20)
    with pytest.raises(GatewayError) as err:
        await SuspensionStage(breakers, config)(make_ctx(now=clock.now))
    e = err.value
    assert (e.status, e.code, e.extra, e.headers) == (
        423,
        "sharing_suspended",
        {"incident_id": "inc-7"},
        {"Retry-After": "40"},
    )
    # Someone else is not affected.
    await SuspensionStage(breakers, config)(make_ctx("bob", "health", "medical", now=clock.now))


async def test_forced_open_has_no_retry_after(
    breakers: Breakers, config: BreakerConfig, clock: Clock
) -> None:
    await breakers.soc_open("principal", "alice", "soc", "hold", None, forced=True)
    with pytest.raises(GatewayError) as err:
        await SuspensionStage(breakers, config)(make_ctx(now=clock.now))
    assert err.value.status == 423 and "Retry-After" not in err.value.headers
    assert err.value.reason == "forced_open"


async def test_half_open_admits_the_configured_probes_then_refuses(
    breakers: Breakers, config: BreakerConfig, clock: Clock
) -> None:
    await breakers.trip("principal", "alice", "burst", "inc-1")
    clock.advance(61)
    stage = SuspensionStage(breakers, config)
    for _ in range(config.half_open_probes):
        ctx = make_ctx(now=clock.now)
        await stage(ctx)
        assert ctx.extra[PROBES_KEY] == ["principal:alice"]
    with pytest.raises(GatewayError) as err:
        await stage(make_ctx(now=clock.now))
    assert err.value.status == 423


async def test_an_unused_probe_is_given_back_when_another_breaker_refuses(
    breakers: Breakers, config: BreakerConfig, clock: Clock
) -> None:
    await breakers.trip("principal", "alice", "burst", "inc-1")
    await breakers.trip("dataset", "citizens", "burst", "inc-2")
    clock.advance(61)
    ctx_config = dataclasses.replace(config, half_open_probes=1)
    view = Breakers(breakers.backend, ctx_config, clock)
    await view.start()
    try:
        await view.reserve_probe("dataset:citizens")  # the dataset's only slot is taken
        with pytest.raises(GatewayError):
            await SuspensionStage(view, ctx_config)(make_ctx(now=clock.now))
        s = await view.get("principal", "alice")
        assert s is not None and (s.state, s.probes_left) == ("half_open", 1)  # given back
        again = await view.reserve_probe("principal:alice")
        assert again is not None
    finally:
        await view.close()


@pytest.mark.parametrize(
    ("level", "fail_open", "refused"),
    [(3, False, True), (2, True, True), (1, False, True), (1, True, False)],
)
async def test_untrusted_view_fails_closed(
    config: BreakerConfig, clock: Clock, level: int, fail_open: bool, refused: bool
) -> None:
    cfg = dataclasses.replace(config, level1_fail_open=fail_open)
    dead = RedisBackend(f"redis://127.0.0.1:{free_port()}/0", "t:", timeout=0.1)
    view = Breakers(dead, cfg, clock)
    await view.start()
    try:
        stage = SuspensionStage(view, cfg)
        if refused:
            with pytest.raises(GatewayError) as err:
                await stage(make_ctx(level=level, now=clock.now))
            assert (err.value.status, err.value.code, err.value.reason) == (
                503,
                "unavailable",
                "breaker_state_unavailable",
            )
        else:
            await stage(make_ctx(level=level, now=clock.now))
    finally:
        await view.close()
        await dead.close()


async def test_an_open_address_breaker_refuses_only_principals_new_to_the_address(
    breakers: Breakers, config: BreakerConfig, clock: Clock
) -> None:
    await breakers.trip("address", "10.0.0.0/24", "auth_failures: stuffing", "inc-9")
    stage = SuspensionStage(breakers, config, lambda principal, ip: principal == "alice")
    await stage(make_ctx("alice", now=clock.now))  # uses the address every day: passes
    with pytest.raises(GatewayError) as err:
        await stage(make_ctx("mallory", now=clock.now))
    assert err.value.code == "sharing_suspended"
    assert "address" in err.value.message and err.value.extra["incident_id"] == "inc-9"
    with pytest.raises(GatewayError):  # without a detector nobody is known: fail closed
        await SuspensionStage(breakers, config)(make_ctx("alice", now=clock.now))
