"""Incident records as pure functions: OCSF Detection Finding (2004) with ECS mirror fields."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Mapping
from typing import Any, Protocol

SEVERITIES = {1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}
WORKFLOW = ("new", "acknowledged", "resolved")
# workflow state -> (OCSF status_id, status)
STATUS = {"new": (1, "New"), "acknowledged": (2, "In Progress"), "resolved": (4, "Resolved")}
ACTIVITY = {"create": (1, "Create"), "update": (2, "Update"), "close": (3, "Close")}
OCSF_VERSION = "1.3.0"


class DetectionLike(Protocol):
    """What the incident builder reads from a detection (detectors.detection.Detection fits)."""

    rule: str
    severity: int
    principal: str | None
    dataset: str | None
    title: str


class WorkflowError(ValueError):
    """A workflow step that is not allowed from the incident's current state."""


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")


def dedup_key(rule: str, principal: str | None, dataset: str | None) -> str:
    return f"{rule}|{principal or '-'}|{dataset or '-'}"


def evidence_of(detection: DetectionLike) -> dict[str, Any]:
    """features, baseline, observed, score and sample_request_ids, whatever form they came in."""
    raw = getattr(detection, "evidence", None)
    if raw is not None and not isinstance(raw, Mapping) and hasattr(raw, "to_dict"):
        raw = raw.to_dict()
    data: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    score = getattr(detection, "score", data.get("score", 0.0))
    return {
        "features": dict(data.get("features", {})),
        "baseline": dict(data.get("baseline", {})),
        "observed": dict(data.get("observed", {})),
        "score": float(score or 0.0),
        "sample_request_ids": [str(r) for r in data.get("sample_request_ids", ())],
    }


def _anomaly_analyses(evidence: Mapping[str, Any]) -> list[dict[str, Any]]:
    observed, baseline = evidence["observed"], evidence["baseline"]
    return [
        {
            "analysis_targets": [{"name": name, "type": "feature"}],
            "anomalies": [
                {"observation_parameter": name, "observations": [{"value": str(observed[name])}]}
            ],
            "baselines": [
                {
                    "observation_parameter": name,
                    "observations": [{"value": str(baseline.get(name, ""))}],
                }
            ],
        }
        for name in sorted(observed)
    ]


def build(
    detection: DetectionLike,
    *,
    incident_id: str,
    now: float,
    client_ip: str | None = None,
    path: str | None = None,
    request_id: str | None = None,
    department: str | None = None,
    level: int | None = None,
    sla_seconds: float = 7200.0,
    max_samples: int = 20,
) -> dict[str, Any]:
    """A new incident for `detection`, status new, deadline `now + sla_seconds`."""
    severity = min(max(int(detection.severity), 1), 5)
    evidence = evidence_of(detection)
    if request_id and request_id not in evidence["sample_request_ids"]:
        evidence["sample_request_ids"].append(request_id)
    evidence["sample_request_ids"] = evidence["sample_request_ids"][-max_samples:]
    department = department or getattr(detection, "department", None)
    principal, dataset = detection.principal, detection.dataset
    ms = int(now * 1000)
    at = iso(now)
    user: dict[str, Any] = {"uid": principal, "name": principal}
    if department:
        user["groups"] = [{"name": department}]
    resource: dict[str, Any] = {"uid": dataset, "type": "dataset"}
    if level is not None:
        resource["labels"] = [f"level:{level}"]
    incident: dict[str, Any] = {
        # OCSF Detection Finding
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "category_uid": 2,
        "category_name": "Findings",
        "metadata": {
            "version": OCSF_VERSION,
            "product": {"name": "DataGate", "vendor_name": "DataGate"},
            "uid": incident_id,
        },
        "time": ms,
        "finding_info": {
            "uid": incident_id,
            "title": detection.title,
            "types": [detection.rule],
            "analytic": {"name": detection.rule, "type_id": 1, "type": "Rule"},
            "first_seen_time": ms,
            "last_seen_time": ms,
        },
        "severity_id": severity,
        "severity": SEVERITIES[severity],
        "is_alert": True,
        "risk_score": round(min(max(evidence["score"], 0.0), 1.0) * 100),
        "actor": {"user": user},
        "src_endpoint": {"ip": client_ip},
        "resources": [resource] if dataset else [],
        "anomaly_analyses": _anomaly_analyses(evidence),
        "remediation": {"desc": _remediation(detection.rule)},
        "message": detection.title,
        # DataGate
        "dedup_key": dedup_key(detection.rule, principal, dataset),
        "count": 1,
        "evidence": evidence,
        "action": None,
        "workflow": {
            "state": "new",
            "history": [{"state": "new", "by": "automation", "at": at, "note": ""}],
        },
        "sla": {
            "due_at": iso(now + sla_seconds),
            "due_ts": now + sla_seconds,
            "acknowledged_at": None,
            "resolved_at": None,
            "escalated_at": None,
        },
        # ECS mirror
        "@timestamp": at,
        "event": {
            "kind": "alert",
            "category": ["intrusion_detection"],
            "type": ["info"],
            "id": incident_id,
            "severity": severity,
            "start": at,
            "end": at,
        },
        "user": {"id": principal, **({"group": {"name": department}} if department else {})},
        "source": {"ip": client_ip},
        "url": {"path": path},
        "rule": {"name": detection.rule},
    }
    _set_activity(incident, "create", now, at)
    return incident


