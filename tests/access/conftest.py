"""A running gateway on either state backend, with a records upstream, a webhook receiver
and a clock the tests move: the access-request workflow end to end."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from tests.gateway.conftest import RunningGateway, gateway_config, running_gateway

START = 1_796_000_000.0  # a Tuesday, 2026-12-01 (UTC): a fixed start for every test

CATALOG = """
departments: [human-resources, taxation, health, soc, statistics]
datasets:
  - id: accounts
    title: Social-security accounts
    route: /api/accounts/
    upstream: up
    owner: human-resources
    level: 3
    sharing: conditional
    masked_from_clearance: 2
    records_key: items
    fields:
      - {name: id_card, level: 3, strategy: resident_id}
      - {name: name, level: 3, strategy: name}
      - {name: remarks, level: 2, strategy: redact}
  - {id: register, title: Enterprise register, route: /api/register/, upstream: up,
     owner: statistics, level: 1, sharing: unconditional,
     fields: [{name: contact_phone, level: 2, strategy: mobile}]}
  - {id: medical, title: Medical records, route: /api/medical/, upstream: up, owner: health,
     level: 4, sharing: none, fields: [{name: diagnosis, level: 4, strategy: remove}]}
"""
RECORD = {
    "id": 1,
    "id_card": "110105194912310038",
    "name": "张三",
    "remarks": "none",
    "contact_phone": "13812345678",
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sweep_interval(seconds): the access sweep's interval")


class Clock:
    """The gateway's wall clock, moved by the tests."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclasses.dataclass
class Workflow:
    gw: RunningGateway
    clock: Clock
    upstream_seen: list[str]
    webhook: list[dict[str, Any]]

    def token(self, sub: str, dept: str, clearance: int = 2, **claims: Any) -> str:
        return self.gw.token(sub=sub, dept=dept, clearance=clearance, ttl=30 * 86400, **claims)

    def auth(self, sub: str, dept: str, clearance: int = 2, **claims: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(sub, dept, clearance, **claims)}"}

    async def call(
        self, method: str, path: str, who: dict[str, str] | None, body: Any = None, admin=False
    ) -> tuple[int, Any]:
        base = self.gw.admin_url if admin else self.gw.url
        data = None if body is None else orjson.dumps(body)
        async with self.gw.session.request(
            method, base + path, headers=who or {}, data=data
        ) as resp:
            raw = await resp.read()
            return resp.status, orjson.loads(raw) if raw else None

    async def ask(self, who: dict[str, str], **body: Any) -> tuple[int, Any]:
        request = {
            "dataset": "accounts",
            "actions": ["read"],
            "purpose": "tax-audit",
            "duration": 600,
            "justification": "case 2026-113",
            **body,
        }
        return await self.call("POST", "/.well-known/datagate/access-requests", who, request)

    async def step(
        self, request_id: str, step: str, who: dict[str, str], note: str = "", admin=False
    ) -> tuple[int, Any]:
        prefix = "" if admin else "/.well-known/datagate"
        path = f"{prefix}/access-requests/{request_id}/{step}"
        return await self.call("POST", path, who, {"note": note} if note else None, admin)

    async def stream(self) -> list[dict[str, Any]]:
        entries = await self.gw.gateway.state.xrange("access-requests", "0", 1000)
        return [orjson.loads(value) for _, value in entries]

    def audit(self) -> list[dict[str, Any]]:
        path = self.gw.gateway.config.audit.path
        return [orjson.loads(line) for line in path.read_bytes().splitlines()]


SEEN = web.AppKey("seen", list)
EVENTS = web.AppKey("events", list)


async def _records(request: web.Request) -> web.Response:
    request.app[SEEN].append(request.path)
    return web.json_response({"items": [RECORD]})


async def _hook(request: web.Request) -> web.Response:
    request.app[EVENTS].append(await request.json())
    return web.Response(status=204)


@pytest.fixture(params=["memory", "redis"])
async def workflow(
    request: pytest.FixtureRequest, tmp_path: Path, aiohttp_server: Any
) -> AsyncIterator[Workflow]:
    up = web.Application()
    up[SEEN] = []
    up.router.add_get("/{tail:.*}", _records)
    upstream = await aiohttp_server(up)
    hook = web.Application()
    hook[EVENTS] = []
    hook.router.add_post("/hook", _hook)
    receiver = await aiohttp_server(hook)
    marker = request.node.get_closest_marker("sweep_interval")
    sweep = marker.args[0] if marker else 3600
    state: dict[str, Any] = {"url": "memory"}
    if request.param == "redis":
        state = {
            "url": request.getfixturevalue("redis_url"),
            "prefix": request.getfixturevalue("redis_prefix"),
        }
    config = gateway_config(
        tmp_path,
        {"up": str(upstream.make_url("")).rstrip("/")},
        CATALOG,
        state=state,
        access={"decision_deadline": 3600, "sweep_interval": sweep},
        incidents={
            "stream": {"stream": "incidents"},
            "webhook": {"url": str(receiver.make_url("/hook")), "backoff_base": 0.05},
        },
        audit={"flush_interval": 0.01},
        detection={"enabled": False},
    )
    clock = Clock()
    async with running_gateway(config, clock) as gw:
        yield Workflow(gw, clock, up[SEEN], hook[EVENTS])


async def flushed(workflow: Workflow) -> None:
    """Wait until the audit writer has written what was appended."""
    audit = workflow.gw.gateway.audit
    assert audit is not None
    await audit.flush()
