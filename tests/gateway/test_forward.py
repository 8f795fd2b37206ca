"""The forward stage end to end: a real upstream behind the real pipeline."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson

from tests.gateway.conftest import CATALOG, closed_port, gateway_config, running_gateway


def assert_error(body: dict[str, Any], code: str) -> None:
    assert body["error"] == code
    assert body["message"]
    assert body["request_id"]


async def test_method_path_query_body_and_headers_are_preserved(proxy: Any, upstream: Any) -> None:
    resp = await proxy.post(
        "/api/open/items/1?a=1&b=%E5%BC%A0",
        data=b"hello",
        headers={"Accept-Language": "zh-CN", "X-Custom": "v"},
    )
    assert resp.status == 200
    seen = upstream.seen[-1]
    assert (seen.method, seen.path, seen.query, seen.body) == (
        "POST",
        "/api/open/items/1",
        "a=1&b=%E5%BC%A0",
        b"hello",
    )
    assert seen.headers["Accept-Language"] == "zh-CN"
    assert "X-Custom" not in seen.headers, "not on the route's allow-list"
    assert resp.headers["X-Upstream"] == "yes"


async def test_forwarded_headers_are_set_and_spoofs_dropped(proxy: Any, upstream: Any) -> None:
    resp = await proxy.get(
        "/api/open/x",
        headers={"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Host": "evil", "Forwarded": "for=1"},
    )
    assert resp.status == 200
    seen = upstream.seen[-1].headers
    assert seen["X-Forwarded-For"] == "127.0.0.1"
    assert seen["X-Forwarded-Proto"] == "http"
    assert seen["X-Forwarded-Host"] != "evil"
    assert "Forwarded" not in seen
    assert seen["X-Request-ID"] == resp.headers["X-Request-ID"]


async def test_hop_by_hop_headers_are_removed_both_ways(proxy: Any, upstream: Any) -> None:
    resp = await proxy.get(
        "/api/open/x",
        headers={
            "Connection": "keep-alive, X-Drop-Me",
            "X-Drop-Me": "1",
            "TE": "trailers",
            "Proxy-Authorization": "Basic eA==",
        },
    )
    seen = upstream.seen[-1].headers
    assert "X-Drop-Me" not in seen and "TE" not in seen and "Proxy-Authorization" not in seen
    assert "X-Secret-Hop" not in resp.headers and "Keep-Alive" not in resp.headers


async def test_authorization_goes_upstream_only_when_the_route_says_so(
    proxy: Any, upstream: Any
) -> None:
    await proxy.get("/api/open/x")
    assert "Authorization" not in upstream.seen[-1].headers
    headers = proxy.auth()
    await proxy.get("/api/auth/x", headers=headers)
    assert upstream.seen[-1].headers["Authorization"] == headers["Authorization"]


async def test_request_id_is_kept_only_when_safe(proxy: Any, upstream: Any) -> None:
    resp = await proxy.get("/api/open/x", headers={"X-Request-ID": "abc-123"})
    assert resp.headers["X-Request-ID"] == "abc-123"
    resp = await proxy.get("/api/open/x", headers={"X-Request-ID": "a b<script>" + "x" * 80})
    rid = resp.headers["X-Request-ID"]
    assert rid != "a b<script>" + "x" * 80 and len(rid) == 32
    assert upstream.seen[-1].headers["X-Request-ID"] == rid


async def test_unknown_route_is_404_and_never_forwarded(proxy: Any, upstream: Any) -> None:
    resp = await proxy.get("/api/unknown/x")
    assert resp.status == 404
    assert_error(await resp.json(), "not_found")
    assert resp.headers["X-Request-ID"]
    assert upstream.seen == []


async def test_ambiguous_path_is_400_and_never_forwarded(raw_get: Any, upstream: Any) -> None:
    for path in (
        "/api/open/%2e%2e/auth/x",
        "/api/open/../auth/x",
        "/api/open/a%2fb",
        "/api/open//x",
        "/api/open/%00",
        "/api/open/a;b",
        "/api/open/x\\y",
        "/api/open/" + "a" * 300,
    ):
        status, body = await raw_get(path)
        assert status == 400, path
        assert_error(orjson.loads(body), "bad_request")
    assert upstream.seen == []


async def test_request_body_over_the_limit_is_413(proxy: Any, upstream: Any) -> None:
    resp = await proxy.post("/api/open/x", data=b"x" * 2000)
    assert resp.status == 413
    assert_error(await resp.json(), "payload_too_large")
    assert upstream.seen == []


async def test_chunked_request_body_over_the_limit_is_413(proxy: Any, upstream: Any) -> None:
    async def chunks() -> Any:
        for _ in range(10):
            yield b"y" * 500

    resp = await proxy.post("/api/open/x", data=chunks())
    assert resp.status == 413
    assert_error(await resp.json(), "payload_too_large")
    assert all(len(s.body) <= 1024 for s in upstream.seen)


async def test_upstream_down_is_502(proxy: Any) -> None:
    resp = await proxy.get("/api/down/x")
    assert resp.status == 502
    assert_error(await resp.json(), "upstream_error")


async def test_slow_upstream_is_504(proxy: Any) -> None:
    resp = await proxy.get("/api/quick/slow")
    assert resp.status == 504
    assert_error(await resp.json(), "upstream_timeout")


async def test_upstream_lying_in_content_length_is_502(proxy: Any) -> None:
    resp = await proxy.get("/api/open/lie")
    assert resp.status == 502
    assert_error(await resp.json(), "upstream_error")


async def test_large_response_streams_through(proxy: Any) -> None:
    resp = await proxy.get("/api/open/big")
    assert resp.status == 200
    body = await resp.read()
    assert len(body) == 64 * 65536


async def test_an_unmaskable_response_is_refused_and_raises_an_incident(proxy: Any) -> None:
    for _ in range(2):
        resp = await proxy.get("/api/secret/html", headers=proxy.auth(clearance=2))
        assert resp.status == 502
        body = orjson.loads(await resp.read())
        assert body["error"] == "upstream_error"
        assert body["reason"] == "unsupported_content_type"
        assert "110105194912310038" not in json.dumps(body)
    found = await proxy.gateway.incidents.search(dataset="secret")
    assert len(found) == 1, "repeats update one incident"
    assert found[0]["finding_info"]["title"].startswith("The upstream of 'secret'")
    assert found[0]["count"] == 2


async def test_head_on_a_classified_route_does_not_give_the_unmasked_length(
    proxy: Any,
) -> None:
    resp = await proxy.request("HEAD", "/api/secret/x", headers=proxy.auth(clearance=2))
    assert resp.status == 200
    assert resp.headers.get("Content-Length") in (None, "0")
    resp = await proxy.request("HEAD", "/api/open/x")
    assert int(resp.headers["Content-Length"]) > 0


async def test_a_failing_audit_disk_fails_classified_routes_closed(
    upstream: Any, tmp_path: Any
) -> None:
    config = gateway_config(
        tmp_path,
        {"up": upstream.url, "dead": f"http://127.0.0.1:{closed_port()}"},
        CATALOG,
        audit={"path": "/dev/full", "checkpoints": None, "flush_interval": 0.01},
    )
    async with running_gateway(config) as gw:
        assert (await gw.get("/api/open/x")).status == 200  # recorded, but the write fails
        for _ in range(200):
            if not gw.gateway.audit.healthy:
                break
            await asyncio.sleep(0.01)
        assert not gw.gateway.audit.healthy
        seen = len(upstream.seen)
        resp = await gw.get("/api/secret/x", headers=gw.auth(clearance=2))
        assert resp.status == 503
        assert orjson.loads(await resp.read())["reason"] == "audit_unavailable"
        assert len(upstream.seen) == seen, "nothing classified is forwarded"
        assert (await gw.get("/api/open/x")).status == 200, "level 1 still flows"
        ready = await gw.session.get(gw.admin_url + "/readyz")
        assert ready.status == 503
