"""Fixtures for the proxy tests: a recording upstream on loopback and a gateway in front."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway.app import Gateway
from gateway.config import parse_config
from gateway.policy.catalog import parse_catalog


@dataclasses.dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


class RecordingUpstream:
    """A real upstream that records every request it receives."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.app = web.Application(client_max_size=1024**3)
        self.app.router.add_route("*", "/{tail:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(
            Seen(
                request.method,
                request.path,
                request.raw_path.partition("?")[2],
                dict(request.headers),
                body,
            )
        )
        tail = request.match_info["tail"]
        if tail.endswith("slow"):
            await asyncio.sleep(5)
        if tail.endswith("big"):
            response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
            await response.prepare(request)
            for _ in range(64):
                await response.write(b"x" * 65536)
            await response.write_eof()
            return response
        if tail.endswith("lie"):
            response = web.StreamResponse(headers={"Content-Length": "1000"})
            await response.prepare(request)
            await response.write(b"short")
            request.transport.close()
            return response
        return web.json_response(
            {"path": request.path, "query": request.query_string, "len": len(body)},
            headers={
                "Connection": "keep-alive, X-Secret-Hop",
                "X-Secret-Hop": "1",
                "Keep-Alive": "timeout=5",
                "X-Upstream": "yes",
            },
        )


CATALOG = """
datasets:
  - {id: open, route: /api/open/, upstream: up, owner: ops, level: 1, sharing: unconditional}
  - {id: auth, route: /api/auth/, upstream: up, owner: ops, level: 1, sharing: unconditional,
     forward_authorization: true}
  - {id: quick, route: /api/quick/, upstream: up, owner: ops, level: 1, sharing: unconditional,
     timeouts: {connect: 1, total: 0.5}}
  - {id: down, route: /api/down/, upstream: dead, owner: ops, level: 1, sharing: unconditional}
"""


@pytest.fixture
async def upstream(aiohttp_server: Any) -> Any:
    rec = RecordingUpstream()
    server = await aiohttp_server(rec.app)
    rec.url = str(server.make_url("")).rstrip("/")  # type: ignore[attr-defined]
    return rec


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def proxy(upstream: Any, aiohttp_client: Any, tmp_path: Path) -> Any:
    config = parse_config(
        {
            "upstreams": {
                "up": {"url": upstream.url},
                "dead": {"url": f"http://127.0.0.1:{closed_port()}"},
            },
            "server": {"request_max_bytes": 1024, "max_path_length": 256},
        },
        base_dir=tmp_path,
        environ={},
    )
    gateway = Gateway(config)
    catalog = parse_catalog(CATALOG)
    pipeline = gateway.build_pipeline(lambda: catalog)
    await gateway.components["forward"].start()
    from gateway.app import data_app

    client = await aiohttp_client(data_app(pipeline))
    client.gateway = gateway
    yield client
    await gateway.components["forward"].close()


async def raw_http(port: int, request: bytes) -> tuple[int, bytes]:
    """Send bytes exactly as given (no client normalisation); return (status, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    return status, body


@pytest.fixture
def raw_get(proxy: Any) -> Any:
    async def get(target: str, extra: str = "") -> tuple[int, bytes]:
        req = f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{extra}\r\n"
        return await raw_http(proxy.port, req.encode("utf-8"))

    return get
