"""Fixtures for the TLS tests: the session's certificates, a recording upstream that can
serve over TLS (and ask for a client certificate), and gateway configs with TLS sections."""

from __future__ import annotations

import contextlib
import dataclasses
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.gateway.conftest import gateway_config
from tests.tls.pki import PKI, make_pki

ID_CARD = "110105194912310038"
MASKED_ID_CARD = "110105********0038"

CATALOG = """
datasets:
  - {id: open, route: /api/open/, upstream: up, owner: ops, level: 1, sharing: unconditional}
  - id: secret
    route: /api/secret/
    upstream: up
    owner: ops
    level: 2
    sharing: unconditional
    fields: [{name: id_card, level: 3, strategy: resident_id}]
"""


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@dataclasses.dataclass
class Seen:
    path: str
    secure: bool
    headers: dict[str, str]
    client_subject: Any  # the gateway's certificate as the upstream saw it (upstream mTLS)


class RecordsUpstream:
    """A real upstream on loopback that answers one record with an identifier in it and
    records what reached it."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.url = ""
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        self.seen.append(
            Seen(request.path, request.secure, dict(request.headers), (peer or {}).get("subject"))
        )
        return web.json_response({"id": "1", "id_card": ID_CARD, "city": "北京"})


@contextlib.asynccontextmanager
async def serving(
    upstream: RecordsUpstream, context: ssl.SSLContext | None = None
) -> AsyncIterator[RecordsUpstream]:
    runner = web.AppRunner(upstream.app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    upstream.url = f"{'https' if context else 'http'}://127.0.0.1:{port}"
    try:
        yield upstream
    finally:
        await runner.cleanup()


def server_context(
    pki: PKI, *, client_ca: Path | None = None, other: bool = False
) -> ssl.SSLContext:
    """An upstream's TLS context: `other` serves a certificate from the other CA."""
    issued = pki.other_server if other else pki.server
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(issued.cert, issued.key)
    if client_ca is not None:
        context.load_verify_locations(cafile=client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


@pytest.fixture
async def upstream() -> AsyncIterator[RecordsUpstream]:
    async with serving(RecordsUpstream()) as up:
        yield up


def listener_tls(pki: PKI, **extra: Any) -> dict[str, Any]:
    return {"cert_file": str(pki.server.cert), "key_file": str(pki.server.key), **extra}


def tls_config(
    tmp_path: Path, upstream_url: str, rows: str = "", upstream_tls: Any = None, **sections: Any
) -> Any:
    """The TLS tests' gateway config, like tests/gateway's, with `sections` merged in (e.g.
    server={"tls": ...}) and the upstream `up` at `upstream_url` with `upstream_tls`."""
    up: dict[str, Any] = {"url": upstream_url}
    if upstream_tls is not None:
        up["tls"] = upstream_tls
    return gateway_config(tmp_path, {"up": up}, CATALOG, rows, **sections)
