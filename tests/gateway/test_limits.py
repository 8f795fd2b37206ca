"""Hard rate limits: counted in the state backend, refused with 503 when they cannot be."""

from __future__ import annotations

import pytest

from gateway.errors import GatewayError
from gateway.limits import Limit, LimitsConfig, RateLimiter
from gateway.state import MemoryBackend, RedisBackend
from tests.breaker.conftest import make_ctx
from tests.gateway.conftest import closed_port


async def test_over_the_limit_is_429_with_retry_after() -> None:
    limiter = RateLimiter(MemoryBackend(), LimitsConfig(per_principal=Limit(2, 60.0)))
    for _ in range(2):
        await limiter.check(make_ctx(now=1_700_000_010.0))
    with pytest.raises(GatewayError) as caught:
        await limiter.check(make_ctx(now=1_700_000_010.0))
    assert (caught.value.status, caught.value.reason) == (429, "principal_limit")
    assert caught.value.headers == {"Retry-After": "30"}


async def test_a_limit_that_cannot_be_counted_refuses_with_its_own_reason() -> None:
    dead = RedisBackend(f"redis://127.0.0.1:{closed_port()}/0", "datagate-test:", timeout=0.2)
    limiter = RateLimiter(dead, LimitsConfig())
    try:
        with pytest.raises(GatewayError) as caught:
            await limiter.check(make_ctx())
    finally:
        await dead.close()
    assert caught.value.body("r") == {
        "error": "unavailable",
        "message": "rate limits cannot be checked (the state backend is unavailable); refusing",
        "reason": "rate_limit_unavailable",
        "request_id": "r",
    }
