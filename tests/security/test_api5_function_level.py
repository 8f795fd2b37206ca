"""OWASP API5:2023 broken function-level authorisation: the admin/SOC API needs a verified
token with a SOC or security-officer role; admin paths do not exist on the data port."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.gateway.conftest import SECRET
from tests.security.helpers import (
    HostileUpstream,
    bearer,
    claims,
    error_of,
    forge,
    port_of,
    raw_request,
    send_raw,
)

ADMIN_CALLS = [
    ("GET", "/incidents"),
    ("GET", "/breakers"),
    ("GET", "/grants"),
    ("POST", "/grants"),
    ("POST", "/breakers"),
    ("POST", "/breakers/reset"),
    ("POST", "/policy/reload"),
]


@pytest.mark.parametrize(("method", "path"), ADMIN_CALLS)
async def test_the_admin_api_without_a_token_is_401(gw: Any, method: str, path: str) -> None:
    resp = await gw.session.request(method, gw.admin_url + path, json={})
    assert resp.status == 401
    assert error_of(await resp.read())["error"] == "unauthenticated"


@pytest.mark.parametrize(("method", "path"), ADMIN_CALLS)
async def test_the_admin_api_without_the_role_is_403(gw: Any, method: str, path: str) -> None:
    headers = {
        **gw.auth(sub="mallory", dept="soc", clearance=4, roles=["analyst", "SOC", "soc "]),
        # Roles claimed in headers are never read.
        "X-Roles": "soc",
        "X-Groups": "security-officer",
        "X-Forwarded-Groups": "soc",
    }
    resp = await gw.session.request(method, gw.admin_url + path, json={}, headers=headers)
    assert resp.status == 403
    assert error_of(await resp.read())["reason"] == "missing_role"


async def test_invalid_tokens_with_the_role_are_401_on_the_admin_api(gw: Any) -> None:
    now = time.time()
    key = SECRET.encode()
    tokens = [
        forge({"alg": "none"}, claims(now, roles=["soc"]), None),
        forge({"alg": "HS256"}, claims(now, roles=["soc"], exp=int(now) - 3600), key),
        forge({"alg": "HS256"}, claims(now, roles=["soc"], aud="other"), key),
        forge({"alg": "HS256"}, claims(now, roles="soc"), key),
        forge({"alg": "HS256"}, claims(now, roles=["soc"]), b"wrong" * 8),
    ]
    for token in tokens:
        resp = await gw.session.get(gw.admin_url + "/incidents", headers=bearer(token))
        assert resp.status == 401, token


@pytest.mark.parametrize(
    "target",
    [
        "/static/../incidents",
        "/static/%2e%2e/incidents",
        "/static/..%2fincidents",
        "/static/%2e%2e%2fincidents",
        "/static//../incidents",
        "/healthz/../incidents",
        "//incidents",
        "/incidents/",
        "/INCIDENTS",
        "/incidents?x=/static/",
        "/incidents#/static/",
        "/openapi.json/../incidents",
        "/./incidents",
    ],
)
async def test_admin_path_tricks_do_not_skip_the_role_check(gw: Any, target: str) -> None:
    status, body = await send_raw(port_of(gw.admin_url), raw_request("GET", target))
    assert status in (400, 401, 404), (target, status, body[:200])
    assert b"incidents" not in body or status != 200


DATA_PORT_ADMIN_PATHS = [
    "/incidents",
    "/breakers",
    "/grants",
    "/metrics",
    "/readyz",
    "/healthz",
    "/policy/reload",
    "/openapi.json",
    "/static/app.js",
    "/",
]


@pytest.mark.parametrize("path", DATA_PORT_ADMIN_PATHS)
async def test_admin_paths_on_the_data_port_are_404_and_never_forwarded(
    gw: Any, hostile: HostileUpstream, path: str
) -> None:
    soc = gw.auth(sub="soc1", dept="soc", clearance=4, roles=["soc", "security-officer"])
    for method in ("GET", "POST"):
        resp = await gw.request(method, path, headers=soc, auth=False, json={})
        assert resp.status == 404, (method, path)
        assert error_of(await resp.read())["error"] == "not_found"
    assert hostile.seen == []


async def test_a_soc_token_works_on_the_admin_port(gw: Any) -> None:
    """Positive control."""
    soc = gw.auth(sub="soc1", dept="soc", clearance=4, roles=["soc"])
    resp = await gw.session.get(gw.admin_url + "/incidents", headers=soc)
    assert resp.status == 200


METHOD_OVERRIDES = {
    "X-HTTP-Method-Override": "DELETE",
    "X-HTTP-Method": "DELETE",
    "X-Method-Override": "DELETE",
}


async def test_method_override_headers_do_not_turn_a_read_into_a_write(
    gw: Any, hostile: HostileUpstream
) -> None:
    reader = gw.auth(sub="mallory", dept="market-regulation", clearance=1)
    resp = await gw.get("/api/open/x", headers={**reader, **METHOD_OVERRIDES}, auth=False)
    assert resp.status in (200, 400, 403)
    for seen in hostile.seen:
        forwarded = {k.lower() for k in seen.headers}
        assert not forwarded & {k.lower() for k in METHOD_OVERRIDES}, seen.headers


async def test_a_write_method_without_a_write_grant_is_403(
    gw: Any, hostile: HostileUpstream
) -> None:
    reader = gw.auth(sub="mallory", dept="market-regulation", clearance=1)
    for method in ("POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PROPFIND"):
        resp = await gw.request(method, "/api/open/x", headers=reader, auth=False)
        assert resp.status in (400, 403, 405), (method, resp.status)
    assert hostile.seen == []


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/grants", b"not json"),
        ("/grants", b"[]"),
        ("/grants", b'{"principal": null}'),
        (
            "/grants",
            b'{"principal":"x","dataset":"police","actions":["read"],"purpose":"p",'
            b'"duration":31536000,"reason":"a year-long temporary grant"}',
        ),
        (
            "/grants",
            b'{"principal":"x","dataset":"police","actions":["read"],"purpose":"p",'
            b'"duration":1e308,"reason":"r"}',
        ),
        (
            "/grants",
            b'{"principal":"x","dataset":"police","actions":["read"],"purpose":"p",'
            b'"duration":"600","reason":"r"}',
        ),
        ("/breakers", b"[]"),
        ("/breakers", b'{"scope":"nope","key":"x"}'),
        ("/breakers/reset", b"x"),
    ],
)
async def test_bad_admin_input_is_a_400_never_a_500(gw: Any, path: str, body: bytes) -> None:
    soc = gw.auth(sub="soc1", dept="soc", clearance=4, roles=["security-officer"])
    headers = {**soc, "Content-Type": "application/json"}
    resp = await gw.session.post(gw.admin_url + path, data=body, headers=headers)
    assert resp.status == 400, await resp.text()
    assert error_of(await resp.read())["error"] == "bad_request"


async def test_the_open_admin_pages_name_no_principal(gw: Any) -> None:
    """/metrics, /readyz and /healthz need no token, so they must not list callers."""
    await gw.get("/api/open/x", headers=gw.auth(sub="agent-007-secret"), auth=False)
    for path in ("/metrics", "/readyz", "/healthz"):
        resp = await gw.session.get(gw.admin_url + path)
        assert resp.status == 200
        assert "agent-007-secret" not in await resp.text(), path
