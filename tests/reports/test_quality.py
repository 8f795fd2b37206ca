"""Data-quality counts made by the masking walk of a running gateway, the owner-only samples,
the Prometheus counters and `datagate report quality`."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway.cli import main
from gateway.masking.identifiers import make_bank_card, make_resident_id
from tests.gateway.conftest import RunningGateway, gateway_config, running_gateway

CATALOG = """
departments: [human-resources, taxation, statistics]
datasets:
  - id: accounts
    route: /api/accounts/
    upstream: up
    owner: human-resources
    level: 3
    sharing: unconditional
    masked_from_clearance: 1
    records_key: items
    fields:
      - {name: id_card, level: 3, strategy: resident_id}
      - {name: bank_card, level: 3, strategy: bank_card}
      - {name: phone, level: 2, strategy: mobile}
      - {name: born, level: 2, strategy: date}
"""


def records() -> list[dict[str, Any]]:
    rng = random.Random(7)
    good_id, good_card = make_resident_id(rng), make_bank_card(rng)
    bad_id = good_id[:17] + ("0" if good_id[17] != "0" else "1")  # wrong check character
    bad_date = "11010519491331" + good_id[14:]  # month 13
    return [
        {
            "id": 1,
            "id_card": good_id,
            "bank_card": good_card,
            "phone": "13812345678",
            "born": "1949-12-31",
        },
        {
            "id": 2,
            "id_card": bad_id,
            "bank_card": good_card[:-1] + "0" if good_card[-1] != "0" else good_card[:-1] + "1",
            "phone": "",
            "born": "1949-12-31",
        },
        {"id": 3, "id_card": bad_date, "bank_card": None, "phone": "12345", "born": "31/12/1949"},
        {"id": 4, "id_card": good_id, "phone": "13812345678"},  # bank_card and born missing
    ]


ITEMS = web.AppKey("items", list)


async def _serve(request: web.Request) -> web.Response:
    return web.json_response({"items": request.app[ITEMS]})


@pytest.fixture
async def gw(tmp_path: Path, aiohttp_server: Any) -> AsyncIterator[RunningGateway]:
    app = web.Application()
    app[ITEMS] = records()
    app.router.add_get("/{tail:.*}", _serve)
    upstream = await aiohttp_server(app)
    config = gateway_config(
        tmp_path,
        {"up": str(upstream.make_url("")).rstrip("/")},
        CATALOG,
        detection={"enabled": False},
    )
    async with running_gateway(config) as running:
        yield running


def fields(view: dict) -> dict[str, dict]:
    return {row["field"]: row for row in view["fields"]}


async def admin_get(gw: RunningGateway, path: str, **claims: Any) -> tuple[int, Any]:
    async with gw.session.get(gw.admin_url + path, headers=gw.auth(**claims)) as resp:
        return resp.status, await resp.json()


async def test_counts_samples_and_metrics(gw: RunningGateway) -> None:
    resp = await gw.get("/api/accounts/people", headers=gw.auth(clearance=1))
    assert resp.status == 200
    await resp.read()
    status, view = await admin_get(
        gw, "/reports/quality", sub="soc1", dept="soc", clearance=4, roles=["soc"]
    )
    assert status == 200
    got = fields(view)
    assert {k: got["id_card"][k] for k in ("seen", "empty", "missing", "invalid")} == {
        "seen": 4,
        "empty": 0,
        "missing": 0,
        "invalid": 2,
    }
    assert got["id_card"]["invalid_share"] == 0.5
    assert {k: got["bank_card"][k] for k in ("seen", "empty", "missing", "invalid")} == {
        "seen": 3,
        "empty": 1,
        "missing": 1,
        "invalid": 1,
    }
    assert got["bank_card"]["empty_or_missing_share"] == 0.5
    assert (got["phone"]["empty"], got["phone"]["invalid"]) == (1, 1)
    assert (got["born"]["missing"], got["born"]["invalid"]) == (1, 1)
    # The SOC sees no sample ids: they go to the owner only.
    assert all("sample_record_ids" not in row for row in view["fields"])

    status, view = await admin_get(
        gw,
        "/reports/quality",
        sub="officer-hr",
        dept="human-resources",
        clearance=3,
        roles=["data-officer"],
    )
    assert status == 200
    got = fields(view)
    assert got["id_card"]["sample_record_ids"] == ["2", "3"]
    assert got["bank_card"]["sample_record_ids"] == ["2"]
    # Ids only, never values.
    assert not any(str(r["id_card"]) in str(view) for r in records() if r.get("id_card"))

    status, view = await admin_get(
        gw,
        "/reports/quality",
        sub="officer-tax",
        dept="taxation",
        clearance=3,
        roles=["data-officer"],
    )
    assert (status, view["fields"]) == (200, [])

    async with gw.session.get(gw.admin_url + "/metrics") as resp:
        text = await resp.text()
    assert (
        'datagate_quality_values_total{dataset="accounts",field="id_card",'
        'outcome="invalid",strategy="resident_id"} 2.0'
    ) in text


async def test_the_cli_and_its_chart(gw: RunningGateway, capsys, tmp_path: Path) -> None:
    resp = await gw.get("/api/accounts/people", headers=gw.auth(clearance=1))
    await resp.read()
    token = gw.token(sub="soc1", dept="soc", clearance=4, roles=["soc"])
    chart = tmp_path / "quality.png"
    code = await asyncio.to_thread(
        main,
        [
            "report",
            "quality",
            "--url",
            gw.admin_url,
            "--token",
            token,
            "--format",
            "csv",
            "--chart",
            str(chart),
        ],
    )
    # The gateway's own log lines share stdout in this process: the report starts at its header.
    lines = capsys.readouterr().out.splitlines()
    out = "\n".join(lines[next(i for i, line in enumerate(lines) if line.startswith("dataset,")) :])
    assert code == 0
    assert out.splitlines()[0] == (
        "dataset,field,strategy,seen,empty,missing,invalid,empty_or_missing_share,invalid_share"
    )
    assert "accounts,id_card,resident_id,4,0,0,2,0.0,0.5" in out.splitlines()
    assert chart.read_bytes()[:4] == b"\x89PNG"
