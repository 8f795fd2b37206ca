"""Fixtures for the proxy tests: a recording upstream on loopback and a gateway in front."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.app import Gateway
from gateway.config import parse_config
from gateway.identity.mint import mint_token

REPO = Path(__file__).resolve().parents[2]


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
        if tail.endswith("html"):
            return web.Response(text="<p>110105194912310038</p>", content_type="text/html")
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
  - id: secret
    route: /api/secret/
    upstream: up
    owner: ops
    level: 2
    sharing: unconditional
    fields: [{name: id_card, level: 3, strategy: resident_id}]
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


SECRET = "gateway-tests-signing-key-0123456789abcdef"


def identity_section(secret: str = SECRET) -> dict[str, Any]:
    """The identity section of the test configs: one HS256 issuer, `tests`, and the key
    `datagate token` signs with."""
    return {
        "issuers": [
            {"issuer": "tests", "audience": "datagate", "algorithms": ["HS256"], "secret": secret}
        ],
        "signing_key": {"key": secret},
    }


def gateway_config(
    tmp_path: Path,
    upstreams: dict[str, str | dict[str, Any]],
    catalog: str,
    rows: str = "",
    **extra: Any,
) -> Any:
    """A config with its own policies folder: `catalog`, the shipped model, and `rows`;
    each upstream is a URL or its whole config section; `extra` sections are merged in."""
    policies = tmp_path / "policies"
    policies.mkdir(exist_ok=True)
    (policies / "catalog.yaml").write_text(catalog)
    shutil.copy(REPO / "policies" / "model.conf", policies / "model.conf")
    (policies / "policy.csv").write_text(rows)
    data = {
        "upstreams": {
            name: {"url": up} if isinstance(up, str) else up for name, up in upstreams.items()
        },
        "server": {"host": "127.0.0.1", "port": 0},
        "admin": {"host": "127.0.0.1", "port": 0},
        "identity": identity_section(),
        "policy": {"dir": str(policies), "watch": False},
        "data_dir": str(tmp_path / "data"),
    }
    for section, values in extra.items():
        data.setdefault(section, {}).update(values)
    return parse_config(data, base_dir=tmp_path, environ={})


@dataclasses.dataclass
class RunningGateway:
    gateway: Gateway
    session: aiohttp.ClientSession
    url: str
    admin_url: str
    port: int

    def token(self, **claims: Any) -> str:
        args = {"sub": "alice", "dept": "market-regulation", "clearance": 1, **claims}
        args.setdefault("now", self.gateway.clock())
        return mint_token(self.gateway.config.identity, **args)

    def auth(self, **claims: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(**claims)}"}

    async def get(self, path: str, **kw: Any) -> aiohttp.ClientResponse:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> aiohttp.ClientResponse:
        return await self.request("POST", path, **kw)

    async def request(
        self, method: str, path: str, *, auth: bool = True, **kw: Any
    ) -> aiohttp.ClientResponse:
        headers = {**(self.auth() if auth else {}), **kw.pop("headers", {})}
        return await self.session.request(method, self.url + path, headers=headers, **kw)


@contextlib.asynccontextmanager
async def running_gateway(config: Any, clock: Any = None) -> Any:
    gateway = Gateway(config) if clock is None else Gateway(config, clock=clock)
    await gateway.start()
    data_url, admin_url = gateway.urls()
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        try:
            yield RunningGateway(
                gateway, session, data_url, admin_url, gateway.listeners[0].bound_port or 0
            )
        finally:
            await gateway.stop()


@pytest.fixture
async def proxy(upstream: Any, tmp_path: Path) -> Any:
    config = gateway_config(
        tmp_path,
        {"up": upstream.url, "dead": f"http://127.0.0.1:{closed_port()}"},
        CATALOG,
        "p, user:alice, open, write, allow\n",
        server={"request_max_bytes": 1024, "max_path_length": 256},
    )
    async with running_gateway(config) as running:
        yield running


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
        auth = f"Authorization: Bearer {proxy.token()}\r\n"
        req = f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{auth}{extra}\r\n"
        return await raw_http(proxy.port, req.encode("utf-8"))

    return get
