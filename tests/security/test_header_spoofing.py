"""Header spoofing and hop-by-hop abuse: client-supplied forwarding and identity headers are
replaced or stripped and never change a decision; `Connection` cannot make the gateway drop
its own headers or forward the caller's token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from tests.gateway.conftest import running_gateway
from tests.security.helpers import HostileUpstream, assert_no_leak, low, security_config

IDENTITY_SPOOF = {
    "X-User": "zhao",
    "X-User-Id": "zhao",
    "X-Department": "public-security",
    "X-Dept": "public-security",
    "X-Clearance": "4",
    "X-Roles": "soc",
    "X-Forwarded-User": "zhao",
    "X-Forwarded-Groups": "soc",
    "X-Remote-User": "zhao",
    "Remote-User": "zhao",
    "X-Auth-Request-User": "zhao",
    "X-Authenticated-Userid": "zhao",
    "X-Consumer-Username": "zhao",
    "X-Principal": "zhao",
    "X-Jwt-Claims": '{"clearance":4}',
}
FORWARDING_SPOOF = {
    "X-Forwarded-For": "10.9.9.9, 10.8.8.8",
    "X-Real-IP": "10.9.9.9",
    "Forwarded": "for=10.9.9.9;proto=https",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Port": "443",
}


async def test_x_forwarded_for_from_an_untrusted_peer_is_replaced(
    gw: Any, hostile: HostileUpstream
) -> None:
    resp = await gw.get("/api/open/x", headers={**low(gw), **FORWARDING_SPOOF}, auth=False)
    assert resp.status == 200
    seen = hostile.seen[0].headers
    assert seen["X-Forwarded-For"] == "127.0.0.1"
    assert seen["X-Forwarded-Proto"] == "http"
    for name in ("X-Real-IP", "Forwarded", "X-Forwarded-Port"):
        assert name not in seen, name
    await gw.gateway.audit.flush()
    events = [orjson.loads(line) for line in gw.gateway.config.audit.path.read_bytes().splitlines()]
    access = [e for e in events if e.get("path") == "/api/open/x"]
    assert access and access[-1]["client_ip"] == "127.0.0.1"


async def test_identity_headers_never_change_the_decision(
    gw: Any, hostile: HostileUpstream
) -> None:
    headers = {**low(gw, clearance=3, purpose="x"), **IDENTITY_SPOOF}
    resp = await gw.get("/api/police/persons/1", headers=headers, auth=False)
    assert resp.status == 403
    resp = await gw.get("/api/core/records/1", headers=headers, auth=False)
    assert resp.status == 403
    assert hostile.seen == []


async def test_identity_headers_never_lift_masking(gw: Any) -> None:
    resp = await gw.get("/api/people/plain", headers={**low(gw), **IDENTITY_SPOOF}, auth=False)
    assert resp.status == 200
    assert_no_leak(await resp.read())


async def test_identity_headers_are_stripped_before_the_upstream(
    gw: Any, hostile: HostileUpstream
) -> None:
    resp = await gw.get("/api/open/x", headers={**low(gw), **IDENTITY_SPOOF}, auth=False)
    assert resp.status == 200
    seen = {k.lower() for k in hostile.seen[0].headers}
    leaked = sorted(h for h in IDENTITY_SPOOF if h.lower() in seen)
    assert not leaked, f"identity headers reached the upstream: {leaked}"


async def test_an_unsafe_request_id_is_replaced(gw: Any, hostile: HostileUpstream) -> None:
    headers = {**low(gw), "X-Request-ID": '../../x" onload=1 ' + "a" * 100}
    resp = await gw.get("/api/open/x", headers=headers, auth=False)
    assert resp.status == 200
    rid = hostile.seen[0].headers["X-Request-ID"]
    assert rid == resp.headers["X-Request-ID"] and rid.isalnum()


async def test_connection_authorization_keeps_the_token_from_the_upstream(
    gw: Any, hostile: HostileUpstream
) -> None:
    """`Connection: Authorization` does not make the gateway skip authentication, and the
    token still never reaches an upstream that is not configured to receive it."""
    headers = {**low(gw), "Connection": "keep-alive, Authorization"}
    resp = await gw.get("/api/open/x", headers=headers, auth=False)
    assert resp.status == 200
    assert "Authorization" not in hostile.seen[0].headers
    resp = await gw.get("/api/open/x", headers={"Connection": "Authorization"}, auth=False)
    assert resp.status == 401
    assert len(hostile.seen) == 1


async def test_connection_cannot_drop_the_gateways_own_headers(
    gw: Any, hostile: HostileUpstream
) -> None:
    listed = "X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, X-Request-ID, Host"
    headers = {**low(gw), "Connection": listed, "X-Forwarded-For": "10.9.9.9"}
    resp = await gw.get("/api/open/x", headers=headers, auth=False)
    assert resp.status == 200
    seen = hostile.seen[0].headers
    assert seen["X-Forwarded-For"] == "127.0.0.1"
    assert seen["X-Forwarded-Proto"] == "http"
    assert seen.get("X-Request-ID") == resp.headers["X-Request-ID"]
    assert "Host" in seen


async def test_connection_accept_encoding_still_gets_identity_on_masked_routes(
    gw: Any, hostile: HostileUpstream
) -> None:
    headers = {**low(gw), "Connection": "Accept-Encoding, Range", "Range": "bytes=0-9"}
    resp = await gw.get("/api/people/gzip", headers=headers, auth=False)
    assert resp.status == 200
    assert_no_leak(await resp.read())
    seen = hostile.seen[0].headers
    assert seen.get("Accept-Encoding") == "identity"
    assert "Range" not in seen


async def test_connection_listed_identity_header_is_still_stripped(
    gw: Any, hostile: HostileUpstream
) -> None:
    headers = {**low(gw), "Connection": "close", "Upgrade": "websocket", "X-User": "zhao"}
    resp = await gw.get("/api/open/x", headers=headers, auth=False)
    assert resp.status == 200
    seen = hostile.seen[0].headers
    assert "Upgrade" not in seen and "X-User" not in seen


async def test_upstream_hop_by_hop_headers_do_not_reach_the_client(gw: Any) -> None:
    resp = await gw.get("/api/open/x", headers=low(gw), auth=False)
    assert resp.status == 200
    assert "Keep-Alive" not in resp.headers


async def test_a_purpose_header_the_token_does_not_allow_is_403(
    gw: Any, hostile: HostileUpstream
) -> None:
    headers = {**low(gw, clearance=3), "X-Purpose": "benefit-eligibility"}
    resp = await gw.get("/api/police/persons/1", headers=headers, auth=False)
    assert resp.status == 403
    assert orjson.loads(await resp.read())["reason"] == "purpose_not_allowed"
    assert hostile.seen == []


async def test_behind_a_trusted_proxy_the_right_most_untrusted_hop_is_the_client(
    tmp_path: Path, hostile: HostileUpstream, rsa_public_pem: Path
) -> None:
    config = security_config(
        tmp_path, hostile, rsa_public_pem, server={"trusted_proxies": ["127.0.0.0/8"]}
    )
    async with running_gateway(config) as gw:
        cases = [
            ("6.6.6.6, 10.1.2.3", "10.1.2.3"),  # the client cannot choose the left entry
            ("6.6.6.6, 10.1.2.3, 127.0.0.5", "10.1.2.3"),
            ("not-an-ip", "127.0.0.1"),
            ("127.0.0.9", "127.0.0.1"),
        ]
        for xff, expected in cases:
            resp = await gw.get(
                "/api/open/x", headers={**low(gw), "X-Forwarded-For": xff}, auth=False
            )
            assert resp.status == 200
            assert hostile.seen[-1].headers["X-Forwarded-For"] == expected, xff


UNDERSCORE_SPOOF = {
    "X_User": "zhao",
    "X_Clearance": "4",
    "X_Forwarded_User": "zhao",
    "X_Forwarded_For": "10.9.9.9",
    "X_Real_IP": "10.9.9.9",
}


async def test_underscore_spellings_of_stripped_headers_do_not_reach_the_upstream(
    gw: Any, hostile: HostileUpstream
) -> None:
    resp = await gw.get("/api/open/x", headers={**low(gw), **UNDERSCORE_SPOOF}, auth=False)
    assert resp.status in (200, 400)
    for seen in hostile.seen:
        names = {k.lower() for k in seen.headers}
        leaked = sorted(h for h in UNDERSCORE_SPOOF if h.lower() in names)
        assert not leaked, f"reached the upstream: {leaked}"
