"""OWASP API4:2023 unrestricted resource consumption: oversized headers and bodies, an
upstream decompression bomb, slow senders and floods of distinct principals are refused with
a 4xx (or 502), never a 500, and with bounded memory."""

from __future__ import annotations

import asyncio
import resource
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.gateway.conftest import running_gateway
from tests.security.helpers import (
    HostileUpstream,
    assert_no_leak,
    bearer,
    claims,
    error_of,
    exchange,
    forge,
    low,
    raw_request,
    security_config,
    send_raw,
)

OPEN = "/api/open/x"


async def _still_serving(gw: Any) -> None:
    resp = await gw.get(OPEN, headers=low(gw), auth=False)
    assert resp.status == 200


@pytest.mark.parametrize(
    "extra",
    [
        "X-Big: " + "a" * 20_000 + "\r\n",  # one field over max_header_bytes (16 KiB)
        "".join(f"X-H{i}: v\r\n" for i in range(150)),  # more than 100 fields
        "X-" + "n" * 20_000 + ": v\r\n",  # an over-long field name
    ],
    ids=["long_value", "many_fields", "long_name"],
)
async def test_huge_headers_are_a_4xx_and_never_forwarded(
    gw: Any, hostile: HostileUpstream, extra: str
) -> None:
    data = raw_request("GET", OPEN, gw.token(sub="mallory"), extra)
    status, _ = await send_raw(gw.port, data)
    assert status in (400, 431), status
    assert hostile.seen == []
    await _still_serving(gw)


async def test_an_over_long_request_line_is_a_4xx(gw: Any, hostile: HostileUpstream) -> None:
    data = raw_request("GET", OPEN + "?q=" + "a" * 20_000, gw.token(sub="mallory"))
    status, _ = await send_raw(gw.port, data)
    assert status in (400, 414), status
    assert hostile.seen == []


async def test_a_declared_body_over_the_limit_is_413_without_waiting_for_it(
    gw: Any, hostile: HostileUpstream
) -> None:
    """Content-Length says 10 MB, nothing follows: the answer comes at once."""
    token = gw.token(sub="writer")
    data = raw_request("POST", OPEN, token, "Content-Length: 10000000\r\n")
    status, body = await asyncio.wait_for(exchange(gw.port, data), timeout=5)
    assert status == 413
    assert error_of(body)["error"] == "payload_too_large"
    assert hostile.seen == []


async def test_a_chunked_body_over_the_limit_is_413(gw: Any, hostile: HostileUpstream) -> None:
    async def chunks() -> Any:
        for _ in range(10):
            yield b"x" * 1024

    resp = await gw.post(OPEN, headers=gw.auth(sub="writer"), auth=False, data=chunks())
    assert resp.status == 413
    assert hostile.seen == [], "the upstream handler never got a complete body"


async def test_a_body_within_the_limit_is_forwarded(gw: Any, hostile: HostileUpstream) -> None:
    resp = await gw.post(OPEN, headers=gw.auth(sub="writer"), auth=False, data=b"x" * 4096)
    assert resp.status == 200
    assert hostile.seen[0].body == b"x" * 4096


async def test_an_upstream_decompression_bomb_is_413_with_bounded_memory(
    gw: Any, hostile: HostileUpstream
) -> None:
    """256 MiB of gzip'd spaces (~260 KB on the wire) on a masked route."""
    from tests.security.helpers import bomb

    bomb()  # build it before measuring
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    resp = await gw.get("/api/people/bomb", headers=low(gw), auth=False)
    body = await resp.read()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert resp.status in (413, 502), body[:300]
    assert error_of(body)["error"] in ("payload_too_large", "upstream_error")
    assert_no_leak(body)
    assert (after - before) < 64 * 1024, f"peak memory grew by {(after - before) // 1024} MiB"


