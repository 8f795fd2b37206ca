"""The admin API's policy and grant endpoints, on a real aiohttp server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.admin.app import PRINCIPAL
from gateway.identity.principal import Principal
from gateway.policy.admin import routes
from gateway.policy.config import PolicyConfig
from gateway.policy.grants import GrantStore
from gateway.policy.store import PolicyStore
from gateway.state import MemoryBackend
from tests.policy.conftest import MONDAY_10

NOW = web.AppKey("now", list)
POLICY_DIR = web.AppKey("policy_dir", Path)
GOOD = {
    "department": "taxation",
    "dataset": "population",
    "actions": ["read"],
    "purpose": "tax-audit",
    "duration": 3600,
    "reason": "case 2026-017",
}


@pytest.fixture
async def client(
    policy_dir: Path, aiohttp_client: Callable[[web.Application], Awaitable[TestClient]]
) -> AsyncIterator[TestClient]:
    now = [MONDAY_10]
    backend = MemoryBackend()
    await backend.start()
    store = PolicyStore(PolicyConfig(dir=policy_dir, watch=False), clock=lambda: now[0])
    grants = GrantStore(
        backend,
        catalog=lambda: store.current.catalog,
        lifetimes=PolicyConfig().grant_max_lifetime,
        clock=lambda: now[0],
    )
    await grants.start()

    # Stands in for the admin app's authentication, which sets the verified principal.
    @web.middleware
    async def authenticated(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.headers.get("X-Test-Anonymous") is None:
            request[PRINCIPAL] = Principal(
                "sec-officer", "security", 4, frozenset({"security-officer"})
            )
        return await handler(request)

    app = web.Application(middlewares=[authenticated])
    app.add_routes(routes(store, grants, lambda: now[0]))
    app[NOW] = now
    app[POLICY_DIR] = policy_dir
    yield await aiohttp_client(app)
    await grants.close()
    await backend.close()


async def test_grant_lifecycle(client: TestClient) -> None:
    resp = await client.post("/grants", json=GOOD)
    assert resp.status == 201
    grant = (await resp.json())["grant"]
    assert grant["granted_by"] == "sec-officer" and grant["state"] == "active"
    assert grant["expires_at"] == "2026-01-05T11:00:00+00:00"
    listed = (await (await client.get("/grants")).json())["grants"]
    assert [g["id"] for g in listed] == [grant["id"]]
    assert (await (await client.get("/grants?dataset=enterprise")).json())["grants"] == []
    client.app[NOW][0] = MONDAY_10 + 3600
    assert (await (await client.get("/grants")).json())["grants"] == []
    assert [g["state"] for g in (await (await client.get("/grants?all=1")).json())["grants"]] == [
        "expired"
    ]
    resp = await client.delete(f"/grants/{grant['id']}")
    assert resp.status == 200 and (await resp.json())["revoked"]["id"] == grant["id"]
    resp = await client.delete(f"/grants/{grant['id']}")
    assert resp.status == 404
    body = await resp.json()
    assert body.pop("request_id")
    assert body == {"error": "not_found", "message": f"no grant {grant['id']!r}"}


async def test_bad_grant_bodies_are_400_naming_fields(client: TestClient) -> None:
    resp = await client.post("/grants", json={**GOOD, "duration": 4 * 86400, "colour": 1})
    assert resp.status == 400
    body = await resp.json()
    assert body["error"] == "bad_request"
    assert body["problems"] == [
        "colour: unknown field",
        "expires_at: a grant on level-3 dataset 'population' may last at most 3 days "
        "(asked 4 days)",
    ]
    assert body["message"] == "; ".join(body["problems"])
    resp = await client.post("/grants", data=b"{nope", headers={"Content-Type": "application/json"})
    assert resp.status == 400
    body = await resp.json()
    assert body.pop("request_id")
    assert body == {"error": "bad_request", "message": "body: is not valid JSON", "field": "body"}


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        # iso() could not write these back: the grant answered 500 and was never shown.
        (
            {"not_before": 1e15},
            "not_before: not a time in the years 1 to 9999 (UTC): 1000000000000000.0",
        ),
        (
            {"duration": None, "expires_at": "9999-12-31T23:59:59-14:00"},
            "expires_at: not a time in the years 1 to 9999 (UTC): '9999-12-31T23:59:59-14:00'",
        ),
    ],
)
async def test_grant_times_that_cannot_be_shown_are_refused(
    client: TestClient, extra: dict[str, object], problem: str
) -> None:
    body = {k: v for k, v in {**GOOD, **extra}.items() if v is not None}
    resp = await client.post("/grants", json=body)
    data = await resp.json()
    assert (resp.status, data["error"], data["problems"]) == (400, "bad_request", [problem])
    assert (await (await client.get("/grants?all=1")).json())["grants"] == []


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity"])
async def test_grant_bodies_are_strict_json(client: TestClient, number: bytes) -> None:
    raw = b'{"department": "taxation", "dataset": "population", "actions": ["read"], '
    raw += b'"purpose": "tax-audit", "reason": "r", "expires_at": ' + number + b"}"
    resp = await client.post("/grants", data=raw, headers={"Content-Type": "application/json"})
    body = await resp.json()
    assert body.pop("request_id")
    assert (resp.status, body) == (
        400,
        {"error": "bad_request", "message": "body: is not valid JSON", "field": "body"},
    )


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("all=yes", "all", "all: must be one of 1, true, 0, false, got 'yes'"),
        ("datset=population", "datset", "datset: unknown query parameter"),
    ],
)
async def test_grant_list_parameters_are_checked(
    client: TestClient, query: str, field: str, message: str
) -> None:
    await client.post("/grants", json=GOOD)
    resp = await client.get(f"/grants?{query}")
    body = await resp.json()
    assert body.pop("request_id")
    assert (resp.status, body) == (
        400,
        {"error": "bad_request", "message": message, "field": field},
    )


async def test_changes_need_a_principal(client: TestClient) -> None:
    resp = await client.post("/grants", json=GOOD, headers={"X-Test-Anonymous": "1"})
    assert resp.status == 403


async def test_policy_and_catalog(client: TestClient) -> None:
    info = await (await client.get("/policy")).json()
    assert info["loaded_at"] == "2026-01-05T10:00:00+00:00" and len(info["version"]) == 16
    catalog = await (await client.get("/catalog")).json()
    assert [d["id"] for d in catalog["datasets"]] == [
        "population",
        "enterprise",
        "social-security",
        "medical",
    ]
    assert catalog["datasets"][3]["level_name"] == "core"


async def test_reload(client: TestClient) -> None:
    resp = await client.post("/policy/reload")
    assert await resp.json() == {
        "status": "unchanged",
        "version": (await (await client.get("/policy")).json())["version"],
    }
    csv = client.app[POLICY_DIR] / "policy.csv"
    good = csv.read_text()
    csv.write_text("p, broken\n")
    resp = await client.post("/policy/reload")
    assert resp.status == 422
    body = await resp.json()
    assert body["error"] == "policy_rejected" and "policy.csv:1: " in body["message"]
    csv.write_text(good + "p, dept:taxation, enterprise, export, allow\n")
    resp = await client.post("/policy/reload")
    assert (await resp.json())["status"] == "loaded"