def repeat(
    incident: Mapping[str, Any],
    detection: DetectionLike,
    now: float,
    request_id: str | None = None,
    max_samples: int = 20,
) -> dict[str, Any]:
    """The same incident seen again: count, last seen, highest severity, fresh evidence."""
    out = copy.deepcopy(dict(incident))
    out["count"] += 1
    out["finding_info"]["last_seen_time"] = int(now * 1000)
    out["event"]["end"] = iso(now)
    severity = max(out["severity_id"], min(max(int(detection.severity), 1), 5))
    out["severity_id"] = out["event"]["severity"] = severity
    out["severity"] = SEVERITIES[severity]
    evidence = evidence_of(detection)
    samples = out["evidence"]["sample_request_ids"]
    for rid in [*evidence["sample_request_ids"], *([request_id] if request_id else [])]:
        if rid not in samples:
            samples.append(rid)
    evidence["sample_request_ids"] = samples[-max_samples:]
    out["evidence"] = evidence
    out["risk_score"] = max(out["risk_score"], round(min(max(evidence["score"], 0.0), 1.0) * 100))
    out["anomaly_analyses"] = _anomaly_analyses(evidence)
    _set_activity(out, "update", now)
    return out


def with_action(
    incident: Mapping[str, Any], scope: str, key: str, state: str, until: float | None, now: float
) -> dict[str, Any]:
    """Record the breaker action taken for this incident."""
    out = copy.deepcopy(dict(incident))
    out["action"] = {
        "breaker": {
            "scope": scope,
            "key": key,
            "state": state,
            "until": iso(until) if until is not None else None,
        },
    }
    out["remediation"]["desc"] = f"Sharing suspended for {scope} {key} ({state}). " + _remediation(
        out["rule"]["name"]
    )
    _set_activity(out, "update", now)
    return out


def acknowledge(incident: Mapping[str, Any], by: str, note: str, now: float) -> dict[str, Any]:
    return _step(incident, "acknowledged", by, note, now)


def resolve(incident: Mapping[str, Any], by: str, note: str, now: float) -> dict[str, Any]:
    if not note.strip():
        raise WorkflowError("note: resolving an incident requires a note")
    return _step(incident, "resolved", by, note, now)


def overdue(incident: Mapping[str, Any], now: float) -> bool:
    """Past its deadline, still new (nobody has acknowledged it), not yet escalated."""
    return (
        incident["workflow"]["state"] == "new"
        and incident["sla"]["escalated_at"] is None
        and now >= incident["sla"]["due_ts"]
    )


def escalate(incident: Mapping[str, Any], now: float) -> dict[str, Any]:
    out = copy.deepcopy(dict(incident))
    out["sla"]["escalated_at"] = iso(now)
    out["escalation"] = {
        "reason": "handling deadline passed without acknowledgement",
        "due_at": out["sla"]["due_at"],
        "at": iso(now),
    }
    _set_activity(out, "update", now)
    return out


def worth_emitting(count: int) -> bool:
    """Repeats go to the sinks at counts 2, 4, 8, 16 ...: growth is visible, floods are not."""
    return count & (count - 1) == 0


def _step(
    incident: Mapping[str, Any], state: str, by: str, note: str, now: float
) -> dict[str, Any]:
    current = incident["workflow"]["state"]
    if WORKFLOW.index(state) <= WORKFLOW.index(current):
        raise WorkflowError(f"incident is already {current}")
    out = copy.deepcopy(dict(incident))
    out["workflow"]["state"] = state
    out["workflow"]["history"].append({"state": state, "by": by, "at": iso(now), "note": note})
    out["sla"][f"{state}_at"] = iso(now)
    if state == "resolved" and out["sla"]["acknowledged_at"] is None:
        out["sla"]["acknowledged_at"] = iso(now)
    _set_activity(out, "close" if state == "resolved" else "update", now)
    return out


def _set_activity(
    incident: dict[str, Any], activity: str, now: float, at: str | None = None
) -> None:
    activity_id, name = ACTIVITY[activity]
    incident["activity_id"], incident["activity_name"] = activity_id, name
    incident["type_uid"] = 2004 * 100 + activity_id
    incident["time"] = int(now * 1000)
    incident["@timestamp"] = at or iso(now)
    status_id, status = STATUS[incident["workflow"]["state"]]
    incident["status_id"], incident["status"] = status_id, status


_REMEDIATION = {
    "high_frequency": "Check whether the caller's request rate is legitimate (batch job, leak).",
    "enumeration": "Sequential record access: check for scraping of identifiers.",
    "bulk_export": "Confirm the export was approved; revoke the grant or token if not.",
    "off_hours": "Confirm the access outside working hours with the data owner.",
    "auth_failures": "Many failed authentications: check for credential stuffing.",
    "token_spread": "One token from many addresses: the token may be stolen; revoke it.",
}


def _remediation(rule: str) -> str:
    return _REMEDIATION.get(
        rule, "Review the evidence with the data owner; reset the breaker once cleared."
    )
