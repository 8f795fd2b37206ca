"""The upstream resets connections (before, in and after the headers; small buffered bodies and
large streamed ones), ends a stream too early, stalls, or dies: the client gets 502/504 or an
aborted stream, never unmasked data, never a hang, and the pool recovers afterwards."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from tests.faults.conftest import (
    GatewayProcess,
    UpstreamProcess,
    base_config,
    error_of,
    get,
    no_leak,
    until,
    write_gateway,
)

HANG_GUARD = aiohttp.ClientTimeout(total=10)  # every gateway timeout here is 1 s
LOAD_SECONDS = 2.0
LOAD_WORKERS = 6

# Faults the gateway answers with a clean JSON error: (path case, status, code).
CLEAN_ERRORS = [
    ("reset-before-headers", 502, "upstream_error"),
    ("reset-mid-headers", 502, "upstream_error"),
    ("reset-small", 502, "upstream_error"),
    ("slow-headers", 504, "upstream_timeout"),
    ("slow-body", 504, "upstream_timeout"),
]
# Faults after the gateway has started streaming: the client's connection is aborted.
# `eof-stream` ends at a clean FIN without length or chunks; only the mask stage, which
# sees unbalanced JSON, can tell it is short, so it applies to the classified route only.
ABORTED_STREAMS = ["reset-stream", "reset-stream-length", "close-stream", "slow-stream"]
ABORTED_CLASSIFIED = [*ABORTED_STREAMS, "eof-stream"]


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream: UpstreamProcess
) -> Iterator[GatewayProcess]:
    tmp = tmp_path_factory.mktemp("upstream-faults")
    # Idle pooled connections are what a reset leaves broken: keep a small pool so the
    # recovery checks reuse the same sockets.
    config = base_config(tmp, upstream.url, upstreams={"faulty": {"pool_size": 4}})
    gw = write_gateway(tmp, config)
    gw.start()
    gw.wait_ready()
    yield gw
    assert gw.stop() == 0, gw.output()
    assert gw.log_events("stage_failed") == [], "an unexpected exception in a stage"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=HANG_GUARD, auto_decompress=False) as s:
        yield s


async def read_until_broken(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> tuple[int, bytes, bool]:
    """Status, the bytes received, and whether the body was cut off (not completed)."""
    received = bytearray()
    async with session.get(url, headers=headers) as resp:
        try:
            async for chunk in resp.content.iter_any():
                received += chunk
        except aiohttp.ClientPayloadError:
            return resp.status, bytes(received), True
        return resp.status, bytes(received), False


@pytest.mark.parametrize("route", ["people", "open"])
@pytest.mark.parametrize(("case", "status", "code"), CLEAN_ERRORS)
async def test_upstream_failures_before_the_body_is_sent_are_clean_errors(
    gateway: GatewayProcess,
    session: aiohttp.ClientSession,
    route: str,
    case: str,
    status: int,
    code: str,
) -> None:
    got, body = await get(session, f"{gateway.url}/api/{route}/{case}", gateway.auth())
    assert (got, error_of(body)[0]) == (status, code)
    no_leak(body)


@pytest.mark.parametrize("case", ABORTED_CLASSIFIED)
async def test_a_broken_stream_on_a_classified_route_is_aborted_and_stays_masked(
    gateway: GatewayProcess, session: aiohttp.ClientSession, case: str
) -> None:
    url = f"{gateway.url}/api/people/{case}"
    status, received, cut = await read_until_broken(session, url, gateway.auth())
    assert status == 200
    assert cut, "a broken upstream stream must abort the client's response, not complete it"
    assert b'"id_card":"' in received, "the masked part before the break was sent"
    no_leak(received)


@pytest.mark.parametrize("case", ABORTED_STREAMS)
async def test_a_broken_stream_on_a_level1_route_is_aborted(
    gateway: GatewayProcess, session: aiohttp.ClientSession, case: str
) -> None:
    status, received, cut = await read_until_broken(
        session, f"{gateway.url}/api/open/{case}", gateway.auth()
    )
    assert status == 200
    assert cut, "a short body must not look complete"
    assert received.startswith(b'{"items":[{"n":0,')  # it was streaming when it broke


async def test_the_unmaskable_response_is_refused(
    gateway: GatewayProcess, session: aiohttp.ClientSession
) -> None:
    status, body = await get(session, f"{gateway.url}/api/people/unmaskable", gateway.auth())
    assert (status, error_of(body)) == (502, ("upstream_error", "unsupported_content_type"))
    no_leak(body)


async def test_faults_under_load_then_the_pool_recovers(
    gateway: GatewayProcess, session: aiohttp.ClientSession
) -> None:
    """Good and broken requests interleaved from several clients at once: each gets its own
    exact outcome; then every pooled connection still serves good requests."""
    headers = gateway.auth()
    cases = itertools.cycle(
        ["ok", "big", *(c for c, _, _ in CLEAN_ERRORS), *ABORTED_CLASSIFIED, "ok"]
    )
    expected = {c: (s, code) for c, s, code in CLEAN_ERRORS}
    outcomes: list[tuple[str, str]] = []
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + LOAD_SECONDS

    async def client() -> None:
        while loop.time() < stop_at:
            case = next(cases)
            url = f"{gateway.url}/api/people/{case}"
            if case in ("ok", "big"):
                status, body = await get(session, url, headers)
                assert status == 200, body[:200]
                assert body.rstrip().endswith(b"}"), "a good response arrives whole"
                no_leak(body)
                outcomes.append((case, "whole"))
            elif case in expected:
                status, body = await get(session, url, headers)
                assert (status, error_of(body)[0]) == expected[case], case
                outcomes.append((case, "error"))
            else:
                status, received, cut = await read_until_broken(session, url, headers)
                assert status == 200 and cut, case
                no_leak(received)
                outcomes.append((case, "aborted"))

    async with asyncio.timeout(LOAD_SECONDS + 30):  # the hang guard of the whole load
        await asyncio.gather(*(client() for _ in range(LOAD_WORKERS)))
    kinds = {kind for _, kind in outcomes}
    assert kinds == {"whole", "error", "aborted"}, outcomes
    print(f"\nupstream faults under load: {len(outcomes)} requests, all as expected")

    for case in ["ok", "big"] * 10:
        status, body = await get(session, f"{gateway.url}/api/people/{case}", headers)
        assert status == 200
        no_leak(body)
    text = await metrics(session, gateway)
    assert 'upstream_errors_total{kind="timeout",route="people"}' in text


async def metrics(session: aiohttp.ClientSession, gateway: GatewayProcess) -> str:
    async with session.get(gateway.admin_url + "/metrics") as resp:
        return await resp.text()


async def test_a_dead_upstream_gives_502_and_its_return_is_picked_up(
    gateway: GatewayProcess, upstream: UpstreamProcess, session: aiohttp.ClientSession
) -> None:
    headers = gateway.auth()
    url = f"{gateway.url}/api/people/ok"
    assert (await get(session, url, headers))[0] == 200
    upstream.kill()
    try:
        for _ in range(5):
            status, body = await get(session, url, headers)
            assert (status, error_of(body)[0]) == (502, "upstream_error")
    finally:
        upstream.start()

    async def served() -> bool:
        return (await get(session, url, headers))[0] == 200

    await until(served, "requests served again once the upstream is back")
    assert 'upstream_errors_total{kind="error",route="people"}' in await metrics(session, gateway)
