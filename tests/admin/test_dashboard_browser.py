"""The SOC dashboard in headless Chromium against a real admin app: token, acknowledge,
resolve, breaker reset, clear errors.

Needs the Debian package `chromium` (or DATAGATE_CHROMIUM=/path/to/chromium) and the Python
package `playwright` (no `playwright install`: the system browser is used). Skips, saying
why, when either is missing, unless DATAGATE_REQUIRE_BROWSER=1, when it fails instead.
DATAGATE_DASHBOARD_SCREENSHOT=FILE keeps a screenshot of the board.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
import os
import re
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, NoReturn

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.admin import dashboard
from gateway.admin.app import admin_app
from gateway.admin.stats import DashboardStats
from gateway.breaker import admin as breaker_admin
from gateway.breaker.config import BreakerConfig
from gateway.breaker.store import Breakers
from gateway.errors import GatewayError
from gateway.identity.principal import Principal
from gateway.incidents import admin as incident_admin
from gateway.incidents.config import IncidentsConfig
from gateway.incidents.service import Incidents
from gateway.incidents.sinks import Sinks
from gateway.metrics import Metrics
from gateway.state import MemoryBackend

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

# The admin app keys request["principal"] by string.
pytestmark = pytest.mark.filterwarnings("ignore:It is recommended to use web.RequestKey")

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SOC_TOKEN = "soc-dashboard-test-token"
CONSUMER_TOKEN = "consumer-test-token"
PRINCIPALS = {
    SOC_TOKEN: Principal(subject="soc1", department="soc", clearance=4, roles=frozenset({"soc"})),
    CONSUMER_TOKEN: Principal(
        subject="carol", department="tax", clearance=2, roles=frozenset({"consumer"})
    ),
}
WAIT_MS = 10_000


@dataclasses.dataclass(frozen=True)
class Detection:
    """A detection as the detectors hand it to the incident service."""

    rule: str = "bulk_export"
    severity: int = 4
    principal: str | None = "mallory"
    department: str | None = "tax"
    dataset: str | None = "citizens"
    title: str = "Bulk export far above baseline"
    score: float = 0.97
    evidence: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {
            "baseline": {"records_per_min": 40.0},
            "observed": {"records_per_min": 5000.0},
            "sample_request_ids": ["r-1"],
        }
    )


@dataclasses.dataclass
class Soc:
    url: str
    api: aiohttp.ClientSession  # the admin API with the SOC token
    incidents: Incidents
    breakers: Breakers
    incident_id: str  # raised by a detection for mallory, who is suspended


def _no_browser(reason: str) -> NoReturn:
    if os.environ.get("DATAGATE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason}; DATAGATE_REQUIRE_BROWSER=1 requires a browser", pytrace=False)
    pytest.skip(reason)


def _chromium() -> str:
    configured = os.environ.get("DATAGATE_CHROMIUM")
    if configured:
        if not Path(configured).is_file():
            _no_browser(f"DATAGATE_CHROMIUM={configured} is not a file")
        return configured
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        _no_browser("no Chromium installed (apt-get install chromium, or set DATAGATE_CHROMIUM)")
    return found


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    executable = _chromium()
    try:
        async_api: ModuleType = importlib.import_module("playwright.async_api")
    except ImportError:
        _no_browser("the Python package playwright is not installed (pip install playwright)")
    async with async_api.async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


async def authenticate(request: web.Request) -> Principal:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme != "Bearer" or token not in PRINCIPALS:
        raise GatewayError(
            "unauthenticated",
            "missing or invalid bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return PRINCIPALS[token]


def _traffic(stats: DashboardStats, now: float) -> None:
    """An hour of ordinary traffic and a burst from mallory, for the charts."""
    for i in range(600):
        at = now - 3600 + i * 6
        stats.add(
            {
                "ts": dt.datetime.fromtimestamp(at, dt.UTC).isoformat(),
                "principal": ("alice", "bob", "dave")[i % 3],
                "department": "tax",
                "decision": "deny" if i % 9 == 0 else "allow",
                "status": 403 if i % 9 == 0 else 200,
                "score": (i % 7) / 20,
            }
        )
    for i in range(40):
        stats.add(
            {
                "ts": dt.datetime.fromtimestamp(now - 120 + i, dt.UTC).isoformat(),
                "principal": "mallory",
                "department": "tax",
                "decision": "deny" if i > 30 else "allow",
                "status": 423 if i > 30 else 200,
                "score": 0.9 + (i % 10) / 100,
            }
        )


@pytest.fixture
async def soc() -> AsyncIterator[Soc]:
    backend = MemoryBackend()
    await backend.start()
    incidents = Incidents(backend, IncidentsConfig(file=None), Sinks([]))
    breakers = Breakers(backend, BreakerConfig())
    await incidents.start()
    await breakers.start()
    stats = DashboardStats()
    _traffic(stats, time.time())
    # What the observe stage does on a high-severity detection: raise, trip, record the action.
    incident = await incidents.raise_detection(
        Detection(), client_ip="10.1.2.3", path="/api/citizens/records", level=3
    )
    incident_id = incident["finding_info"]["uid"]
    tripped = await breakers.trip("principal", "mallory", "bulk_export", incident_id)
    assert tripped is not None
    await incidents.set_action(incident_id, "principal", "mallory", tripped.state, tripped.until)
    app = admin_app(
        metrics=Metrics(),
        readiness=lambda: {"ready": True},
        authenticate=authenticate,
        roles=("soc", "security-officer"),
        route_tables=[
            dashboard.routes(stats),
            incident_admin.routes(incidents),
            breaker_admin.routes(breakers),
        ],
    )
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("/"))
    api = aiohttp.ClientSession(base_url=url, headers={"Authorization": f"Bearer {SOC_TOKEN}"})
    yield Soc(url, api, incidents, breakers, incident_id)
    await api.close()
    await server.close()
    await breakers.close()
    await incidents.close()
    await backend.close()


async def open_board(browser: Browser, soc: Soc, token: str = SOC_TOKEN) -> Page:
    page = await browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(WAIT_MS)
    await page.goto(soc.url)
    await page.fill("#token", token)
    await page.click("#login-submit")
    return page


async def api_incident(soc: Soc, incident_id: str) -> dict[str, Any]:
    async with soc.api.get(f"/incidents/{incident_id}") as response:
        assert response.status == 200
        return (await response.json())["incident"]  # type: ignore[no-any-return]


async def test_acknowledge_an_incident_by_clicking(
    browser: Browser, soc: Soc, tmp_path: Path
) -> None:
    problems: list[str] = []
    page = await open_board(browser, soc)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error" else None,
    )
    row = page.locator(f'tr[data-incident="{soc.incident_id}"]')

    await page.locator(f'tr[data-incident="{soc.incident_id}"][data-status="new"]').wait_for()
    assert await row.locator(".sev").inner_text() == "High"
    assert "mallory" in await row.inner_text()
    assert re.fullmatch(r"1h 5\dm \d\ds left", await row.locator("td.sla").inner_text())
    breaker = page.locator('tr[data-breaker="principal:mallory"]')
    assert await breaker.get_attribute("data-state") == "open"
    assert soc.incident_id in await breaker.inner_text()
    await page.locator("#traffic-chart svg rect").first.wait_for()
    assert await page.locator('#principals tr[data-principal="mallory"]').count() == 1

    await row.locator('button[data-action="ack"]').click()

    acknowledged = page.locator(
        f'tr[data-incident="{soc.incident_id}"][data-status="acknowledged"]'
    )
    await acknowledged.wait_for()
    assert await row.locator("td.status").inner_text() == "acknowledged"
    assert (await row.locator("td.sla").inner_text()).startswith("met (acknowledged ")
    assert await row.locator('button[data-action="ack"]').count() == 0
    incident = await api_incident(soc, soc.incident_id)
    assert incident["unmapped"]["workflow"]["state"] == "acknowledged"
    assert incident["unmapped"]["workflow"]["history"][-1]["by"] == "soc1"
    assert incident["unmapped"]["sla"]["acknowledged_at"] is not None
    assert await page.locator("#error").is_hidden()
    screenshot = os.environ.get("DATAGATE_DASHBOARD_SCREENSHOT", str(tmp_path / "dashboard.png"))
    await page.screenshot(path=screenshot, full_page=True)

    # The token lives in the tab's session storage: a reload needs no new login.
    await page.reload()
    await acknowledged.wait_for()
    assert await page.locator("#login").is_hidden()
    assert problems == []


async def test_resolve_and_reset_ask_for_a_note(browser: Browser, soc: Soc) -> None:
    page = await open_board(browser, soc)
    row = page.locator(f'tr[data-incident="{soc.incident_id}"]')
    breaker = page.locator('tr[data-breaker="principal:mallory"]')
    await row.wait_for()

    # Cancelling the note dialog changes nothing.
    await breaker.locator('button[data-action="reset"]').click()
    await page.locator("#note-dialog").wait_for()
    await page.click("#note-cancel")
    await page.locator("#note-dialog").wait_for(state="hidden")
    still = await soc.breakers.get("principal", "mallory")
    assert still is not None
    assert still.state == "open"

    await row.locator('button[data-action="resolve"]').click()
    await page.fill("#note", "approved quarterly export")
    await page.click("#note-confirm")
    await row.wait_for(state="detached")
    incident = await api_incident(soc, soc.incident_id)
    assert incident["unmapped"]["workflow"]["state"] == "resolved"
    assert incident["unmapped"]["workflow"]["history"][-1]["note"] == "approved quarterly export"
    assert await page.locator("#incidents-empty").is_visible()

    await breaker.locator('button[data-action="reset"]').click()
    await page.fill("#note", "export confirmed with the data owner")
    await page.click("#note-confirm")
    await breaker.wait_for(state="detached")
    async with soc.api.get("/breakers") as response:
        assert (await response.json())["breakers"] == []
    state = await soc.breakers.get("principal", "mallory")
    assert state is not None
    assert (state.state, state.by, state.note) == (
        "closed",
        "soc1",
        "export confirmed with the data owner",
    )


@pytest.mark.parametrize(
    ("token", "shown"),
    [
        ("not-a-token", "401 unauthenticated: missing or invalid bearer token"),
        (CONSUMER_TOKEN, "403 forbidden: the admin API needs one of the roles"),
    ],
    ids=["unknown-token", "no-soc-role"],
)
async def test_a_refused_token_is_shown_clearly(
    browser: Browser, soc: Soc, token: str, shown: str
) -> None:
    page = await open_board(browser, soc, token)

    error = page.locator("#error")
    await error.wait_for()
    assert shown in await error.inner_text()
    assert await page.locator("#login").is_visible()
    assert await page.locator("#board").is_hidden()

    await page.fill("#token", SOC_TOKEN)
    await page.click("#login-submit")
    await page.locator(f'tr[data-incident="{soc.incident_id}"]').wait_for()
    assert await error.is_hidden()


async def test_incident_text_is_never_markup(browser: Browser, soc: Soc) -> None:
    title = "<img src=x onerror=\"document.title='owned'\">"
    raised = await soc.incidents.raise_detection(
        Detection(rule="enumeration", principal="<b>eve</b>", title=title, severity=5)
    )
    page = await open_board(browser, soc)

    row = page.locator(f'tr[data-incident="{raised["finding_info"]["uid"]}"]')
    await row.wait_for()
    assert title in await row.inner_text()
    assert "<b>eve</b>" in await row.inner_text()
    assert await page.locator("#incidents img, #incidents b").count() == 0
    assert await page.title() == "DataGate SOC dashboard"
    # Critical before high: the newest, most severe incident leads the queue.
    assert (
        await page.locator("#incidents tbody tr").first.get_attribute("data-incident")
        == raised["finding_info"]["uid"]
    )
