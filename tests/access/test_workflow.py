"""Request -> approve -> use -> expire against a running gateway, on both state backends."""

from __future__ import annotations

import asyncio

import pytest

from tests.access.conftest import RECORD, Workflow, flushed

AUDITOR = ("auditor-he", "taxation")
OFFICER = ("officer-hr", "human-resources")


async def read_accounts(workflow: Workflow, **claims) -> tuple[int, object]:
    who = workflow.auth(*AUDITOR, purpose="tax-audit", **claims)
    return await workflow.call("GET", "/api/accounts/people/1", who)


async def until(predicate, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_request_approve_use_expire(workflow: Workflow) -> None:
    status, body = await read_accounts(workflow)
    assert (status, body["reason"]) == (403, "default_deny")

    status, body = await workflow.ask(workflow.auth(*AUDITOR), fields=["id_card"])
    assert status == 201, body
    request = body["access_request"]
    assert request["state"] == "pending"
    assert (request["requester"], request["department"]) == AUDITOR
    assert (request["owner"], request["grant_clearance"]) == ("human-resources", 3)
    assert request["decide_by_ts"] == workflow.clock.now + 3600

    officer = workflow.auth(*OFFICER, roles=["data-officer"])
    status, body = await workflow.step(request["id"], "approve", officer, "ok for the case")
    assert status == 200, body
    approved = body["access_request"]
    assert approved["state"] == "approved"
    assert approved["decided_by"] == "officer-hr"
    assert approved["grant_expires_ts"] == workflow.clock.now + 600
    grant = workflow.gw.gateway.grants.get(approved["grant_id"])
    assert grant is not None and grant.principal == "auditor-he"
    assert grant.granted_by == "officer-hr" and grant.clearance == 3

    status, body = await read_accounts(workflow)
    assert status == 200, body
    # The grant reads at clearance 3, the level of the requested field: in clear.
    assert body["items"][0]["id_card"] == RECORD["id_card"]
    assert workflow.upstream_seen == ["/api/accounts/people/1"]

    workflow.clock.advance(601)
    status, body = await read_accounts(workflow)
    assert (status, body["reason"]) == (403, "default_deny")
    assert await workflow.gw.gateway.access.sweep() == 1
    status, body = await workflow.call(
        "GET", f"/.well-known/datagate/access-requests/{request['id']}", workflow.auth(*AUDITOR)
    )
    assert body["access_request"]["state"] == "expired"
    assert [h["step"] for h in body["access_request"]["history"]] == [
        "request",
        "approve",
        "expire",
    ]

    # Every step: the audit log, the stream and the webhook.
    await flushed(workflow)
    steps = [r["step"] for r in workflow.audit() if r.get("type") == "access_request"]
    assert steps == ["request", "approve", "expire"]
    grants = [r["action"] for r in workflow.audit() if r.get("type") == "grant"]
    assert grants == ["add"]
    assert [e["step"] for e in await workflow.stream()] == ["request", "approve", "expire"]
    await until(lambda: len(workflow.webhook) == 3)
    assert [e["step"] for e in workflow.webhook] == ["request", "approve", "expire"]
    assert all(e["type"] == "access_request" and e["id"] == request["id"] for e in workflow.webhook)
    # The live usage report counts the requester's department as a catalogued consumer.
    soc = workflow.auth("soc1", "soc", 4, roles=["soc"])
    status, usage = await workflow.call("GET", "/reports/usage", soc, admin=True)
    accounts = next(d for d in usage["datasets"] if d["dataset"] == "accounts")
    assert accounts["catalogued_consumers"] == ["human-resources", "taxation"]
    assert (accounts["consumers_served"], accounts["utilisation"]) == (["taxation"], 0.5)
    # The incident stream got none of them.
    assert await workflow.gw.gateway.state.xrange("incidents") == []


async def test_without_fields_the_grant_reads_masked(workflow: Workflow) -> None:
    _, body = await workflow.ask(workflow.auth(*AUDITOR))
    request = body["access_request"]
    assert request["grant_clearance"] is None
    officer = workflow.auth(*OFFICER, roles=["data-officer"])
    status, _ = await workflow.step(request["id"], "approve", officer)
    assert status == 200
    status, body = await read_accounts(workflow)
    assert status == 200
    assert body["items"][0]["id_card"] == "110105********0038"


async def test_two_approvals_at_once_make_one_grant(workflow: Workflow) -> None:
    _, body = await workflow.ask(workflow.auth(*AUDITOR))
    rid = body["access_request"]["id"]
    one = workflow.auth("officer-a", "human-resources", roles=["data-officer"])
    two = workflow.auth("officer-b", "human-resources", roles=["data-officer"])
    results = await asyncio.gather(
        workflow.step(rid, "approve", one), workflow.step(rid, "approve", two)
    )
    statuses = sorted(status for status, _ in results)
    assert statuses == [200, 409]
    loser = next(body for status, body in results if status == 409)
    assert loser["reason"] == "not_pending"
    assert len(workflow.gw.gateway.grants.all_grants()) == 1


@pytest.mark.sweep_interval(0.05)
async def test_a_pending_request_lapses_at_its_deadline(workflow: Workflow) -> None:
    _, body = await workflow.ask(workflow.auth(*AUDITOR))
    rid = body["access_request"]["id"]
    workflow.clock.advance(3600)
    await until(lambda: len(workflow.webhook) == 2)
    assert [e["step"] for e in workflow.webhook] == ["request", "lapse"]
    _status, body = await workflow.call(
        "GET", f"/.well-known/datagate/access-requests/{rid}", workflow.auth(*AUDITOR)
    )
    assert body["access_request"]["state"] == "lapsed"


async def test_the_officers_queue_on_the_admin_listener(workflow: Workflow) -> None:
    _, mine = await workflow.ask(workflow.auth(*AUDITOR))
    _, other = await workflow.ask(
        workflow.auth("analyst", "taxation"), dataset="register", purpose="statistics"
    )
    officer = workflow.auth(*OFFICER, roles=["data-officer"])
    status, body = await workflow.call("GET", "/access-requests", officer, admin=True)
    assert status == 200
    assert [r["id"] for r in body["access_requests"]] == [mine["access_request"]["id"]]
    soc = workflow.auth("soc1", "soc", 4, roles=["soc"])
    status, body = await workflow.call("GET", "/access-requests?state=pending", soc, admin=True)
    assert {r["id"] for r in body["access_requests"]} == {
        mine["access_request"]["id"],
        other["access_request"]["id"],
    }
    status, body = await workflow.step(mine["access_request"]["id"], "approve", officer, admin=True)
    assert (status, body["access_request"]["state"]) == (200, "approved")
    consumer = workflow.auth(*AUDITOR)
    status, body = await workflow.call("GET", "/access-requests", consumer, admin=True)
    assert (status, body["reason"]) == (403, "missing_role")
    status, body = await workflow.call("GET", "/grants", officer, admin=True)
    assert (status, body["reason"]) == (403, "missing_role")
