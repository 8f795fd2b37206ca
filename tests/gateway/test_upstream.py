"""The upstream client against real servers on loopback: reuse, limits, framing, failures."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import struct
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from gateway.policy.catalog import Timeouts
from gateway.upstream import UpstreamFailure, UpstreamPool
from tests.gateway.conftest import CATALOG, closed_port, gateway_config, running_gateway

QUICK = Timeouts(connect=2.0, total=5.0)
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawUpstream:
    """A TCP server whose handler writes raw bytes: the test says exactly what is sent."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await self.handler(reader, writer)
        writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"


@contextlib.asynccontextmanager
async def raw_upstream(handler: Handler) -> AsyncIterator[RawUpstream]:
    up = RawUpstream(handler)
    up.server = await asyncio.start_server(up._serve, "127.0.0.1", 0)
    try:
        yield up
    finally:
        up.server.close()
        await up.server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One request's head, and its body when it has a Content-Length or is chunked."""
    head = await reader.readuntil(b"\r\n\r\n")
    lower = head.lower()
    body = b""
    if b"content-length:" in lower:
        length = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
        body = await reader.readexactly(length)
    elif b"transfer-encoding: chunked" in lower:
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += data[:-2]
    return head, body


def answer(body: bytes = b'{"ok":true}', *extra: bytes) -> bytes:
    head = [b"HTTP/1.1 200 OK", b"Content-Type: application/json", *extra]
    head.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def keep_alive(response: bytes) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(response)
            await writer.drain()

    return handler


async def get(pool: UpstreamPool, path: str = "/x", **kwargs: Any) -> tuple[int, bytes]:
    response = await pool.request(
        kwargs.pop("method", "GET"),
        path,
        kwargs.pop("headers", []),
        None,
        length=None,
        timeouts=kwargs.pop("timeouts", QUICK),
    )
    try:
        return response.status, await response.read()
    finally:
        response.release()


async def test_sequential_requests_reuse_one_connection() -> None:
    async with raw_upstream(keep_alive(answer())) as up:
        pool = UpstreamPool("up", up.url, 4)
        for _ in range(20):
            assert await get(pool) == (200, b'{"ok":true}')
        await pool.close()
    assert up.connections == 1


async def test_the_pool_never_opens_more_than_its_size() -> None:
    active = 0
    most = 0

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal active, most
        while True:
            await read_request(reader)
            active += 1
            most = max(most, active)
            await asyncio.sleep(0.05)
            active -= 1
            writer.write(answer())
            await writer.drain()

    async with raw_upstream(slow) as up:
        pool = UpstreamPool("up", up.url, 2)
        results = await asyncio.gather(*(get(pool) for _ in range(8)))
        await pool.close()
    assert all(status == 200 for status, _ in results)
    assert up.connections == 2
    assert most == 2


async def test_a_request_waiting_for_a_full_pool_times_out() -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    async with raw_upstream(stall) as up:
        pool = UpstreamPool("up", up.url, 1)
        first = asyncio.ensure_future(get(pool, timeouts=Timeouts(1.0, 3.0)))
        await asyncio.sleep(0.1)
        with pytest.raises(UpstreamFailure) as err:
            await get(pool, timeouts=Timeouts(1.0, 0.3))
        assert err.value.kind == "timeout"
        first.cancel()
        await pool.close()


async def test_a_kept_alive_connection_the_upstream_closed_is_retried_for_a_get() -> None:
    async def one_per_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        await read_request(reader)
        writer.write(answer())  # says nothing about closing, then closes
        await writer.drain()

    async with raw_upstream(one_per_connection) as up:
        pool = UpstreamPool("up", up.url, 1)
        assert await get(pool) == (200, b'{"ok":true}')
        await asyncio.sleep(0.1)  # the upstream's close has arrived
        assert await get(pool) == (200, b'{"ok":true}')
        await pool.close()
    assert up.connections == 2


