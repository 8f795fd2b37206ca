"""The dashboard's routes on the admin app: open page and files, token-guarded /stats."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.admin import dashboard
from gateway.admin.app import admin_app
from gateway.admin.stats import DashboardStats
from gateway.errors import GatewayError
from gateway.identity.principal import Principal
from gateway.metrics import Metrics

# The admin app keys request["principal"] by string.
pytestmark = pytest.mark.filterwarnings("ignore:It is recommended to use web.RequestKey")

NOW = dt.datetime(2026, 11, 23, 8, 30, 10, tzinfo=dt.UTC).timestamp()
TOKENS = {
    "soc-token": frozenset({"soc"}),
    "consumer-token": frozenset({"consumer"}),
}

ClientFactory = Callable[[web.Application], Awaitable[TestClient]]


async def authenticate(request: web.Request) -> Principal:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme != "Bearer" or token not in TOKENS:
        raise GatewayError("unauthenticated", "missing or invalid bearer token")
    return Principal(subject="soc1", department="soc", clearance=4, roles=TOKENS[token])


@pytest.fixture
def stats() -> DashboardStats:
    return DashboardStats()


@pytest.fixture
async def client(aiohttp_client: ClientFactory, stats: DashboardStats) -> TestClient:
    app = admin_app(
        metrics=Metrics(),
        readiness=lambda: {"ready": True},
        authenticate=authenticate,
        roles=("soc", "security-officer"),
        route_tables=[dashboard.routes(stats, clock=lambda: NOW)],
    )
    return await aiohttp_client(app)


async def test_page_is_served_without_a_token_with_a_strict_csp(client: TestClient) -> None:
    response = await client.get("/")

    assert response.status == 200
    assert response.content_type == "text/html"
    assert "DataGate" in await response.text()
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    ("name", "content_type"),
    [("app.js", "text/javascript"), ("style.css", "text/css"), ("favicon.svg", "image/svg+xml")],
)
async def test_static_files_are_served_without_a_token(
    client: TestClient, name: str, content_type: str
) -> None:
    response = await client.get(f"/static/{name}")

    assert response.status == 200
    assert response.content_type == content_type


@pytest.mark.parametrize(
    "path",
    [
        "/static/missing.js",
        "/static/..%2fapp.py",
        "/static/%2e%2e%2f%2e%2e%2fpyproject.toml",
        "/static/..%5capp.py",
        "/static/app.js%00",
        "/static/APP.JS",
    ],
)
async def test_only_the_dashboard_files_can_be_named(client: TestClient, path: str) -> None:
    response = await client.get(path)

    assert response.status == 404
    assert (await response.json())["error"] == "not_found"


@pytest.mark.parametrize(
    "raw_path",
    ["/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py", "/static//etc/passwd"],
)
async def test_raw_traversal_paths_are_refused(client: TestClient, raw_path: str) -> None:
    # Sent byte for byte: an HTTP client library would normalise the dot segments away.
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(f"GET {raw_path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    answer = await reader.read()
    writer.close()

    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 404 Not Found"
    assert b"admin_app" not in rest
    assert b"root:" not in rest


async def test_stats_needs_a_token(client: TestClient) -> None:
    response = await client.get("/stats")

    assert response.status == 401
    assert (await response.json())["error"] == "unauthenticated"


async def test_stats_needs_a_soc_role(client: TestClient) -> None:
    response = await client.get("/stats", headers={"Authorization": "Bearer consumer-token"})

    assert response.status == 403
    assert (await response.json())["error"] == "forbidden"


async def test_stats_returns_the_snapshot(client: TestClient, stats: DashboardStats) -> None:
    event: dict[str, Any] = {
        "ts": "2026-11-23T08:30:01.000+00:00",
        "principal": "alice",
        "department": "tax",
        "decision": "deny",
        "status": 403,
        "score": 0.93,
    }
    stats.add(event)

    response = await client.get("/stats", headers={"Authorization": "Bearer soc-token"})

    assert response.status == 200
    body = await response.json()
    assert body == stats.snapshot(NOW)
    assert body["per_minute"][-1]["deny"] == 1
    assert body["top_principals"][0]["principal"] == "alice"
