"""OWASP API1:2023 broken object-level authorisation: records of another department's
datasets are refused before anything reaches the upstream."""

from __future__ import annotations

from typing import Any

import orjson

from tests.security.helpers import HostileUpstream, assert_no_leak, error_of, low

POLICE = "/api/police/persons/1"


async def test_a_conditional_record_without_a_grant_is_403_and_never_forwarded(
    gw: Any, hostile: HostileUpstream
) -> None:
    headers = low(gw, clearance=3, purpose="curiosity")
    resp = await gw.get(POLICE, headers=headers, auth=False)
    assert resp.status == 403
    data = error_of(await resp.read())
    assert data["error"] == "forbidden" and data["reason"] == "default_deny"
    assert hostile.seen == []


async def test_without_a_purpose_the_reason_is_no_purpose(
    gw: Any, hostile: HostileUpstream
) -> None:
    resp = await gw.get(POLICE, headers=low(gw, clearance=3), auth=False)
    assert resp.status == 403
    assert error_of(await resp.read())["reason"] == "no_purpose"
    assert hostile.seen == []


async def test_enumerating_ids_in_another_departments_dataset_forwards_nothing(
    gw: Any, hostile: HostileUpstream
) -> None:
    headers = low(gw, clearance=3, purpose="curiosity")
    for i in range(1, 21):
        for path in (f"/api/police/persons/{i}", f"/api/police/persons/{i}.csv"):
            resp = await gw.get(path, headers=headers, auth=False)
            assert resp.status == 403, path
            assert_no_leak(await resp.read())
    assert hostile.seen == []


async def test_an_owner_only_dataset_is_refused_to_other_departments_at_any_clearance(
    gw: Any, hostile: HostileUpstream
) -> None:
    headers = low(gw, clearance=4, roles=["data-officer"], purpose="research")
    for method in ("GET", "HEAD", "POST", "PUT", "DELETE"):
        resp = await gw.request(method, "/api/core/records/7", headers=headers, auth=False)
        assert resp.status == 403, method
        if method != "HEAD":
            assert error_of(await resp.read())["reason"] == "sharing_none"
    assert hostile.seen == []


async def test_the_owner_reads_its_own_records(gw: Any, hostile: HostileUpstream) -> None:
    """Positive control: the refusals above are about the caller, not the route."""
    headers = gw.auth(sub="zhao", dept="public-security", clearance=3)
    resp = await gw.get(POLICE, headers=headers, auth=False)
    assert resp.status == 200
    assert [s.path for s in hostile.seen] == [POLICE]


async def test_another_principals_grant_does_not_cover_the_caller(
    gw: Any, hostile: HostileUpstream
) -> None:
    soc = gw.auth(sub="soc1", dept="soc", clearance=4, roles=["security-officer"])
    grant = {
        "principal": "alice",
        "dataset": "police",
        "actions": ["read"],
        "purpose": "case-1",
        "duration": 600,
        "reason": "case 1",
    }
    resp = await gw.session.post(gw.admin_url + "/grants", json=grant, headers=soc)
    assert resp.status == 201, await resp.text()
    mallory = low(gw, clearance=3, purpose="case-1")
    resp = await gw.get(POLICE, headers=mallory, auth=False)
    assert resp.status == 403
    # Identity headers naming the grantee change nothing.
    spoof = {**mallory, "X-User": "alice", "X-Forwarded-User": "alice", "X-Principal": "alice"}
    resp = await gw.get(POLICE, headers=spoof, auth=False)
    assert resp.status == 403
    assert hostile.seen == []
    alice = gw.auth(sub="alice", dept="market-regulation", clearance=3, purpose="case-1")
    resp = await gw.get(POLICE, headers=alice, auth=False)
    assert resp.status == 200
    assert len(hostile.seen) == 1


async def test_a_write_to_another_departments_dataset_is_refused(
    gw: Any, hostile: HostileUpstream
) -> None:
    body = orjson.dumps({"id_card": "x"})
    resp = await gw.post("/api/people/persons/1", headers=low(gw), auth=False, data=body)
    assert resp.status == 403
    assert hostile.seen == []


async def test_a_cached_decision_is_not_reused_for_another_purpose_or_clearance(
    gw: Any, hostile: HostileUpstream
) -> None:
    """§9: cache keys must include every input the decision reads."""
    soc = gw.auth(sub="soc1", dept="soc", clearance=4, roles=["security-officer"])
    grant = {
        "principal": "alice",
        "dataset": "police",
        "actions": ["read"],
        "purpose": "case-1",
        "duration": 600,
        "reason": "case 1",
    }
    resp = await gw.session.post(gw.admin_url + "/grants", json=grant, headers=soc)
    assert resp.status == 201, await resp.text()
    claims = {"sub": "alice", "dept": "market-regulation", "purposes": ["case-1", "other"]}
    token3 = gw.auth(clearance=3, **claims)
    resp = await gw.get(POLICE, headers={**token3, "X-Purpose": "case-1"}, auth=False)
    assert resp.status == 200
    resp = await gw.get(POLICE, headers={**token3, "X-Purpose": "other"}, auth=False)
    assert resp.status == 403
    token1 = gw.auth(clearance=1, **claims)
    resp = await gw.get(POLICE, headers={**token1, "X-Purpose": "case-1"}, auth=False)
    assert resp.status == 403
    assert len(hostile.seen) == 1


EXPORTS = [
    "/api/people/persons.csv",
    "/api/people/persons.ndjson",
    "/api/people/persons?format=csv",
    "/api/people/persons?format=CSV",
]
EXPORT_LOOKALIKES = [
    "/api/people/persons.CSV",
    "/api/people/persons.Csv",
    "/api/people/persons.csv/",
    "/api/people/persons.JSONL",
    "/api/people/persons?Format=csv",
    "/api/people/persons?FORMAT=csv",
]


async def test_bulk_export_needs_its_own_grant(gw: Any, hostile: HostileUpstream) -> None:
    """Read and list are implicit on an unconditional dataset; export never is."""
    for path in EXPORTS:
        resp = await gw.get(path, headers=low(gw), auth=False)
        assert resp.status == 403, path
    assert hostile.seen == []


async def test_export_look_alikes_are_decided_as_export(gw: Any, hostile: HostileUpstream) -> None:
    for path in EXPORT_LOOKALIKES:
        resp = await gw.get(path, headers=low(gw), auth=False)
        assert resp.status in (400, 403), (path, resp.status)
    assert hostile.seen == []