async def test_a_slow_sender_does_not_hold_up_other_callers(gw: Any) -> None:
    """A client that sends half a request line and stalls; others are served meanwhile."""
    _, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"GET /api/open/x HTTP/1.1\r\nHost: gw\r\nX-Slow: ")
    await writer.drain()
    try:
        for _ in range(5):
            await _still_serving(gw)
    finally:
        writer.close()


async def test_a_flood_of_distinct_principals_is_served_and_the_token_cache_stays_bounded(
    tmp_path: Path, hostile: HostileUpstream, rsa_public_pem: Path
) -> None:
    config = security_config(tmp_path, hostile, rsa_public_pem, identity={"token_cache_size": 100})
    async with running_gateway(config) as gw:
        sem = asyncio.Semaphore(50)

        async def one(i: int) -> int:
            async with sem:
                headers = gw.auth(sub=f"fake-{i}", dept=f"dept-{i % 7}")
                resp = await gw.get(f"/api/open/item{i}", headers=headers, auth=False)
                await resp.read()
                return resp.status

        statuses = await asyncio.gather(*(one(i) for i in range(500)))
        assert all(s < 500 for s in statuses), sorted(set(statuses))
        assert statuses.count(200) >= 400, sorted(set(statuses))
        assert len(gw.gateway.verifier.cache) <= 100
        # Forged tokens for 500 more subjects: all 401, none cached.
        now = time.time()
        for i in range(500):
            token = forge({"alg": "HS256"}, claims(now, sub=f"forged-{i}"), b"k" * 32)
            resp = await gw.get(OPEN, headers=bearer(token), auth=False)
            assert resp.status == 401
        assert len(gw.gateway.verifier.cache) <= 100
        resp = await gw.session.get(gw.admin_url + "/healthz")
        assert resp.status == 200


async def _read_all_or_abort(resp: Any) -> tuple[bytes, bool]:
    """The bytes received, and whether the transfer was cut off."""
    got = bytearray()
    try:
        async for chunk in resp.content.iter_any():
            got += chunk
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError):
        return bytes(got), True
    return bytes(got), False


async def test_a_large_body_over_the_decoded_limit_fails_closed(
    tmp_path: Path, hostile: HostileUpstream, rsa_public_pem: Path
) -> None:
    """A gzip'd body that inflates past `max_decoded_bytes` after streaming has begun: the
    transfer is cut off (or refused), and what was sent is masked."""
    config = security_config(
        tmp_path, hostile, rsa_public_pem, masking={"max_decoded_bytes": 512 * 1024}
    )
    async with running_gateway(config) as gw:
        resp = await gw.get("/api/people/biggzip", headers=low(gw), auth=False)
        body, aborted = await _read_all_or_abort(resp)
        assert resp.status in (413, 502) or aborted, (resp.status, len(body))
        assert_no_leak(body)


@pytest.mark.parametrize("case", ["bigbroken", "truncgzip"])
async def test_a_body_broken_mid_stream_is_cut_off_without_leaking(
    gw: Any, hostile: HostileUpstream, case: str
) -> None:
    resp = await gw.get(f"/api/people/{case}", headers=low(gw), auth=False)
    body, aborted = await _read_all_or_abort(resp)
    assert resp.status == 502 or aborted, (resp.status, len(body))
    assert_no_leak(body)


async def test_the_hard_rate_limit_answers_429_before_the_upstream(
    tmp_path: Path, hostile: HostileUpstream, rsa_public_pem: Path
) -> None:
    config = security_config(
        tmp_path,
        hostile,
        rsa_public_pem,
        limits={"per_principal": {"requests": 5, "window": 60}},
    )
    async with running_gateway(config) as gw:
        statuses = []
        for _ in range(8):
            resp = await gw.get(OPEN, headers=low(gw), auth=False)
            statuses.append(resp.status)
        assert statuses == [200] * 5 + [429] * 3
        assert int(resp.headers["Retry-After"]) >= 1
        assert error_of(await resp.read())["error"] == "rate_limited"
        assert len(hostile.seen) == 5
