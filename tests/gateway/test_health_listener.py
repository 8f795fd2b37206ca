"""The health listener: /healthz and /readyz for a probe, and nothing of the SOC API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from gateway.identity.mint import mint_token
from tests.gateway.conftest import CATALOG, gateway_config, running_gateway


async def test_the_health_listener_serves_the_probes_only(tmp_path: Path, upstream: Any) -> None:
    config = gateway_config(
        tmp_path,
        {"up": upstream.url, "dead": upstream.url},
        CATALOG,
        health={"host": "127.0.0.1", "port": 0},
    )
    async with running_gateway(config) as running:
        (health,) = [lst for lst in running.gateway.listeners if lst.name == "health"]
        url = f"http://127.0.0.1:{health.bound_port}"
        soc = mint_token(config.identity, sub="soc1", dept="soc", clearance=4, roles=["soc"])
        auth = {"Authorization": f"Bearer {soc}"}
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/healthz") as resp:
                assert resp.status == 200 and await resp.json() == {"status": "ok"}
            async with session.get(f"{url}/readyz") as resp:
                body = await resp.json()
                assert resp.status == 200 and body["ready"] is True
                assert body["checks"] == {"started": True, "breakers": True, "audit": True}
            # Not the SOC API, the metrics, the dashboard or the API description: not even
            # with a SOC token.
            for path in ("/incidents", "/breakers", "/grants", "/metrics", "/", "/openapi.json"):
                async with session.get(url + path, headers=auth) as resp:
                    assert resp.status == 404, path
                    assert (await resp.json())["error"] == "not_found"
            async with session.post(f"{url}/healthz") as resp:
                assert resp.status == 405
            # The admin listener keeps its probes and its API.
            async with session.get(f"{running.admin_url}/healthz") as resp:
                assert resp.status == 200
            async with session.get(f"{running.admin_url}/incidents", headers=auth) as resp:
                assert resp.status == 200


async def test_readyz_on_the_health_listener_reports_not_ready(
    tmp_path: Path, upstream: Any
) -> None:
    config = gateway_config(
        tmp_path,
        {"up": upstream.url, "dead": upstream.url},
        CATALOG,
        health={"host": "127.0.0.1", "port": 0},
    )
    async with running_gateway(config) as running:
        (health,) = [lst for lst in running.gateway.listeners if lst.name == "health"]
        running.gateway.started = False  # as while it stops: the probe must see it
        url = f"http://127.0.0.1:{health.bound_port}/readyz"
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            assert resp.status == 503 and (await resp.json())["ready"] is False


async def test_no_health_listener_unless_configured(tmp_path: Path, upstream: Any) -> None:
    config = gateway_config(tmp_path, {"up": upstream.url, "dead": upstream.url}, CATALOG)
    assert config.health is None
    async with running_gateway(config) as running:
        assert [lst.name for lst in running.gateway.listeners] == ["data", "admin"]
