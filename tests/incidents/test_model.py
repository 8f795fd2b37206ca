"""Incident records: OCSF 2004 shape with ECS mirror, repeats, workflow, deadline."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from detectors.detection import Detection, Evidence
from gateway.incidents import model
from tests.incidents.conftest import Finding
from tests.incidents.ocsf import ocsf_errors

T0 = 1_700_000_000.0


def new(**kw: object) -> dict[str, object]:
    return model.build(
        Finding(),
        incident_id="inc-1",
        now=T0,
        client_ip="10.0.0.9",
        path="/citizens/7",
        request_id="r-3",
        level=3,
        **kw,  # type: ignore[arg-type]
    )


def test_build_is_an_ocsf_detection_finding_with_ecs_mirror() -> None:
    i = new()
    assert ocsf_errors(i) == []
    assert i["metadata"]["version"] == "1.5.0"
    assert i["metadata"]["profiles"] == ["security_control", "incident"]
    assert (i["class_uid"], i["category_uid"], i["type_uid"], i["activity_id"]) == (
        2004,
        2,
        200401,
        1,
    )
    info = i["finding_info"]
    assert info["uid"] == "inc-1" and info["types"] == ["bulk_export"]
    assert info["first_seen_time"] == info["last_seen_time"] == int(T0 * 1000)
    assert (i["severity_id"], i["severity"], i["status_id"], i["status"]) == (4, "High", 1, "New")
    assert (i["action_id"], i["action"], i["disposition"]) == (3, "Observed", "Detected")
    assert i["is_alert"] is True and i["risk_score"] == 92
    [seen] = i["evidences"]
    assert seen["actor"]["user"] == {"uid": "alice", "name": "alice", "groups": [{"name": "tax"}]}
    assert seen["src_endpoint"] == {"ip": "10.0.0.9"} and seen["url"] == {"path": "/citizens/7"}
    assert seen["http_request"] == {"uid": "r-3"}
    assert seen["data"]["sample_request_ids"] == ["r-1", "r-2", "r-3"]
    assert seen["data"]["baseline"] == {"records_per_min": 40.0} and seen["data"]["score"] == 0.92
    assert i["resources"] == [{"uid": "citizens", "type": "dataset", "labels": ["level:3"]}]
    [analysis] = i["anomaly_analyses"]
    assert analysis["anomalies"][0]["observations"] == [{"value": "5000.0"}]
    assert analysis["baselines"][0]["observations"] == [{"value": "40.0"}]
    assert i["remediation"]["desc"]
    dg = i["unmapped"]
    assert dg["dedup_key"] == "bulk_export|alice|citizens" and dg["breaker"] is None
    assert dg["sla"]["due_at"] == model.iso(T0 + 7200)
    ecs = dg["ecs"]
    assert ecs["ecs"]["version"] == model.ECS_VERSION and ecs["@timestamp"] == model.iso(T0)
    assert ecs["event"]["kind"] == "alert" and ecs["user"]["id"] == "alice"
    assert ecs["source"]["ip"] == "10.0.0.9" and ecs["url"]["path"] == "/citizens/7"
    assert ecs["rule"]["name"] == "bulk_export"
    assert (model.rule_of(i), model.principal_of(i), model.state_of(i)) == (
        "bulk_export",
        "alice",
        "new",
    )
    assert orjson.loads(orjson.dumps(i)) == i  # plain JSON


def test_every_step_of_an_incident_stays_valid_ocsf() -> None:
    i = new()
    steps = [
        model.with_action(i, "principal", "alice", "open", T0 + 60, T0 + 1),
        model.repeat(i, Finding(severity=5), T0 + 2, "r-9"),
        model.acknowledge(i, "soc-ann", "looking", T0 + 3),
        model.resolve(i, "soc-ann", "approved", T0 + 4),
        model.escalate(i, T0 + 7200),
    ]
    for step in steps:
        assert ocsf_errors(step) == [], step
    # A finding without principal, address or dataset (the gateway's own) is valid too.
    bare = model.build(
        Finding(principal=None, department=None, dataset=None), incident_id="inc-3", now=T0
    )
    assert ocsf_errors(bare) == [] and "actor" not in bare["evidences"][0]


def test_an_address_that_is_not_an_ip_is_left_out_rather_than_made_invalid() -> None:
    i = model.build(Finding(), incident_id="inc-4", now=T0, client_ip="unix:/run/x.sock")
    assert "src_endpoint" not in i["evidences"][0] and i["unmapped"]["ecs"]["source"]["ip"] is None
    assert ocsf_errors(i) == []


def test_the_validator_refuses_what_the_declared_version_lacks() -> None:
    """The check can fail: the same record declared as 1.3.0 has attributes 1.3.0 lacks."""
    i = new()
    i["metadata"]["version"] = "1.3.0"
    errors = ocsf_errors(i)
    assert any("anomaly_analyses" in e and "is_alert" in e for e in errors), errors
    i = new()
    i["dedup_key"] = "at the top level"
    assert any("dedup_key" in e for e in ocsf_errors(i))


def test_the_detectors_detection_builds_an_incident() -> None:
    d = Detection(
        rule="enumeration",
        severity=3,
        scope="principal",
        key="bob",
        principal="bob",
        department="health",
        dataset="medical",
        title="Sequential ids",
        score=0.7,
        ts=T0,
        evidence=Evidence(
            observed={"distinct_ids": 90.0},
            baseline={"distinct_ids": 4.0},
            features={"distinct_ids": 90.0},
            sample_request_ids=("q-1",),
        ),
    )
    i = model.build(d, incident_id="inc-2", now=T0)
    assert i["unmapped"]["ecs"]["user"] == {"id": "bob", "group": {"name": "health"}}
    assert i["evidences"][0]["data"]["baseline"] == {"distinct_ids": 4.0}
    assert i["risk_score"] == 70 and ocsf_errors(i) == []


def test_repeat_counts_and_moves_last_seen() -> None:
    i = model.repeat(new(), Finding(severity=5, score=0.5), T0 + 30, "r-9", max_samples=3)
    assert i["count"] == 2 and i["finding_info"]["last_seen_time"] == int((T0 + 30) * 1000)
    assert i["finding_info"]["first_seen_time"] == int(T0 * 1000)
    assert (i["severity_id"], i["severity"], i["risk_score"]) == (5, "Critical", 92)
    assert i["evidences"][0]["data"]["sample_request_ids"] == ["r-2", "r-3", "r-9"]
    assert (i["activity_id"], i["type_uid"]) == (2, 200402)


def test_workflow_records_who_when_and_note() -> None:
    i = model.acknowledge(new(), "soc-ann", "looking", T0 + 60)
    assert (i["status_id"], i["status"], i["unmapped"]["sla"]["acknowledged_at"]) == (
        2,
        "In Progress",
        model.iso(T0 + 60),
    )
    i = model.resolve(i, "soc-bob", "batch job, approved", T0 + 120)
    assert (i["status_id"], i["activity_id"]) == (4, 3)
    assert i["assignee"] == {"name": "soc-ann"} and i["comment"] == "batch job, approved"
    assert [(h["state"], h["by"], h["note"]) for h in i["unmapped"]["workflow"]["history"]] == [
        ("new", "automation", ""),
        ("acknowledged", "soc-ann", "looking"),
        ("resolved", "soc-bob", "batch job, approved"),
    ]
    with pytest.raises(model.WorkflowError, match="incident is already resolved"):
        model.acknowledge(i, "x", "", T0)


def test_resolve_requires_a_note_and_may_skip_ack() -> None:
    with pytest.raises(model.WorkflowError, match="note: resolving an incident requires a note"):
        model.resolve(new(), "soc", " ", T0)
    i = model.resolve(new(), "soc", "dup", T0 + 5)
    assert i["unmapped"]["sla"]["acknowledged_at"] == model.iso(T0 + 5)


def test_overdue_only_when_new_past_the_deadline_and_not_escalated() -> None:
    i = new()
    assert not model.overdue(i, T0 + 7199)
    assert model.overdue(i, T0 + 7200)
    e = model.escalate(i, T0 + 7200)
    assert e["unmapped"]["sla"]["escalated_at"] == model.iso(T0 + 7200) and not model.overdue(
        e, T0 + 9999
    )
    assert not model.overdue(model.acknowledge(i, "soc", "", T0 + 10), T0 + 9999)


def test_action_and_emission_rule() -> None:
    i = model.with_action(new(), "principal", "alice", "open", T0 + 60, T0)
    assert i["unmapped"]["breaker"] == {
        "scope": "principal",
        "key": "alice",
        "state": "open",
        "until": model.iso(T0 + 60),
    }
    assert (i["action_id"], i["action"], i["disposition_id"]) == (2, "Denied", 2)
    assert i["unmapped"]["ecs"]["event"]["type"] == ["denied"]
    assert [c for c in range(1, 20) if model.worth_emitting(c)] == [1, 2, 4, 8, 16]


LEGACY = Path(__file__).with_name("data") / "incident-before-ocsf-1.5.json"


def test_an_incident_stored_before_ocsf_1_5_is_upgraded_to_a_valid_one() -> None:
    old = orjson.loads(LEGACY.read_bytes())
    assert ocsf_errors(old), "the old shape is not valid OCSF"
    i = model.upgrade(old)
    assert ocsf_errors(i) == []
    assert i["unmapped"]["dedup_key"] == old["dedup_key"]
    assert i["unmapped"]["workflow"] == old["workflow"] and i["unmapped"]["sla"] == old["sla"]
    assert i["unmapped"]["breaker"] == old["action"]["breaker"]
    assert i["evidences"][0]["data"] == old["evidence"]
    assert i["evidences"][0]["actor"] == old["actor"]
    assert (model.rule_of(i), model.principal_of(i), model.state_of(i)) == (
        "bulk_export",
        "alice",
        "acknowledged",
    )
    assert (i["action"], i["assignee"]) == ("Denied", {"name": "soc-ann"})
    assert model.upgrade(i) is i, "today's shape is left as it is"
    resolved = model.resolve(i, "soc-ann", "done", T0 + 100)
    assert ocsf_errors(resolved) == []
