"""The admin API's OpenAPI description: it and the served routes agree, it is served open,
and every refusal of the admin listener has the error shape it describes."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.admin.app import OPENAPI_FILE, openapi_document
from gateway.app import Gateway
from tests.gateway.conftest import RunningGateway, gateway_config, running_gateway

CATALOG = """
datasets:
  - {id: open, route: /api/open/, upstream: up, owner: ops, level: 1, sharing: unconditional}
"""
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def admin_config(tmp_path: Path) -> Any:
    return gateway_config(tmp_path, {"up": "http://127.0.0.1:9"}, CATALOG)


def served_routes(gateway: Gateway) -> set[tuple[str, str]]:
    """(METHOD, path template) of every route the admin listener serves; aiohttp adds a
    HEAD to each GET, which the description leaves implied."""
    app = gateway.admin()
    routes = set()
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        routes.add((route.method, route.resource.canonical if route.resource else ""))
    return routes


def described_routes(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in METHODS
    }


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    async with running_gateway(admin_config(tmp_path)) as running:
        yield running


def test_every_served_route_is_described_and_every_described_route_is_served(
    tmp_path: Path,
) -> None:
    gateway = Gateway(admin_config(tmp_path))
    served = served_routes(gateway)
    described = described_routes(openapi_document())
    assert served - described == set(), "served but not described"
    assert described - served == set(), "described but not served"
    # The listing sees the route tables of every room, not only the app's own routes.
    assert {("GET", "/incidents/{id}"), ("DELETE", "/grants/{id}"), ("GET", "/stats")} <= served


def test_every_operation_documents_its_refusals_and_security() -> None:
    document = openapi_document()
    open_paths = {"/healthz", "/readyz", "/metrics", "/openapi.json", "/", "/static/{name}"}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert "405" in responses, (method, path)
            if path in open_paths:
                assert operation["security"] == [], (method, path)
                continue
            assert "security" not in operation, (method, path)  # the document's bearer
            for status in ("401", "403", "503"):
                assert status in responses, (method, path, status)
            if method == "post" and "requestBody" in operation:
                assert {"400", "413"} <= set(responses), (method, path)


def test_path_parameters_are_declared() -> None:
    for path, item in openapi_document()["paths"].items():
        for method, operation in item.items():
            declared = {p.get("name") for p in operation.get("parameters", []) if "name" in p}
            declared |= {
                document_parameter(p["$ref"])["name"]
                for p in operation.get("parameters", [])
                if "$ref" in p
            }
            assert set(re.findall(r"{(\w+)}", path)) <= declared, (method, path)


def document_parameter(ref: str) -> dict[str, Any]:
    name = ref.rsplit("/", 1)[1]
    parameter: dict[str, Any] = openapi_document()["components"]["parameters"][name]
    return parameter


async def test_the_description_is_served_without_a_token(gw: RunningGateway) -> None:
    resp = await gw.session.get(gw.admin_url + "/openapi.json")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert await resp.json() == yaml.safe_load(OPENAPI_FILE.read_text(encoding="utf-8"))
    assert resp.headers["X-Request-ID"]


def soc(gw: RunningGateway) -> dict[str, str]:
    return gw.auth(sub="soc1", dept="soc", clearance=4, roles=["soc"])


async def error_body(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status == status
    assert resp.content_type == "application/json"
    body: dict[str, Any] = await resp.json()
    assert body["error"] == code
    assert body["message"]
    assert body["request_id"] == resp.headers["X-Request-ID"]
    return body


async def test_an_unknown_path_with_a_token_is_a_json_404(gw: RunningGateway) -> None:
    resp = await gw.session.get(gw.admin_url + "/nothing-here", headers=soc(gw))
    body = await error_body(resp, 404, "not_found")
    assert body["message"] == "Not Found"


async def test_an_unknown_path_without_a_token_is_a_401_not_a_404(gw: RunningGateway) -> None:
    resp = await gw.session.get(gw.admin_url + "/nothing-here")
    body = await error_body(resp, 401, "unauthenticated")
    assert body["reason"] == "missing"
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="datagate"'


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/healthz", "GET,HEAD"),
        ("DELETE", "/openapi.json", "GET,HEAD"),
        ("PUT", "/incidents", "GET,HEAD"),
        ("GET", "/policy/reload", "POST"),
        ("PATCH", "/grants/g-1", "DELETE"),
    ],
)
async def test_a_wrong_method_is_a_json_405_with_allow(
    gw: RunningGateway, method: str, path: str, allow: str
) -> None:
    resp = await gw.session.request(method, gw.admin_url + path, headers=soc(gw))
    body = await error_body(resp, 405, "method_not_allowed")
    assert body["message"] == "Method Not Allowed"
    assert sorted(resp.headers["Allow"].split(",")) == sorted(allow.split(","))


async def test_a_body_over_the_limit_is_a_json_413(gw: RunningGateway) -> None:
    big = b'{"note": "' + b"x" * (1024 * 1024) + b'"}'
    resp = await gw.session.post(
        gw.admin_url + "/breakers/reset",
        data=big,
        headers={**soc(gw), "Content-Type": "application/json"},
    )
    body = await error_body(resp, 413, "payload_too_large")
    assert body["message"] == "Request Entity Too Large"


async def test_a_safe_request_id_is_kept_and_an_unsafe_one_replaced(gw: RunningGateway) -> None:
    resp = await gw.session.get(gw.admin_url + "/grants", headers={"X-Request-ID": "soc-42"})
    assert (await error_body(resp, 401, "unauthenticated"))["request_id"] == "soc-42"
    resp = await gw.session.get(gw.admin_url + "/healthz", headers={"X-Request-ID": "a b/c"})
    assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["X-Request-ID"])


async def test_handler_refusals_carry_the_request_id(gw: RunningGateway) -> None:
    resp = await gw.session.get(gw.admin_url + "/incidents?colour=red", headers=soc(gw))
    body = await error_body(resp, 400, "bad_request")
    assert (body["field"], body["message"]) == ("colour", "colour: unknown filter")
    resp = await gw.session.get(gw.admin_url + "/incidents/inc-nope", headers=soc(gw))
    body = await error_body(resp, 404, "not_found")
    assert body["message"] == "no incident 'inc-nope'"
