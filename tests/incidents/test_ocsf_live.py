"""Incidents from a real gateway on loopback (a breaker trip, an unmaskable response, the SOC's
acknowledgement and resolution) validate against the OCSF schema they declare, in every sink
(file, Redis stream, webhook) and in the admin API, checked with the PyPI OCSF JSON Schema."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from gateway.incidents import model
from tests.gateway.conftest import (
    CATALOG,
    RecordingUpstream,
    closed_port,
    gateway_config,
    running_gateway,
)
from tests.incidents.ocsf import ocsf_errors


class Receiver:
    """A webhook receiver on loopback that keeps every body it is sent."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.app = web.Application()
        self.app.router.add_post("/hook", self.hook)

    async def hook(self, request: web.Request) -> web.Response:
        self.bodies.append(orjson.loads(await request.read()))
        return web.Response(status=204)


async def eventually(check: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "sinks did not deliver in time"
        await asyncio.sleep(0.05)


async def test_real_incidents_validate_in_every_sink_and_in_the_admin_api(
    tmp_path: Path, aiohttp_server: Any, redis_url: str, redis_prefix: str
) -> None:
    upstream = await aiohttp_server(RecordingUpstream().app)
    receiver = Receiver()
    hook = await aiohttp_server(receiver.app)
    config = gateway_config(
        tmp_path,
        {"up": str(upstream.make_url("")).rstrip("/"), "dead": f"http://127.0.0.1:{closed_port()}"},
        CATALOG,
        "p, user:alice, open, read, allow\n",
        state={"url": redis_url, "prefix": redis_prefix},
        # Six requests a minute are a burst here: the fifth trips the breaker at once.
        detection={"high_frequency": {"per_minute": 5}, "off_hours": {"enabled": False}},
        incidents={
            "file": {"path": str(tmp_path / "incidents.jsonl")},
            "stream": {"stream": "incidents"},
            "webhook": {"url": str(hook.make_url("/hook")), "spool": str(tmp_path / "spool")},
        },
    )
    async with running_gateway(config) as gw:
        statuses = [(await gw.get(f"/api/open/{n}")).status for n in range(8)]
        assert statuses[-1] == 423 and 200 in statuses, statuses
        resp = await gw.get("/api/secret/html", headers=gw.auth(sub="bob", clearance=2))
        assert resp.status == 502

        soc = gw.auth(sub="soc1", dept="soc", clearance=4, roles=["soc"])
        resp = await gw.session.get(gw.admin_url + "/incidents", headers=soc)
        listed = orjson.loads(await resp.read())["incidents"]
        by_rule = {model.rule_of(i): i for i in listed}
        assert {"high_frequency", "unmaskable_response"} <= set(by_rule), sorted(by_rule)

        trip = by_rule["high_frequency"]
        assert trip["unmapped"]["breaker"]["scope"] == "principal"
        assert trip["unmapped"]["breaker"]["key"] == "alice"
        assert (trip["action"], trip["disposition"]) == ("Denied", "Blocked")
        assert trip["evidences"][0]["data"]["sample_request_ids"]
        assert trip["evidences"][0]["src_endpoint"]["ip"] == "127.0.0.1"
        assert trip["unmapped"]["ecs"]["ecs"]["version"] == model.ECS_VERSION
        refused = by_rule["unmaskable_response"]
        assert refused["action"] == "Denied" and model.principal_of(refused) == "bob"

        uid = trip["finding_info"]["uid"]
        resp = await gw.session.post(gw.admin_url + f"/incidents/{uid}/ack", headers=soc, json={})
        acked = orjson.loads(await resp.read())["incident"]
        resp = await gw.session.post(
            gw.admin_url + f"/incidents/{uid}/resolve", headers=soc, json={"note": "load test"}
        )
        resolved = orjson.loads(await resp.read())["incident"]
        assert (acked["status"], resolved["status"]) == ("In Progress", "Resolved")
        assert resolved["unmapped"]["sla"]["resolved_at"] and resolved["assignee"]["name"]

        file = tmp_path / "incidents.jsonl"

        def all_delivered() -> bool:
            lines = file.read_bytes().count(b"\n") if file.exists() else 0
            return lines >= 4 and len(receiver.bodies) >= lines

        await eventually(all_delivered)
        streamed = [orjson.loads(v) for _, v in await gw.gateway.state.xrange("incidents")]
        filed = [orjson.loads(line) for line in file.read_bytes().splitlines()]

    checked = [*listed, acked, resolved, *filed, *streamed, *receiver.bodies]
    errors = {i["finding_info"]["uid"]: ocsf_errors(i) for i in checked}
    assert all(e == [] for e in errors.values()), errors
    states = [model.state_of(i) for i in filed if i["finding_info"]["uid"] == uid]
    assert states[-2:] == ["acknowledged", "resolved"]
    assert len(streamed) == len(filed) == len(receiver.bodies)