@pytest.mark.parametrize(
    ("response", "body"),
    [
        # chunked, with an extension and a trailer
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n",
            b"hello world",
        ),
        # no length: the body ends when the connection closes
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end", b"until the end"),
        (b"HTTP/1.0 200 OK\r\n\r\nold style", b"old style"),
        # interim answers before the real one
        (b"HTTP/1.1 100 Continue\r\n\r\n" + answer(b"after 100"), b"after 100"),
        (b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + answer(b"after 103"), b"after 103"),
        (b"HTTP/1.1 204 No Content\r\n\r\n", b""),
    ],
)
async def test_response_framing(response: bytes, body: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(response)
        await writer.drain()
        await asyncio.sleep(0.05)

    async with raw_upstream(handler) as up:
        pool = UpstreamPool("up", up.url, 1)
        status, got = await get(pool)
        await pool.close()
    assert got == body
    assert status in (200, 204)


async def test_head_answers_with_a_length_end_at_the_headers() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head, _ = await read_request(reader)
            if head.startswith(b"HEAD"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            else:
                writer.write(answer(b"after head"))
            await writer.drain()

    async with raw_upstream(handler) as up:
        pool = UpstreamPool("up", up.url, 1)
        response = await pool.request("HEAD", "/x", [], None, length=None, timeouts=QUICK)
        assert (response.status, response.content_length, await response.read()) == (
            200,
            1000,
            b"",
        )
        response.release()
        # The HEAD's connection is not reused: llhttp would read the next answer as a body.
        assert await get(pool) == (200, b"after head")
        await pool.close()
    assert up.connections == 2


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "malformed",
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", "malformed"),
        (b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 0\r\n\r\n", "malformed"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "malformed"),
        (b"garbage\r\n\r\n", "malformed"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", "closed the connection early"),
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", "switched protocols"),
        (
            b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(200)) + b"\r\n",
            "too many or too large headers",
        ),
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"v" * 70_000 + b"\r\n\r\n", "too many or too large"),
        (b"", "closed the connection early"),
    ],
)
async def test_bad_responses_are_errors(response: bytes, message: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(response)
        await writer.drain()

    async with raw_upstream(handler) as up:
        pool = UpstreamPool("up", up.url, 1)
        with pytest.raises(UpstreamFailure, match=message) as err:
            await get(pool)
        assert err.value.kind == "error"
        await pool.close()


async def test_the_total_timeout_covers_a_body_that_stalls() -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirst bytes")
        await writer.drain()
        await asyncio.sleep(5)

    async with raw_upstream(stall) as up:
        pool = UpstreamPool("up", up.url, 1)
        response = await pool.request("GET", "/x", [], None, length=None, timeouts=Timeouts(1, 0.3))
        with pytest.raises(UpstreamFailure) as err:
            await response.read()
        assert err.value.kind == "timeout"
        response.release()
        await pool.close()


async def test_connect_failures_are_errors() -> None:
    with contextlib.closing(__import__("socket").socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    pool = UpstreamPool("up", f"http://127.0.0.1:{port}", 1)
    with pytest.raises(UpstreamFailure, match="cannot connect") as err:
        await get(pool)
    assert err.value.kind == "error"
    await pool.close()


async def test_request_bodies_keep_their_length_or_go_chunked() -> None:
    seen: list[tuple[bytes, bytes]] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            seen.append(await read_request(reader))
            writer.write(answer())
            await writer.drain()

    async def body() -> AsyncIterator[bytes]:
        yield b"hello "
        yield b""
        yield b"world"

    async with raw_upstream(record) as up:
        host = up.url.removeprefix("http://")
        pool = UpstreamPool("up", up.url, 1)
        for length in (11, None):
            response = await pool.request(
                "POST", "/x?q=1", [("X-A", "1")], body(), length=length, timeouts=QUICK
            )
            await response.read()
            response.release()
        response = await pool.request("PUT", "/empty", [], None, length=None, timeouts=QUICK)
        await response.read()
        response.release()
        await pool.close()
    (first, body1), (second, body2), (third, body3) = seen
    assert first.startswith(b"POST /x?q=1 HTTP/1.1\r\n")
    assert b"\r\nContent-Length: 11\r\n" in first and b"chunked" not in first.lower()
    assert b"\r\nTransfer-Encoding: chunked\r\n" in second
    assert body1 == body2 == b"hello world"
    assert b"\r\nContent-Length: 0\r\n" in third and body3 == b""
    assert f"\r\nHost: {host}\r\n".encode() in first


async def test_a_header_with_a_line_break_is_never_sent() -> None:
    pool = UpstreamPool("up", "http://127.0.0.1:1", 1)
    for name, value in (("X-A", "1\r\nX-Injected: 2"), ("X-A", "1\n"), ("X-A\r", "1")):
        with pytest.raises(UpstreamFailure, match="line break"):
            await pool.request("GET", "/x", [(name, value)], None, length=None, timeouts=QUICK)
    await pool.close()


async def test_a_streamed_body_arrives_whole_with_back_pressure() -> None:
    piece = b"y" * 65536

    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (len(piece) * 64))
        for _ in range(64):
            writer.write(piece)
            await writer.drain()

    async with raw_upstream(big) as up:
        pool = UpstreamPool("up", up.url, 1)
        response = await pool.request("GET", "/big", [], None, length=None, timeouts=QUICK)
        total = 0
        async for chunk in response.iter_chunks():
            total += len(chunk)
            await asyncio.sleep(0)  # a slow reader: the connection pauses and resumes
        response.release()
        await pool.close()
    assert total == len(piece) * 64


async def test_bad_upstream_urls_are_config_errors() -> None:
    from gateway.errors import ConfigError

    for url in ("ftp://x", "http://", "127.0.0.1:80"):
        with pytest.raises(ConfigError, match=r"upstreams\.up\.url"):
            UpstreamPool("up", url, 1)


# --- through the gateway --------------------------------------------------------------------


async def test_expect_100_continue_is_answered_after_the_request_is_authorised(
    proxy: Any, upstream: Any
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(
        b"POST /api/open/items HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n"
        b"Expect: 100-continue\r\nAuthorization: Bearer " + proxy.token().encode() + b"\r\n\r\n"
    )
    await writer.drain()
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert interim.startswith(b"HTTP/1.1 100 Continue")
    writer.write(b"hello")
    await writer.drain()
    final = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    writer.close()
    assert final.startswith(b"HTTP/1.1 200")
    assert upstream.seen[-1].body == b"hello"
    assert "Expect" not in upstream.seen[-1].headers


async def test_a_refused_request_never_invites_its_body(proxy: Any, upstream: Any) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(
        b"POST /api/open/items HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n"
        b"Expect: 100-continue\r\n\r\n"
    )
    await writer.drain()
    first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    writer.close()
    assert first.startswith(b"HTTP/1.1 401")
    assert not upstream.seen


async def test_an_unsupported_expectation_is_400(proxy: Any, upstream: Any) -> None:
    resp = await proxy.post("/api/open/items", data=b"x", headers={"Expect": "something-else"})
    assert resp.status == 400
    assert (await resp.json())["reason"] == "bad_expect"
    assert not upstream.seen


async def test_a_compressed_request_body_reaches_the_upstream_as_sent(tmp_path: Any) -> None:
    seen: list[tuple[bytes, bytes]] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            seen.append(await read_request(reader))
            writer.write(answer())
            await writer.drain()

    packed = gzip.compress(b'{"q": "x"}')
    async with raw_upstream(record) as up:
        config = gateway_config(
            tmp_path,
            {"up": up.url, "dead": f"http://127.0.0.1:{closed_port()}"},
            CATALOG,
            "p, user:alice, open, write, allow\n",
        )
        async with running_gateway(config) as gw:
            resp = await gw.post(
                "/api/open/items",
                data=packed,
                headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
            )
            assert resp.status == 200
    head, body = seen[-1]
    assert body == packed
    assert b"\r\nContent-Encoding: gzip\r\n" in head


async def test_an_answer_before_the_whole_request_body_is_returned() -> None:
    """An upstream that refuses a large upload at once (413) and closes: the answer comes
    back, no hang and no error."""

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbig"
        )
        await writer.drain()

    async def upload() -> AsyncIterator[bytes]:
        for _ in range(64):
            yield b"z" * 65536
            await asyncio.sleep(0.005)

    async with raw_upstream(refuse) as up:
        pool = UpstreamPool("up", up.url, 1)
        response = await pool.request(
            "POST", "/upload", [], upload(), length=64 * 65536, timeouts=QUICK
        )
        assert (response.status, await response.read()) == (413, b"big")
        response.release()
        await pool.close()


# --- found in review: each of these failed before its fix ---------------------------------


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST instead of a FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def test_a_stalled_upload_times_out_and_frees_its_connection() -> None:
    async def wait(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(answer())
            await writer.drain()

    async def stalls() -> AsyncIterator[bytes]:
        yield b"first part"
        await asyncio.sleep(30)  # the client stops sending
        yield b"never"

    async with raw_upstream(wait) as up:
        pool = UpstreamPool("up", up.url, 1)
        with pytest.raises(UpstreamFailure, match="body did not arrive in time") as err:
            await pool.request("POST", "/x", [], stalls(), length=100, timeouts=Timeouts(1, 0.3))
        assert err.value.kind == "timeout"
        assert await get(pool) == (200, b'{"ok":true}'), "the pool slot came back"
        await pool.close()


async def test_an_early_answer_on_a_kept_alive_connection_stops_the_upload() -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer(b"refused"))  # keeps the connection, never reads the body
        await writer.drain()
        await asyncio.sleep(30)

    async def upload() -> AsyncIterator[bytes]:
        for _ in range(512):
            yield b"u" * 65536

    async with raw_upstream(refuse) as up:
        pool = UpstreamPool("up", up.url, 1)
        # Not a timing check: without the fix the upload waits for the upstream to read,
        # which it never does, and the total timeout was cancelled by the answer.
        response = await asyncio.wait_for(
            pool.request("POST", "/x", [], upload(), length=512 * 65536, timeouts=Timeouts(1, 60)),
            20,
        )
        assert (response.status, await response.read()) == (200, b"refused")
        response.release()
        # Half a request body went up: that connection is never used again.
        assert not pool._idle
        await pool.close()


async def test_a_reset_in_a_body_without_a_length_is_an_error_not_its_end() -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\n\r\nid,name\r\n1,al")
        await writer.drain()
        await asyncio.sleep(0.1)
        reset(writer)

    async with raw_upstream(cut) as up:
        pool = UpstreamPool("up", up.url, 1)
        response = await pool.request("GET", "/x", [], None, length=None, timeouts=QUICK)
        with pytest.raises(UpstreamFailure, match="closed the connection early"):
            [chunk async for chunk in response.iter_chunks()]
        response.release()
        await pool.close()


async def test_bytes_after_an_answer_are_never_taken_as_the_next_answer() -> None:
    async def split(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        # An answer, then in the same write the start of another nobody asked for.
        writer.write(answer(b"for-A") + b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n")
        await writer.drain()
        await read_request(reader)
        writer.write(b"\r\nsomeone's" + answer(b"for-B"))
        await writer.drain()

    async with raw_upstream(split) as up:
        pool = UpstreamPool("up", up.url, 1)
        assert await get(pool) == (200, b"for-A")
        # The second request gets a connection of its own, and the first answer again.
        assert await get(pool) == (200, b"for-A")
        await pool.close()
    assert up.connections == 2


async def test_an_endless_header_is_refused_at_the_limit() -> None:
    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nX-Flood: ")
        with contextlib.suppress(ConnectionError):
            for _ in range(256):  # 16 MiB, never ending the header
                writer.write(b"f" * 65536)
                await writer.drain()

    async with raw_upstream(flood) as up:
        pool = UpstreamPool("up", up.url, 1)
        tracemalloc.start()
        try:
            with pytest.raises(UpstreamFailure, match="too many or too large headers"):
                await get(pool)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        await pool.close()
    assert peak < 4 << 20, f"{peak >> 20} MiB traced for one header"


@pytest.mark.parametrize("status", [b"099", b"600", b"999"])
async def test_a_status_outside_100_to_599_is_an_error(status: bytes) -> None:
    async with raw_upstream(
        keep_alive(b"HTTP/1.1 " + status + b" X\r\nContent-Length: 0\r\n\r\n")
    ) as up:
        pool = UpstreamPool("up", up.url, 1)
        with pytest.raises(UpstreamFailure, match="invalid status"):
            await get(pool)
        await pool.close()


async def test_a_turn_given_to_a_waiter_at_its_deadline_is_passed_on() -> None:
    async with raw_upstream(keep_alive(answer(b"ok"))) as up:
        pool = UpstreamPool("up", up.url, 1)
        loop = asyncio.get_running_loop()
        held = await pool.request("GET", "/a", [], None, length=None, timeouts=QUICK)
        await held.read()
        at = loop.time() + 0.2
        loop.call_at(at, held.release)  # given back exactly at the first waiter's deadline
        first = asyncio.ensure_future(pool._acquire(1.0, at))
        await asyncio.sleep(0.01)
        second = asyncio.ensure_future(get(pool, timeouts=Timeouts(1, 2)))
        with contextlib.suppress(UpstreamFailure):
            conn = await first
            pool._release(conn, True)
        assert await asyncio.wait_for(second, 1.5) == (200, b"ok")
        await pool.close()


async def test_a_connection_back_in_the_pool_is_reading_again() -> None:
    big = b"z" * 300_000
    async with raw_upstream(keep_alive(answer(big))) as up:
        pool = UpstreamPool("up", up.url, 1)
        response = await pool.request("GET", "/1", [], None, length=None, timeouts=QUICK)
        await asyncio.sleep(0.3)  # the whole body is in before it is read: reading paused
        assert await response.read() == big
        response.release()
        assert await get(pool, timeouts=Timeouts(1, 2)) == (200, big)
        await pool.close()
    assert up.connections == 1


async def test_a_client_that_goes_away_mid_upload_is_recorded_as_a_bad_body(
    proxy: Any, upstream: Any
) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(
        b"POST /api/open/items HTTP/1.1\r\nHost: gw\r\nContent-Length: 100\r\n"
        b"Authorization: Bearer " + proxy.token().encode() + b"\r\n\r\n0123456789"
    )
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.transport.abort()
    requests = proxy.gateway.metrics.requests
    for _ in range(50):
        if ("open", "400", "deny") in requests._requests:
            break
        await asyncio.sleep(0.05)
    assert ("open", "400", "deny") in requests._requests
    assert not any(status == "503" for _, status, _ in requests._requests)


async def test_digests_and_validators_of_the_unmasked_body_never_reach_the_caller(
    tmp_path: Any,
) -> None:
    """A digest or ETag of the body as the upstream sent it would let a caller confirm
    guesses of what was masked in it; on a masked route none of them is passed on."""
    headers = [
        b'ETag: "u-1"',
        b"Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==",
        b"Digest: sha-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=",
        b"Content-Digest: sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
        b"Repr-Digest: sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
        b"X-Kept: yes",
    ]
    body = b'{"id_card": "11010519491231002X"}'
    async with raw_upstream(keep_alive(answer(body, *headers))) as up:
        config = gateway_config(
            tmp_path,
            {"up": up.url, "dead": f"http://127.0.0.1:{closed_port()}"},
            CATALOG,
        )
        async with running_gateway(config) as gw:
            resp = await gw.get("/api/secret/1", headers=gw.auth(clearance=2))
            assert resp.status == 200
            assert (await resp.json())["id_card"] == "110105********002X"
            assert resp.headers["X-Kept"] == "yes"
            for name in ("ETag", "Content-MD5", "Digest", "Content-Digest", "Repr-Digest"):
                assert name not in resp.headers, name
