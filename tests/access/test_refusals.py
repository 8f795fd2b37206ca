"""Every refusal of the access-request workflow, with its exact status, code and reason."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.identity.principal import Principal
from tests.access.conftest import Workflow

AUDITOR = ("auditor-he", "taxation")
OFFICER = ("officer-hr", "human-resources")
ASK = "/.well-known/datagate/access-requests"


def officer(workflow: Workflow, sub: str = "officer-hr", dept: str = "human-resources"):
    return workflow.auth(sub, dept, roles=["data-officer"])


async def pending(workflow: Workflow) -> str:
    status, body = await workflow.ask(workflow.auth(*AUDITOR))
    assert status == 201, body
    return body["access_request"]["id"]


@pytest.mark.parametrize(
    ("change", "status", "reason", "message"),
    [
        ({"dataset": "nope"}, 400, "unknown_dataset", "dataset: unknown dataset 'nope'"),
        ({"dataset": None}, 400, "unknown_dataset", "dataset: is required"),
        (
            {"dataset": "medical"},
            403,
            "sharing_none",
            "dataset: 'medical' has sharing none: only its owner department may use it",
        ),
        ({"duration": -5}, 400, "bad_duration", "duration: expected seconds >= 60, got -5"),
        ({"duration": "1h"}, 400, "bad_duration", "duration: expected seconds >= 60, got '1h'"),
        ({"duration": True}, 400, "bad_duration", "duration: expected seconds >= 60, got True"),
        (
            {"duration": 72 * 3600 + 1},
            400,
            "over_cap",
            "duration: a grant on level-3 dataset 'accounts' may last at most 259200 s "
            "(asked 259201 s)",
        ),
        (
            {"actions": ["steal"]},
            400,
            "bad_actions",
            "actions: expected a non-empty list of read, list, export, write",
        ),
        ({"actions": []}, 400, "bad_actions", None),
        (
            {"fields": ["salary"]},
            400,
            "unknown_catalog_field",
            "fields: dataset 'accounts' has no catalogued field 'salary'",
        ),
        ({"purpose": "a b"}, 400, "bad_purpose", None),
        ({"justification": "  "}, 400, "missing_justification", "justification: is required"),
        ({"extra": 1}, 400, "unknown_field", "extra: unknown field"),
    ],
)
async def test_bad_requests(workflow: Workflow, change, status, reason, message) -> None:
    got, body = await workflow.ask(workflow.auth(*AUDITOR), **change)
    assert (got, body["reason"]) == (status, reason), body
    assert body["error"] == ("forbidden" if status == 403 else "bad_request")
    if message is not None:
        assert body["message"] == message
    assert await workflow.gw.gateway.access.search(_soc(), everything=True) == []


def _soc() -> Principal:
    return Principal("soc1", "soc", 4, frozenset({"soc"}))


async def test_a_body_that_is_not_json(workflow: Workflow) -> None:
    async with workflow.gw.session.post(
        workflow.gw.url + ASK, headers=workflow.auth(*AUDITOR), data=b"{nope"
    ) as resp:
        body = await resp.json()
    assert (resp.status, body["reason"], body["message"]) == (
        400,
        "bad_body",
        "body: is not valid JSON",
    )


async def test_no_token_is_401(workflow: Workflow) -> None:
    status, body = await workflow.call("POST", ASK, None, {"dataset": "accounts"})
    assert (status, body["error"], body["reason"]) == (401, "unauthenticated", "missing")


async def test_self_approval(workflow: Workflow) -> None:
    me = officer(workflow)
    status, body = await workflow.ask(me)
    rid = body["access_request"]["id"]
    status, body = await workflow.step(rid, "approve", me)
    assert (status, body["reason"], body["message"]) == (
        403,
        "self_approval",
        "a requester can never decide its own request",
    )


async def test_wrong_department(workflow: Workflow) -> None:
    rid = await pending(workflow)
    status, body = await workflow.step(rid, "approve", officer(workflow, "officer-tax", "taxation"))
    assert (status, body["reason"]) == (403, "wrong_department")
    assert body["message"] == (
        "dataset 'accounts' is owned by 'human-resources': only its data officers decide, "
        "not 'taxation'"
    )


@pytest.mark.parametrize("roles", [["soc"], ["soc", "security-officer"]])
async def test_soc_alone_cannot_approve(workflow: Workflow, roles) -> None:
    rid = await pending(workflow)
    soc = workflow.auth("soc1", "soc", 4, roles=roles)
    for admin in (False, True):
        status, body = await workflow.step(rid, "approve", soc, admin=admin)
        assert (status, body["reason"]) == (403, "not_data_officer")


async def test_soc_data_officer_of_another_department(workflow: Workflow) -> None:
    rid = await pending(workflow)
    soc = workflow.auth("soc1", "soc", 4, roles=["soc", "data-officer"])
    status, body = await workflow.step(rid, "approve", soc, admin=True)
    assert (status, body["reason"]) == (403, "wrong_department")


async def test_a_consumer_without_the_role(workflow: Workflow) -> None:
    rid = await pending(workflow)
    clerk = workflow.auth("clerk", "human-resources")
    status, body = await workflow.step(rid, "approve", clerk)
    assert (status, body["reason"]) == (403, "not_data_officer")


async def test_approving_twice(workflow: Workflow) -> None:
    rid = await pending(workflow)
    assert (await workflow.step(rid, "approve", officer(workflow)))[0] == 200
    status, body = await workflow.step(rid, "approve", officer(workflow, "officer-2"))
    assert (status, body["error"], body["reason"]) == (409, "conflict", "not_pending")
    assert body["message"] == f"access request {rid} is approved, not pending"
    assert len(workflow.gw.gateway.grants.all_grants()) == 1


async def test_approving_after_withdrawal(workflow: Workflow) -> None:
    rid = await pending(workflow)
    status, body = await workflow.step(rid, "withdraw", workflow.auth(*AUDITOR), "not needed")
    assert (status, body["access_request"]["state"]) == (200, "withdrawn")
    status, body = await workflow.step(rid, "approve", officer(workflow))
    assert (status, body["reason"]) == (409, "not_pending")
    assert body["message"] == f"access request {rid} is withdrawn, not pending"
    assert workflow.gw.gateway.grants.all_grants() == []


async def test_rejecting_then_approving(workflow: Workflow) -> None:
    rid = await pending(workflow)
    status, body = await workflow.step(rid, "reject", officer(workflow))
    assert (status, body["reason"], body["message"]) == (
        400,
        "missing_note",
        "note: rejecting a request needs a reason",
    )
    status, body = await workflow.step(rid, "reject", officer(workflow), "no legal basis")
    assert (status, body["access_request"]["state"]) == (200, "rejected")
    assert body["access_request"]["note"] == "no legal basis"
    status, body = await workflow.step(rid, "approve", officer(workflow))
    assert (status, body["reason"]) == (409, "not_pending")


async def test_an_expired_request_cannot_be_approved(workflow: Workflow) -> None:
    rid = await pending(workflow)
    workflow.clock.advance(3600)
    status, body = await workflow.step(rid, "approve", officer(workflow))
    assert (status, body["error"], body["reason"]) == (409, "conflict", "request_lapsed")
    assert body["message"].startswith(f"access request {rid} lapsed: it was not decided by ")
    request = await workflow.gw.gateway.access.get(rid, _soc(), everything=True)
    assert request["state"] == "lapsed"
    assert workflow.gw.gateway.grants.all_grants() == []


async def test_only_the_requester_withdraws(workflow: Workflow) -> None:
    rid = await pending(workflow)
    status, body = await workflow.step(rid, "withdraw", officer(workflow))
    assert (status, body["reason"]) == (403, "not_requester")


async def test_unknown_and_invisible_requests(workflow: Workflow) -> None:
    status, body = await workflow.step("ar-0000000000000000", "approve", officer(workflow))
    assert (status, body["reason"]) == (404, "unknown_request")
    rid = await pending(workflow)
    stranger = workflow.auth("someone", "statistics")
    status, body = await workflow.call("GET", f"{ASK}/{rid}", stranger)
    assert (status, body["reason"]) == (404, "unknown_request")
    status, body = await workflow.call("GET", f"{ASK}?colour=red", stranger)
    assert (status, body["reason"]) == (400, "unknown_parameter")


async def test_bad_note(workflow: Workflow) -> None:
    rid = await pending(workflow)
    status, body = await workflow.call(
        "POST", f"{ASK}/{rid}/approve", officer(workflow), {"note": 5}
    )
    assert (status, body["reason"]) == (400, "bad_body")


async def test_wrong_method_and_unknown_paths(workflow: Workflow) -> None:
    status, body = await workflow.call("DELETE", ASK, workflow.auth(*AUDITOR))
    assert (status, body["error"]) == (405, "method_not_allowed")
    assert set(body) == {"error", "message", "reason", "request_id"}
    assert body["reason"] == "method_not_allowed"
    for path in ("/.well-known/datagate/", "/.well-known/datagate/secrets", f"{ASK}/x/y/z"):
        status, body = await workflow.call("GET", path, workflow.auth(*AUDITOR))
        assert (status, body["error"]) == (404, "not_found"), path
    assert workflow.upstream_seen == []


async def test_too_many_pending_requests(workflow: Workflow) -> None:
    workflow.gw.gateway.access.config = dataclasses.replace(
        workflow.gw.gateway.access.config, max_pending=2
    )
    for _ in range(2):
        await pending(workflow)
    status, body = await workflow.ask(workflow.auth(*AUDITOR))
    assert (status, body["error"], body["reason"]) == (429, "rate_limited", "too_many_pending")
    # Someone else may still ask.
    status, _ = await workflow.ask(workflow.auth("analyst", "taxation"))
    assert status == 201
