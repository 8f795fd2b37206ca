"""The revoked-jti deny list on both state backends: propagation, expiry, failing closed."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from gateway.errors import GatewayError
from gateway.identity.revocation import REVOKED_CHANNEL, REVOKED_HASH, RevocationList
from gateway.identity.verifier import Verifier
from gateway.state import MemoryBackend, RedisBackend, StateBackend
from tests.identity.helpers import NOW, Clock, claims, hs_issuer, identity_config, sign


@pytest.fixture(params=["memory", "redis"])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[tuple[StateBackend, StateBackend]]:
    """Two handles on one shared state, as two gateway processes would have."""
    if request.param == "memory":
        memory = MemoryBackend()
        yield memory, memory
        await memory.close()
        return
    url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
    first, second = RedisBackend(url, prefix), RedisBackend(url, prefix)
    for b in (first, second):
        await b.start()
    yield first, second
    for b in (first, second):
        await b.close()


async def started(backend: StateBackend, clock: Clock) -> RevocationList:
    revocations = RevocationList(backend, clock=clock, reload_interval=30)
    await revocations.start()
    return revocations


def reason(revocations: RevocationList, jti: str | None) -> str | None:
    try:
        revocations.check(jti)
    except GatewayError as exc:
        return exc.reason
    return None


async def eventually(condition: object) -> None:
    for _ in range(200):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never became true")


async def test_revoke_is_seen_by_every_process(
    pair: tuple[StateBackend, StateBackend], clock: Clock
) -> None:
    a, b = await started(pair[0], clock), await started(pair[1], clock)
    try:
        assert reason(a, "t1") is None and reason(b, "t1") is None
        await a.revoke("t1", NOW + 60)
        assert reason(a, "t1") == "revoked"  # at once in the revoking process
        await eventually(lambda: reason(b, "t1") == "revoked")  # via pub/sub elsewhere
        assert reason(b, "t2") is None and reason(b, None) is None
    finally:
        await a.close()
        await b.close()


async def test_entries_expire_and_reload_prunes_them(
    pair: tuple[StateBackend, StateBackend], clock: Clock
) -> None:
    revocations = await started(pair[0], clock)
    try:
        await revocations.revoke("short", NOW + 10)
        await revocations.revoke("long", NOW + 100)
        clock.advance(10)
        assert reason(revocations, "short") is None
        assert revocations.revoked() == {"long": NOW + 100}
        await revocations.reload()
        assert set(await pair[0].hgetall(REVOKED_HASH)) == {"long"}
    finally:
        await revocations.close()


async def test_a_new_process_loads_the_list(
    pair: tuple[StateBackend, StateBackend], clock: Clock
) -> None:
    first = await started(pair[0], clock)
    await first.revoke("t1", NOW + 60)
    await first.close()
    later = await started(pair[1], clock)
    try:
        assert reason(later, "t1") == "revoked"
    finally:
        await later.close()


async def test_unreadable_entries_stay_revoked_and_bad_messages_are_ignored(
    clock: Clock,
) -> None:
    backend = MemoryBackend()
    await backend.hset(REVOKED_HASH, "odd", b"not-a-number")
    revocations = await started(backend, clock)
    try:
        assert reason(revocations, "odd") == "revoked"
        for message in (b"{", b"[]", b'{"jti": 5, "until": 1}', b'{"jti": "x"}'):
            await backend.publish(REVOKED_CHANNEL, message)
        await backend.publish(REVOKED_CHANNEL, b'{"jti": "late", "until": 1900000100}')
        await eventually(lambda: reason(revocations, "late") == "revoked")
        assert reason(revocations, "x") is None
    finally:
        await revocations.close()
        await backend.close()


@pytest.mark.parametrize(
    ("jti", "until", "words"),
    [
        ("", NOW + 10, "non-empty"),
        (5, NOW + 10, "non-empty"),
        ("t", NOW - 1, "in the past"),
        ("t", "soon", "number"),
        ("t", True, "number"),
        ("t", float("nan"), "number"),
    ],
)
async def test_bad_revoke_arguments(jti: object, until: object, words: str, clock: Clock) -> None:
    revocations = await started(MemoryBackend(), clock)
    try:
        with pytest.raises(ValueError, match=words):
            await revocations.revoke(jti, until)  # type: ignore[arg-type]
    finally:
        await revocations.close()


async def test_untrusted_view_fails_closed(clock: Clock) -> None:
    backend = MemoryBackend()
    revocations = RevocationList(backend, clock=clock, age_clock=clock, reload_interval=30)
    assert reason(revocations, "t1") == "revocation_unavailable"  # never loaded
    await revocations.reload()
    assert reason(revocations, "t1") is None
    clock.advance(61)  # no reload for two intervals: the view may be stale
    with pytest.raises(GatewayError) as info:
        revocations.check("t1")
    assert info.value.status == 503
    await revocations.reload()
    assert reason(revocations, None) is None


async def test_backend_down_fails_closed(clock: Clock) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = RedisBackend(f"redis://127.0.0.1:{port}/0", "datagate-test:", timeout=0.2)
    revocations = RevocationList(backend, clock=clock, reload_interval=30)
    await revocations.start()
    try:
        assert reason(revocations, "t1") == "revocation_unavailable"
        assert reason(revocations, None) == "revocation_unavailable"
    finally:
        await revocations.close()
        await backend.close()


async def test_revoked_token_is_refused_even_when_cached(clock: Clock) -> None:
    backend = MemoryBackend()
    revocations = await started(backend, clock)
    verifier = Verifier(identity_config([hs_issuer()]), revocations, clock=clock)
    try:
        token = sign(claims(jti="stolen"))
        await verifier.verify(token)
        assert len(verifier.cache) == 1
        await revocations.revoke("stolen", NOW + 600)
        with pytest.raises(GatewayError) as info:
            await verifier.verify(token)
        assert (info.value.status, info.value.reason) == (401, "revoked")
        assert info.value.headers["WWW-Authenticate"].startswith("Bearer")
        other = sign(claims(jti="fine"))
        assert (await verifier.verify(other)).token_id == "fine"
    finally:
        await revocations.close()
        await backend.close()
