"""The data-sharing page in headless Chromium against a running gateway: a data officer
approves and rejects by clicking; the SOC sees usage, incident handling and quality charts."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.access.conftest import Workflow
from tests.admin.test_dashboard_browser import browser  # noqa: F401  (the fixture)

WAIT_MS = 10_000
PAGE = "/static/sharing.html"

pytestmark = pytest.mark.parametrize("workflow", ["memory"], indirect=True)


async def open_page(browser: Any, workflow: Workflow, token: str) -> Any:  # noqa: F811
    page = await browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(WAIT_MS)
    await page.goto(workflow.gw.admin_url + PAGE)
    await page.fill("#token", token)
    await page.click("#login-submit")
    return page


async def test_an_officer_approves_and_rejects_by_clicking(
    browser: Any,  # noqa: F811
    workflow: Workflow,
) -> None:
    auditor = workflow.auth("auditor-he", "taxation", purpose="tax-audit")
    _, first = await workflow.ask(auditor)
    _, second = await workflow.ask(auditor, justification="a second case")
    first_id, second_id = first["access_request"]["id"], second["access_request"]["id"]
    officer = workflow.token("officer-hr", "human-resources", 3, roles=["data-officer"])
    page = await open_page(browser, workflow, officer)

    row = page.locator(f'#queue tr[data-id="{first_id}"]')
    await row.wait_for()
    assert "auditor-he (taxation)" in await row.inner_text()
    assert await page.locator("#queue-count").inner_text() == "2"
    await row.locator('button[data-action="approve"]').click()
    await row.wait_for(state="detached")  # no longer pending
    approved = await workflow.gw.gateway.access.search(
        _principal("soc"), everything=True, state="approved"
    )
    assert [r["id"] for r in approved] == [first_id]
    status, _ = await workflow.call("GET", "/api/accounts/people/1", auditor)
    assert status == 200  # the grant works

    other = page.locator(f'#queue tr[data-id="{second_id}"]')
    await other.locator('button[data-action="reject"]').click()
    await page.fill("#note", "no legal basis for this case")
    await page.click("#note-confirm")
    await other.wait_for(state="detached")
    await page.select_option("#queue-state", "rejected")
    rejected = page.locator(f'#queue tr[data-id="{second_id}"] td.state')
    await rejected.wait_for()
    assert (await rejected.inner_text()).startswith("rejected")
    await page.locator("#queue-chart svg rect").first.wait_for()
    # The catalog as the officer reads it now: its own department's dataset in clear.
    accounts = page.locator('#catalog tr[data-dataset="accounts"]')
    assert await accounts.locator('td[data-action="read"]').inner_text() == "clear"
    medical = await page.locator(
        '#catalog tr[data-dataset="medical"] td[data-action="read"]'
    ).inner_text()
    assert medical.split() == ["refused", "sharing_none"]
    # The officer's token may not read the SOC's reports: said so, not an error.
    assert "Not available to this token" in await page.locator("#usage-note").inner_text()
    assert await page.locator("#error").is_hidden()


async def test_a_requester_cannot_approve_its_own_request_from_the_page(
    browser: Any,  # noqa: F811
    workflow: Workflow,
) -> None:
    me = workflow.auth("officer-hr", "human-resources", roles=["data-officer"])
    _, body = await workflow.ask(me)
    rid = body["access_request"]["id"]
    page = await open_page(
        browser, workflow, workflow.token("officer-hr", "human-resources", roles=["data-officer"])
    )
    row = page.locator(f'#queue tr[data-id="{rid}"]')
    await row.locator('button[data-action="approve"]').click()
    error = page.locator("#error")
    await error.wait_for()
    assert "403 self_approval" in await error.inner_text()


async def test_the_soc_sees_usage_handling_and_quality(
    browser: Any,  # noqa: F811
    workflow: Workflow,
) -> None:
    reader = workflow.auth("analyst", "taxation", 1)
    for _ in range(3):
        assert (await workflow.call("GET", "/api/register/firms/1", reader))[0] == 200
    await workflow.call("GET", "/api/accounts/people/1", reader)  # refused
    soc = workflow.token("soc1", "soc", 4, roles=["soc"])
    page = await open_page(browser, workflow, soc)
    register = page.locator('#utilisation tr[data-dataset="register"]')
    await register.wait_for()
    cells = await register.locator("td").all_inner_texts()
    assert cells[:4] == ["register", "statistics", "unconditional", "3"]
    assert cells[4] == "20%"  # taxation of five listed departments
    assert "Never called: medical" in await page.locator("#never-called").inner_text()
    assert await page.locator("#usage-chart svg rect").count() >= 2
    quality = page.locator('#quality tr[data-field="register.contact_phone"]')
    await quality.wait_for()
    texts = await quality.locator("td").all_inner_texts()
    assert texts[2] == "3" and texts[-1] == "owner only"
    assert "Incidents" in await page.locator("#handling").inner_text()
    if os.environ.get("DATAGATE_DASHBOARD_SCREENSHOT"):
        await page.screenshot(path=os.environ["DATAGATE_DASHBOARD_SCREENSHOT"], full_page=True)


def _principal(role: str) -> Any:
    from gateway.identity.principal import Principal

    return Principal("x", "soc", 4, frozenset({role}))
