"""Fixtures for the fuzz tests: a real gateway on Redis whose admin listener runs on its own
event loop in a thread, so that schemathesis's blocking client can call it."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from gateway.app import Gateway
from gateway.identity.mint import mint_token
from tests.gateway.conftest import gateway_config
from tests.gateway.conftest import upstream as upstream  # the recording upstream, re-exported
from tests.identity.conftest import ec_key as ec_key  # the identity tests' keys, re-exported
from tests.identity.conftest import ed_key as ed_key
from tests.identity.conftest import rsa_key as rsa_key
from tests.incidents.conftest import Finding
from tests.support import delete_prefix

T = TypeVar("T")

CATALOG = """
datasets:
  - {id: population, route: /api/population/, upstream: up, owner: public-security, level: 3,
     sharing: conditional, fields: [{name: id_card, level: 3, strategy: resident_id}]}
  - {id: enterprise, route: /api/enterprise/, upstream: up, owner: market-regulation,
     level: 1, sharing: unconditional}
  - {id: medical, route: /api/medical/, upstream: up, owner: health, level: 4, sharing: none}
"""
SEEDED_INCIDENTS = 6


@dataclasses.dataclass
class AdminUnderTest:
    """The admin listener's URL, a SOC token, and objects that exist on it."""

    url: str
    token: str
    incident_ids: list[str]
    grant_ids: list[str]
    gateway: Gateway
    loop: asyncio.AbstractEventLoop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)


@pytest.fixture(scope="module")
def admin_under_test(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[AdminUnderTest]:
    tmp_path: Path = tmp_path_factory.mktemp("admin")
    prefix = f"datagate-test:{uuid.uuid4().hex}:"
    config = gateway_config(
        tmp_path,
        {"up": "http://127.0.0.1:9"},
        CATALOG,
        state={"url": redis_url, "prefix": prefix},
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="admin-under-test", daemon=True)
    thread.start()

    def run(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=30)

    async def start() -> Gateway:
        gateway = Gateway(config)
        await gateway.start()
        return gateway

    gateway = run(start())
    try:
        incidents = [
            run(gateway.incidents.raise_detection(Finding(principal=f"p{i}")))
            for i in range(SEEDED_INCIDENTS)
        ]
        grants = [
            run(
                gateway.grants.add(
                    {
                        "department": "taxation",
                        "dataset": "population",
                        "actions": ["read"],
                        "purpose": "tax-audit",
                        "duration": 3600,
                        "reason": "seeded for the fuzz run",
                    },
                    "soc1",
                )
            )
            for _ in range(3)
        ]
        token = mint_token(
            config.identity, sub="soc1", dept="soc", clearance=4, roles=["soc"], ttl=3600
        )
        yield AdminUnderTest(
            url=gateway.urls()[1],
            token=token,
            incident_ids=[i["finding_info"]["uid"] for i in incidents],
            grant_ids=[g.id for g in grants],
            gateway=gateway,
            loop=loop,
        )
    finally:
        run(gateway.stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        delete_prefix(redis_url, prefix)
