"""JWKS keys from a file and from a real HTTP server: kid rotation, bounded refresh, TTL."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.errors import GatewayError
from gateway.identity.verifier import Verifier
from tests.identity.helpers import (
    AUDIENCE,
    ISSUER,
    Clock,
    KeyPair,
    claims,
    identity_config,
    jwks,
    sign,
)

ServerFactory = Callable[..., Awaitable[TestServer]]


class KeyServer:
    """A real JWKS endpoint on a loopback port, whose answer a test changes."""

    def __init__(self) -> None:
        self.body = jwks()
        self.status = 200
        self.hits = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        return web.Response(status=self.status, body=self.body, content_type="application/json")


@pytest.fixture
async def key_server(aiohttp_server: ServerFactory) -> tuple[KeyServer, str]:
    state = KeyServer()
    app = web.Application()
    app.router.add_get("/jwks", state.handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    return state, str(server.make_url("/jwks"))


def jwks_config(source: dict[str, Any], **jwks_over: Any) -> Any:
    return identity_config(
        [
            {
                "issuer": ISSUER,
                "audience": AUDIENCE,
                "algorithms": ["RS256", "PS256", "ES256"],
                "jwks": {**source, "refresh_interval": 30, "cache_ttl": 300, **jwks_over},
            }
        ]
    )


async def reason(verifier: Verifier, token: str) -> str | None:
    with pytest.raises(GatewayError) as info:
        await verifier.verify(token)
    return info.value.reason


async def test_url_rotation_with_bounded_refresh(
    key_server: tuple[KeyServer, str], clock: Clock, rsa_key: KeyPair, rsa_key2: KeyPair
) -> None:
    server, url = key_server
    server.body = jwks(rsa_key.jwk("k1"))
    verifier = Verifier(jwks_config({"url": url}), None, clock=clock)
    await verifier.start()
    try:
        assert server.hits == 1
        old = sign(claims(), rsa_key.private, "RS256", kid="k1")
        assert (await verifier.verify(old)).subject == "alice"

        # The issuer rotates to k2 and withdraws k1.
        server.body = jwks(rsa_key2.jwk("k2"))
        new = sign(claims(sub="bob"), rsa_key2.private, "RS256", kid="k2")
        clock.advance(10)
        for kid in ("k2", "forged-1", "forged-2"):  # within refresh_interval: no fetch
            token = sign(claims(), rsa_key2.private, "RS256", kid=kid)
            assert await reason(verifier, token) == "bad_signature"
        assert server.hits == 1

        clock.advance(20)
        assert (await verifier.verify(new)).subject == "bob"
        assert server.hits == 2
        # k1 is gone: its cached token is dropped too.
        assert await reason(verifier, old) == "bad_signature"
        assert server.hits == 2
    finally:
        await verifier.close()


async def test_cache_ttl_refreshes_in_the_background(
    key_server: tuple[KeyServer, str], clock: Clock, ec_key: KeyPair
) -> None:
    server, url = key_server
    server.body = jwks(ec_key.jwk("e1"))
    verifier = Verifier(jwks_config({"url": url}), None, clock=clock)
    await verifier.start()
    try:
        await verifier.verify(sign(claims(), ec_key.private, "ES256", kid="e1"))
        clock.advance(299)
        await verifier.verify(sign(claims(), ec_key.private, "ES256", kid="e1"))
        await verifier.settle()
        assert server.hits == 1
        clock.advance(1)
        await verifier.verify(sign(claims(), ec_key.private, "ES256", kid="e1"))
        await verifier.settle()
        assert server.hits == 2
    finally:
        await verifier.close()


async def test_failed_fetch_keeps_the_last_keys(
    key_server: tuple[KeyServer, str], clock: Clock, rsa_key: KeyPair
) -> None:
    server, url = key_server
    server.body = jwks(rsa_key.jwk("k1"))
    verifier = Verifier(jwks_config({"url": url}), None, clock=clock)
    await verifier.start()
    try:
        server.status = 500
        clock.advance(30)
        assert await reason(verifier, sign(claims(), rsa_key.private, "RS256", kid="k9")) == (
            "bad_signature"
        )
        assert server.hits == 2
        assert await verifier.verify(sign(claims(), rsa_key.private, "RS256", kid="k1"))
    finally:
        await verifier.close()


async def test_unreachable_key_set_is_unavailable(clock: Clock, rsa_key: KeyPair) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = jwks_config({"url": f"http://127.0.0.1:{port}/jwks"}, timeout=1)
    verifier = Verifier(cfg, None, clock=clock)
    await verifier.start()
    try:
        with pytest.raises(GatewayError) as info:
            await verifier.verify(sign(claims(), rsa_key.private, "RS256", kid="k1"))
        assert (info.value.status, info.value.reason) == (503, "jwks_unavailable")
    finally:
        await verifier.close()


async def test_skipped_keys_and_alg_bound_keys(
    key_server: tuple[KeyServer, str], clock: Clock, rsa_key: KeyPair, ec_key: KeyPair
) -> None:
    server, url = key_server
    server.body = jwks(
        {"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", "kid": "hmac"},
        rsa_key.jwk("r1", "RS256"),
        ec_key.jwk("e1"),
    )
    verifier = Verifier(jwks_config({"url": url}), None, clock=clock)
    await verifier.start()
    try:
        assert await verifier.verify(sign(claims(), rsa_key.private, "RS256", kid="r1"))
        # The JWK says RS256: the same key must not verify PS256.
        ps = sign(claims(), rsa_key.private, "PS256", kid="r1")
        assert await reason(verifier, ps) == "bad_signature"
        # An EC key cannot verify an RSA algorithm, whatever the kid says.
        assert await reason(verifier, sign(claims(), rsa_key.private, "RS256", kid="e1")) == (
            "bad_signature"
        )
    finally:
        await verifier.close()


async def test_jwks_file_rotation(
    tmp_path: Path, clock: Clock, rsa_key: KeyPair, rsa_key2: KeyPair
) -> None:
    path = tmp_path / "jwks.json"
    path.write_bytes(jwks(rsa_key.jwk("k1")))
    verifier = Verifier(jwks_config({"file": str(path)}), None, clock=clock)
    await verifier.start()
    try:
        assert await verifier.verify(sign(claims(), rsa_key.private, "RS256", kid="k1"))
        path.write_bytes(jwks(rsa_key.jwk("k1"), rsa_key2.jwk("k2")))
        new = sign(claims(), rsa_key2.private, "RS256", kid="k2")
        assert await reason(verifier, new) == "bad_signature"  # refreshed at start: bounded
        clock.advance(30)
        assert (await verifier.verify(new)).subject == "alice"
        jwks_source = verifier.jwks(ISSUER)
        assert jwks_source is not None and jwks_source.fetches == 2
    finally:
        await verifier.close()
