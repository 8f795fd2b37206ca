"""The SOC admin API for incidents and breakers, and the CLI commands that call it."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.admin.app import PRINCIPAL
from gateway.breaker import admin as breaker_admin
from gateway.breaker.config import BreakerConfig
from gateway.breaker.store import Breakers
from gateway.cli import main
from gateway.identity.principal import Principal
from gateway.incidents import admin as incident_admin
from gateway.incidents.config import IncidentsConfig
from gateway.incidents.service import Incidents
from gateway.incidents.sinks import Sinks
from gateway.state import MemoryBackend
from tests.incidents.conftest import Clock, Finding

# The admin app leaves the verified caller under PRINCIPAL.
pytestmark = pytest.mark.filterwarnings("ignore:It is recommended to use web.RequestKey")

SOC = Principal(subject="soc-ann", department="soc", clearance=4, roles=frozenset({"soc"}))


@dataclasses.dataclass
class Soc:
    client: TestClient
    incidents: Incidents
    breakers: Breakers
    clock: Clock


@pytest.fixture
async def soc() -> AsyncIterator[Soc]:
    clock = Clock()
    backend = MemoryBackend()
    incidents = Incidents(backend, IncidentsConfig(file=None), Sinks([]), clock)
    breakers = Breakers(backend, BreakerConfig(stale_after=10_000), clock)
    await breakers.start()

    @web.middleware
    async def principal(request: web.Request, handler: Any) -> web.StreamResponse:
        # Stands in for the admin app's token check: it puts the verified principal here.
        if request.headers.get("Authorization") == "Bearer good":
            request[PRINCIPAL] = SOC
        return await handler(request)

    app = web.Application(middlewares=[principal])
    app.router.add_routes(incident_admin.routes(incidents))
    app.router.add_routes(breaker_admin.routes(breakers, clock))
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    client.session.headers["Authorization"] = "Bearer good"
    yield Soc(client, incidents, breakers, clock)
    await client.close()
    await breakers.close()
    await backend.close()


async def test_incident_list_show_ack_resolve(soc: Soc) -> None:
    a = await soc.incidents.raise_detection(Finding())
    await soc.incidents.raise_detection(Finding(principal="bob", severity=2))
    uid = a["finding_info"]["uid"]
    resp = await soc.client.get("/incidents", params={"severity": "4", "status": "new"})
    assert [i["finding_info"]["uid"] for i in (await resp.json())["incidents"]] == [uid]
    resp = await soc.client.get(f"/incidents/{uid}")
    assert (await resp.json())["incident"]["count"] == 1
    resp = await soc.client.post(f"/incidents/{uid}/ack")
    assert resp.status == 200
    assert (await resp.json())["incident"]["unmapped"]["workflow"]["history"][-1]["by"] == "soc-ann"
    resp = await soc.client.post(f"/incidents/{uid}/ack", json={})
    assert (resp.status, (await resp.json())["error"]) == (409, "conflict")
    resp = await soc.client.post(f"/incidents/{uid}/resolve", json={"note": "approved job"})
    assert (await resp.json())["incident"]["unmapped"]["workflow"]["state"] == "resolved"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        ("GET", "/incidents?status=open", None, 400, "status"),
        ("GET", "/incidents?severity=9", None, 400, "severity"),
        ("GET", "/incidents?since=yesterday", None, 400, "since"),
        ("GET", "/incidents?since=2026-01-01T00:00:00", None, 400, "since"),
        ("GET", "/incidents?colour=red", None, 400, "colour"),
        ("POST", "/incidents/ID/resolve", {}, 400, "note"),
        ("POST", "/incidents/ID/resolve", {"note": 5}, 400, "note"),
        ("POST", "/incidents/ID/resolve", [1], 400, "body"),
        ("POST", "/breakers", {"scope": "team", "key": "x", "note": "n"}, 400, "scope"),
        ("POST", "/breakers", {"scope": "pair", "key": "x", "note": "n"}, 400, "key"),
        ("POST", "/breakers", {"scope": "principal", "key": "x"}, 400, "note"),
        (
            "POST",
            "/breakers",
            {"scope": "principal", "key": "x", "note": "n", "mode": "ajar"},
            400,
            "mode",
        ),
        (
            "POST",
            "/breakers",
            {"scope": "principal", "key": "x", "note": "n", "mode": "open"},
            400,
            "until",
        ),
        (
            "POST",
            "/breakers",
            {
                "scope": "principal",
                "key": "x",
                "note": "n",
                "mode": "open",
                "until": "2000-01-01T00:00:00+00:00",
            },
            400,
            "until",
        ),
        (
            "POST",
            "/breakers",
            {"scope": "principal", "key": "x", "note": "n", "mode": "open", "duration": -5},
            400,
            "duration",
        ),
        (
            "POST",
            "/breakers",
            {"scope": "principal", "key": "x", "note": "n", "until": "2099-01-01T00:00:00+00:00"},
            400,
            "until",
        ),
        ("POST", "/breakers/reset", {"scope": "principal", "key": "x", "note": " "}, 400, "note"),
    ],
)
async def test_bad_input_names_the_field(
    soc: Soc, method: str, path: str, body: object, status: int, field: str
) -> None:
    uid = (await soc.incidents.raise_detection(Finding()))["finding_info"]["uid"]
    resp = await soc.client.request(method, path.replace("ID", uid), json=body)
    data = await resp.json()
    assert (resp.status, data["error"], data["field"]) == (status, "bad_request", field)
    assert data["message"].startswith(f"{field}:")


OPEN = {"scope": "principal", "key": "x", "note": "n", "mode": "open"}


@pytest.mark.parametrize(
    ("method", "path", "body", "field", "message"),
    [
        (
            "GET",
            "/breakers?all=yes",
            None,
            "all",
            "all: must be one of 1, true, 0, false, got 'yes'",
        ),
        ("GET", "/breakers?colour=red", None, "colour", "colour: unknown query parameter"),
        # An open breaker that cannot be shown broke GET /breakers for everyone (500).
        (
            "POST",
            "/breakers",
            {**OPEN, "duration": 1e12},
            "duration",
            "duration: must end before the year 10000",
        ),
        (
            "POST",
            "/breakers",
            {**OPEN, "until": "9999-12-31T23:59:59-14:00"},
            "until",
            "until: must be before the year 10000 (UTC)",
        ),
        # Python's json module reads NaN and Infinity; the admin API reads strict JSON.
        (
            "POST",
            "/breakers",
            b'{"scope": "principal", "key": "x", "note": "n", "mode": "open", "duration": NaN}',
            "body",
            "body: is not valid JSON",
        ),
        ("POST", "/breakers/reset", b'{"scope": NaN}', "body", "body: is not valid JSON"),
        ("POST", "/incidents/ID/ack", b'{"note": NaN}', "body", "body: is not valid JSON"),
        ("POST", "/incidents/ID/ack", b"\xff\xfe", "body", "body: is not valid JSON"),
    ],
)
async def test_fuzzed_bad_input_is_refused_exactly(
    soc: Soc, method: str, path: str, body: object, field: str, message: str
) -> None:
    uid = (await soc.incidents.raise_detection(Finding()))["finding_info"]["uid"]
    kw: dict[str, Any] = {"json": body} if not isinstance(body, bytes) else {"data": body}
    if isinstance(body, bytes):
        kw["headers"] = {"Content-Type": "application/json"}
    resp = await soc.client.request(method, path.replace("ID", uid), **kw)
    data = await resp.json()
    assert data.pop("request_id")
    assert (resp.status, data) == (
        400,
        {"error": "bad_request", "message": message, "field": field},
    )
    listed = await soc.client.get("/breakers?all=true")
    assert (listed.status, (await listed.json())["breakers"]) == (200, [])


async def test_not_found_and_unauthenticated(soc: Soc) -> None:
    resp = await soc.client.get("/incidents/inc-nope")
    assert (resp.status, (await resp.json())["error"]) == (404, "not_found")
    resp = await soc.client.post("/incidents/inc-nope/ack", json={})
    assert resp.status == 404
    resp = await soc.client.post("/breakers/reset", json={}, headers={"Authorization": "x"})
    assert resp.status == 403


async def test_breaker_open_list_reset(soc: Soc) -> None:
    resp = await soc.client.post(
        "/breakers", json={"scope": "principal", "key": "alice", "note": "investigating"}
    )
    data = (await resp.json())["breaker"]
    assert (resp.status, data["state"], data["by"]) == (201, "forced_open", "soc-ann")
    resp = await soc.client.post(
        "/breakers",
        json={
            "scope": "dataset",
            "key": "medical",
            "note": "audit",
            "mode": "open",
            "duration": 600,
        },
    )
    assert (await resp.json())["breaker"]["until"] == soc.clock.now + 600
    listed = (await (await soc.client.get("/breakers")).json())["breakers"]
    assert {b["key"] for b in listed} == {"alice", "medical"}
    resp = await soc.client.post(
        "/breakers/reset", json={"scope": "principal", "key": "alice", "note": "cleared"}
    )
    assert (await resp.json())["breaker"]["state"] == "closed"
    listed = (await (await soc.client.get("/breakers")).json())["breakers"]
    assert [b["key"] for b in listed] == ["medical"]
    everything = (await (await soc.client.get("/breakers?all=1")).json())["breakers"]
    assert len(everything) == 2


async def test_cli_commands_drive_the_api(soc: Soc, capsys: pytest.CaptureFixture[str]) -> None:
    uid = (await soc.incidents.raise_detection(Finding()))["finding_info"]["uid"]
    url = str(soc.client.make_url("")).rstrip("/")
    admin = ["--url", url, "--token", "good"]

    async def cli(*argv: str) -> int:
        return await asyncio.to_thread(main, [*argv[:2], *admin, *argv[2:]])

    assert await cli("incidents", "list", "--status", "new") == 0
    assert uid in capsys.readouterr().out
    assert await cli("incidents", "show", uid) == 0
    assert f"ID           {uid}\n" in capsys.readouterr().out
    assert await cli("incidents", "show", uid, "-o", "json") == 0
    assert '"class_uid": 2004' in capsys.readouterr().out
    assert await cli("incidents", "ack", uid, "--note", "mine") == 0
    assert await cli("incidents", "resolve", uid, "--note", "done") == 0
    assert "resolved" in capsys.readouterr().out
    assert await cli("breakers", "open", "principal", "alice", "--note", "n", "--forced") == 0
    assert await cli("breakers", "open", "dataset", "medical", "--note", "n", "--for", "30m") == 0
    assert await cli("breakers", "list") == 0
    out = capsys.readouterr().out
    assert "principal:alice  forced_open" in out and "dataset:medical  open" in out
    assert await cli("breakers", "reset", "principal", "alice", "--note", "ok") == 0
    assert "reset principal:alice  closed" in capsys.readouterr().out
    assert await cli("breakers", "open", "principal", "x", "--note", "n", "--for", "soon") == 2
    assert "--for: expected a positive number" in capsys.readouterr().err
    assert await cli("incidents", "resolve", uid, "--note", "again") == 1
    assert "conflict: incident is already resolved" in capsys.readouterr().err
