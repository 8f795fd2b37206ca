"""A data upstream as its own process, misbehaving on request: `python upstream.py PORT`.

A tiny HTTP/1.1 server on raw asyncio streams, so a test can make it fail at any byte: reset
the connection before or in the middle of the headers or the body, stop at a clean end of
stream too early, or stall. The last path segment names the behaviour (see `CASES`); every
other path answers a small JSON record. Connections are kept alive between requests, as a
pooled client expects. The records carry valid identifiers (`SECRETS`), so a test can check
that none reached a client unmasked.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import sys

import orjson

from gateway.masking.identifiers import make_bank_card, make_mobile, make_resident_id

RNG = random.Random(20240801)
ID = make_resident_id(RNG)
PHONE = make_mobile(RNG)
CARD = make_bank_card(RNG)
SECRETS = (ID, PHONE, CARD)
STALL = 30.0  # longer than any gateway timeout in the tests, shorter than for ever
BIG_RECORDS = 4000  # ~600 KB of JSON: over the gateway's 256 KiB buffer, so it streams


def record(n: int) -> dict[str, object]:
    return {"n": n, "name": "张三", "id_card": ID, "phone": PHONE, "bank_card": CARD}


SMALL = orjson.dumps({"items": [record(0)]})
BIG = orjson.dumps({"items": [record(i) for i in range(BIG_RECORDS)]})
PART = len(BIG) // 2  # where a broken stream stops: past the buffer, mid-record


def head(status: str, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunked(data: bytes, size: int = 16384) -> bytes:
    return b"".join(
        f"{len(data[i : i + size]):x}\r\n".encode() + data[i : i + size] + b"\r\n"
        for i in range(0, len(data), size)
    )


JSON = {"Content-Type": "application/json"}


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a crashed or killed upstream does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def answer(case: str, writer: asyncio.StreamWriter) -> bool:
    """Write the answer for `case`; False when the connection is finished with."""
    if case == "reset-before-headers":
        reset(writer)
        return False
    if case == "reset-mid-headers":
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Le")
        await writer.drain()
        reset(writer)
        return False
    if case == "reset-small":  # a buffered body, cut off before its Content-Length
        writer.write(head("200 OK", {**JSON, "Content-Length": str(len(SMALL))}))
        writer.write(SMALL[: len(SMALL) // 2])
        await writer.drain()
        reset(writer)
        return False
    if case == "reset-stream":  # a streamed body, cut off in the middle
        writer.write(head("200 OK", {**JSON, "Transfer-Encoding": "chunked"}))
        writer.write(chunked(BIG[:PART]))
        await writer.drain()
        reset(writer)
        return False
    if case == "reset-stream-length":  # streamed with a Content-Length, cut off
        writer.write(head("200 OK", {**JSON, "Content-Length": str(len(BIG))}))
        writer.write(BIG[:PART])
        await writer.drain()
        reset(writer)
        return False
    if case == "close-stream":  # a clean FIN before the last chunk
        writer.write(head("200 OK", {**JSON, "Transfer-Encoding": "chunked"}))
        writer.write(chunked(BIG[:PART]))
        await writer.drain()
        writer.close()
        return False
    if case == "eof-stream":  # no length, no chunks: the body ends at a clean FIN, too early
        writer.write(head("200 OK", {**JSON, "Connection": "close"}))
        writer.write(BIG[:PART])
        await writer.drain()
        writer.close()
        return False
    if case == "slow-headers":
        await asyncio.sleep(STALL)
        return False
    if case == "slow-body":  # a small body that stalls half-way
        writer.write(head("200 OK", {**JSON, "Content-Length": str(len(SMALL))}))
        writer.write(SMALL[: len(SMALL) // 2])
        await writer.drain()
        await asyncio.sleep(STALL)
        return False
    if case == "slow-stream":  # a streamed body that stalls half-way
        writer.write(head("200 OK", {**JSON, "Transfer-Encoding": "chunked"}))
        writer.write(chunked(BIG[:PART]))
        await writer.drain()
        await asyncio.sleep(STALL)
        return False
    if case == "unmaskable":  # a classified route cannot mask HTML: the gateway refuses
        body = f"<p>{ID}</p>".encode()
        html = {"Content-Type": "text/html", "Content-Length": str(len(body))}
        writer.write(head("200 OK", html))
        writer.write(body)
    elif case == "big":
        writer.write(head("200 OK", {**JSON, "Transfer-Encoding": "chunked"}))
        writer.write(chunked(BIG) + b"0\r\n\r\n")
    else:
        writer.write(head("200 OK", {**JSON, "Content-Length": str(len(SMALL))}))
        writer.write(SMALL)
    await writer.drain()
    return True


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                request = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                return
            target = request.split(b" ", 2)[1].decode("latin-1")
            case = target.partition("?")[0].rstrip("/").rsplit("/", 1)[-1]
            if not await answer(case, writer):
                return
    except (ConnectionError, OSError):
        return
    finally:
        if not writer.transport.is_closing():
            writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(serve, "127.0.0.1", port, reuse_address=True)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
