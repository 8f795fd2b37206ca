"""The whole gateway in front of the demo data API, with the shipped policies: what each kind
of caller sees, the audit trail, the SOC's breaker and the admin API's role check."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.audit.chain import verify
from gateway.config import parse_config
from gateway.demo.upstream import start_upstream
from tests.gateway.conftest import REPO, SECRET, closed_port, running_gateway

ID_MASKED = re.compile(r"^\d{6}\*{8}[0-9X]{4}$")
PHONE_MASKED = re.compile(r"^1\d{2}\*{4}\d{4}$")
WEEKDAY_OFFICE_HOURS = 1_767_607_200.0  # Monday 2026-01-05 10:00 UTC


@pytest.fixture
async def demo(tmp_path: Path) -> Any:
    runner = await start_upstream("127.0.0.1", 0, seed=7, size=50)
    port = runner.addresses[0][1]
    policies = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policies)
    config = parse_config(
        {
            "upstreams": {"demo": {"url": f"http://127.0.0.1:{port}"}},
            "server": {"host": "127.0.0.1", "port": 0},
            "admin": {"host": "127.0.0.1", "port": 0},
            "identity": {
                "issuers": [
                    {
                        "issuer": "tests",
                        "audience": "datagate",
                        "algorithms": ["HS256"],
                        "secret": SECRET,
                    }
                ],
                "signing_key": {"key": SECRET},
            },
            "policy": {"dir": str(policies), "watch": False},
            "masking": {"pseudonym_secret": "p" * 32},
            "data_dir": str(tmp_path / "data"),
        },
        base_dir=tmp_path,
        environ={},
    )
    clock_value = [WEEKDAY_OFFICE_HOURS]
    async with running_gateway(config, clock=lambda: clock_value[0]) as gw:
        gw.clock = clock_value  # type: ignore[attr-defined]
        yield gw
    await runner.cleanup()


def who(**claims: Any) -> dict[str, Any]:
    return claims


async def body(resp: Any) -> Any:
    return orjson.loads(await resp.read())


async def test_a_caseworker_at_clearance_2_sees_masked_identifiers(demo: Any) -> None:
    headers = demo.auth(
        sub="chen", dept="civil-affairs", clearance=2, purpose="benefit-eligibility"
    )
    resp = await demo.get("/api/population/persons?size=5", headers=headers, auth=False)
    assert resp.status == 200, await resp.text()
    for person in (await body(resp))["items"]:
        assert ID_MASKED.match(person["id_card"]), person["id_card"]
        assert PHONE_MASKED.match(person["phone"]), person["phone"]
        assert re.fullmatch(r".{1,2}\*+", person["name"]), person["name"]
        assert re.fullmatch(r"\d{4}", person["birth_date"])
        head = person["household"]["head"]
        assert ID_MASKED.match(head["id_card"]), "nested objects are masked too"
    assert "X-Audit-Seq" not in resp.headers, "the global request count is not for consumers"


async def test_the_owner_at_clearance_4_sees_values_in_clear(demo: Any) -> None:
    headers = demo.auth(sub="zhao", dept="public-security", clearance=4)
    resp = await demo.get("/api/population/persons/1", headers=headers, auth=False)
    assert resp.status == 200
    person = await body(resp)
    assert re.fullmatch(r"\d{17}[0-9X]", person["id_card"])
    assert re.fullmatch(r"1\d{10}", person["phone"])


async def test_medical_diagnosis_never_reaches_a_caller_below_level_4(demo: Any) -> None:
    for dept, clearance in (("health", 3), ("public-security", 3), ("market-regulation", 1)):
        headers = demo.auth(sub="x", dept=dept, clearance=clearance)
        for path in ("/api/medical/records/1", "/api/medical/records"):
            resp = await demo.get(path, headers=headers, auth=False)
            text = await resp.text()
            assert resp.status == 403, (dept, path)
            assert "diagnosis" not in text
    resp = await demo.get(
        "/api/medical/records/1",
        headers=demo.auth(sub="w", dept="health", clearance=4),
        auth=False,
    )
    assert resp.status == 200 and "diagnosis" in await body(resp)


async def test_an_enterprise_analyst_at_clearance_1_is_refused_population(demo: Any) -> None:
    headers = demo.auth(sub="liu", dept="market-regulation", clearance=1)
    resp = await demo.get("/api/population/persons/1", headers=headers, auth=False)
    assert resp.status == 403
    data = await body(resp)
    assert data["error"] == "forbidden" and data["reason"] == "clearance_below_level"


async def test_a_grant_works_until_it_expires_and_remarks_are_scanned(demo: Any) -> None:
    soc = demo.auth(sub="soc1", dept="soc", clearance=4, roles=["security-officer"])
    auditor = demo.auth(sub="he", dept="tax", clearance=2, purpose="tax-audit")
    resp = await demo.get("/api/social-security/accounts?size=50", headers=auditor, auth=False)
    assert resp.status == 403
    grant = {
        "principal": "he",
        "dataset": "social-security",
        "actions": ["read", "list"],
        "purpose": "tax-audit",
        "duration": 600,
        "reason": "case 113",
    }
    resp = await demo.session.post(demo.admin_url + "/grants", json=grant, headers=soc)
    assert resp.status == 201, await resp.text()
    resp = await demo.get("/api/social-security/accounts?size=50", headers=auditor, auth=False)
    assert resp.status == 200
    text = await resp.text()
    # No resident ID, bank card or mobile survives anywhere, free-text remarks included.
    assert not re.search(r"(?<![0-9])\d{17}[0-9X](?![0-9])", text)
    assert not re.search(r"(?<![0-9*])1[3-9]\d{9}(?![0-9])", text)
    assert not re.search(r"(?<![0-9])62\d{14,17}(?![0-9])", text)
    demo.clock[0] += 601  # the grant's expiry second has passed
    resp = await demo.get("/api/social-security/accounts?size=5", headers=auditor, auth=False)
    assert resp.status == 403, await resp.text()


async def test_filtering_on_a_masked_field_is_refused(demo: Any) -> None:
    headers = demo.auth(
        sub="chen", dept="civil-affairs", clearance=2, purpose="benefit-eligibility"
    )
    resp = await demo.get(
        "/api/population/persons?idcard=110105194912310038", headers=headers, auth=False
    )
    assert resp.status == 403
    assert (await body(resp))["reason"] == "masked_field_query"


async def test_every_response_is_in_a_verifiable_audit_log(demo: Any) -> None:
    soc = demo.auth(sub="soc1", dept="soc", clearance=4, roles=["soc"])
    seqs, ids = [], []
    for path in ("/api/enterprise/companies/1", "/api/population/persons/1"):
        resp = await demo.get(path, headers=soc, auth=False)
        seqs.append(int(resp.headers["X-Audit-Seq"]))  # shown to admin roles only
        ids.append(resp.headers["X-Request-ID"])
    for path in ("/api/enterprise/companies/1", "/api/nope"):
        resp = await demo.get(path)
        assert "X-Audit-Seq" not in resp.headers
        ids.append(resp.headers["X-Request-ID"])
    assert seqs == sorted(seqs) and len(set(seqs)) == 2
    await demo.gateway.audit.flush()
    lines = demo.gateway.config.audit.path.read_bytes().splitlines(keepends=True)
    assert verify(lines).ok
    records = {r["request_id"]: r for r in map(orjson.loads, lines)}
    assert [records[i]["seq"] for i in ids[:2]] == seqs
    assert all(i in records for i in ids), "X-Request-ID finds every response's record"
    text = b"\n".join(lines)
    assert demo.token().encode() not in text


async def test_a_soc_suspension_refuses_with_423_until_reset(demo: Any) -> None:
    soc = demo.auth(sub="soc1", dept="soc", clearance=4, roles=["soc"])
    resp = await demo.session.post(
        demo.admin_url + "/breakers",
        json={"scope": "principal", "key": "alice", "note": "investigating"},
        headers=soc,
    )
    assert resp.status in (200, 201), await resp.text()
    resp = await demo.get("/api/enterprise/companies/1")
    assert resp.status == 423
    assert (await body(resp))["error"] == "sharing_suspended"
    resp = await demo.session.post(
        demo.admin_url + "/breakers/reset",
        json={"scope": "principal", "key": "alice", "note": "cleared"},
        headers=soc,
    )
    assert resp.status == 200, await resp.text()
    assert (await demo.get("/api/enterprise/companies/1")).status == 200


async def test_the_admin_api_needs_a_soc_role(demo: Any) -> None:
    resp = await demo.session.get(demo.admin_url + "/incidents")
    assert resp.status == 401
    resp = await demo.session.get(demo.admin_url + "/incidents", headers=demo.auth())
    assert resp.status == 403
    assert (await body(resp))["reason"] == "missing_role"
    resp = await demo.session.get(demo.admin_url + "/healthz")
    assert resp.status == 200


async def test_admin_paths_are_not_served_on_the_data_port(demo: Any) -> None:
    for path in ("/incidents", "/breakers", "/grants", "/metrics", "/readyz"):
        resp = await demo.get(path)
        assert resp.status == 404


async def test_an_invalid_policy_change_keeps_the_last_good_policy(demo: Any) -> None:
    soc = demo.auth(sub="so", dept="soc", clearance=4, roles=["security-officer"])
    before = demo.gateway.policy.current.version
    (demo.gateway.config.policy.dir / "policy.csv").write_text("p, dept:x, population\n")
    resp = await demo.session.post(demo.admin_url + "/policy/reload", headers=soc)
    assert resp.status == 422
    assert demo.gateway.policy.current.version == before
    assert (await demo.get("/api/enterprise/companies/1")).status == 200


async def test_redis_down_fails_closed(tmp_path: Path) -> None:
    config = parse_config(
        {
            "upstreams": {"demo": {"url": f"http://127.0.0.1:{closed_port()}"}},
            "identity": {
                "issuers": [
                    {
                        "issuer": "t",
                        "audience": "datagate",
                        "algorithms": ["HS256"],
                        "secret": SECRET,
                    }
                ]
            },
            "state": {"url": f"redis://127.0.0.1:{closed_port()}/0"},
            "policy": {"dir": str(REPO / "policies"), "watch": False},
            "data_dir": str(tmp_path),
        },
        base_dir=tmp_path,
        environ={},
    )
    from gateway.app import Gateway
    from gateway.errors import StateUnavailable

    with pytest.raises(StateUnavailable):
        await Gateway(config).start()


async def test_a_burst_trips_the_breaker_and_a_soc_reset_restores_access(demo: Any) -> None:
    statuses = []
    incident_id = None
    for i in range(200):
        resp = await demo.get(f"/api/enterprise/companies/{i % 40 + 1}")
        statuses.append(resp.status)
        if resp.status == 423:
            data = await body(resp)
            assert data["error"] == "sharing_suspended"
            incident_id = data["incident_id"]
            assert resp.headers["Retry-After"]
            break
    assert incident_id is not None, f"no suspension after {len(statuses)} requests"
    assert set(statuses[:-1]) == {200}
    # Suspended from now on: the next request is refused without reaching the detector.
    assert (await demo.get("/api/enterprise/companies/1")).status == 423

    soc = demo.auth(sub="soc1", dept="soc", clearance=4, roles=["soc"])
    resp = await demo.session.get(demo.admin_url + "/incidents?status=new", headers=soc)
    incidents = (await body(resp))["incidents"]
    mine = [i for i in incidents if i["finding_info"]["uid"] == incident_id]
    assert (
        mine
        and mine[0]["class_uid"] == 2004
        and mine[0]["unmapped"]["ecs"]["user"]["id"] == "alice"
    )
    assert mine[0]["unmapped"]["sla"]["due_at"]
    resp = await demo.session.post(
        demo.admin_url + f"/incidents/{incident_id}/ack", json={"note": "looking"}, headers=soc
    )
    assert resp.status == 200
    resp = await demo.session.post(
        demo.admin_url + "/breakers/reset",
        json={"scope": "principal", "key": "alice", "note": "scripted test burst"},
        headers=soc,
    )
    assert resp.status == 200, await resp.text()
    # Sharing is back (a plain list: the sequential walk above would be flagged again).
    assert (await demo.get("/api/enterprise/companies")).status == 200
    lines = demo.gateway.config.incidents.file.path.read_text().splitlines()
    assert any(incident_id in line for line in lines)


async def test_a_finding_about_a_client_ip_does_not_suspend_its_principals(demo: Any) -> None:
    for _ in range(60):  # credential stuffing from this client IP
        resp = await demo.get(
            "/api/enterprise/companies/1",
            headers={"Authorization": "Bearer not.a.token"},
            auth=False,
        )
        assert resp.status == 401
    soc = demo.auth(sub="soc1", dept="soc", clearance=4, roles=["soc"])
    resp = await demo.session.get(demo.admin_url + "/incidents", headers=soc)
    rules = {i["finding_info"]["analytic"]["name"] for i in (await body(resp))["incidents"]}
    assert "auth_failures" in rules
    # A legitimate principal behind the same address is not suspended by it.
    assert (await demo.get("/api/enterprise/companies/1")).status == 200


async def test_a_busy_shared_address_does_not_suspend_whoever_crosses_the_line(
    demo: Any,
) -> None:
    # 150 principals behind one NAT address, a request each: the address is busy, but no
    # principal misbehaves, so none is suspended.
    statuses = []
    for i in range(150):
        headers = demo.auth(sub=f"clerk-{i}", dept="market-regulation", clearance=1)
        resp = await demo.get("/api/enterprise/companies", headers=headers, auth=False)
        statuses.append(resp.status)
    assert set(statuses) == {200}
