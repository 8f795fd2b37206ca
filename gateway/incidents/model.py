"""Incident records as pure functions: OCSF 1.5.0 Detection Finding (2004), ECS mirror inside."""

from __future__ import annotations

import copy
import datetime as dt
import ipaddress
from collections.abc import Mapping
from importlib import metadata
from typing import Any, Protocol

SEVERITIES = {1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}
WORKFLOW = ("new", "acknowledged", "resolved")
# workflow state -> (OCSF status_id, status)
STATUS = {"new": (1, "New"), "acknowledged": (2, "In Progress"), "resolved": (4, "Resolved")}
ACTIVITY = {"create": (1, "Create"), "update": (2, "Update"), "close": (3, "Close")}
# 1.5.0 is the first version with every attribute used here (is_alert came in 1.4,
# anomaly_analyses in 1.5). The profiles add the action taken (security_control: action,
# disposition) and the SOC's handling (incident: priority, assignee).
OCSF_VERSION = "1.5.0"
OCSF_PROFILES = ("security_control", "incident")
ECS_VERSION = "8.11.0"
# security_control: (action_id, action, disposition_id, disposition)
OBSERVED = (3, "Observed", 15, "Detected")
DENIED = (2, "Denied", 2, "Blocked")
# severity_id -> incident profile's priority_id, priority
PRIORITY = {1: (1, "Low"), 2: (1, "Low"), 3: (2, "Medium"), 4: (3, "High"), 5: (4, "Critical")}


def _product_version() -> str:
    try:
        return metadata.version("datagate")
    except metadata.PackageNotFoundError:
        return "unknown"


PRODUCT = {"name": "DataGate", "vendor_name": "DataGate", "version": _product_version()}


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


# ---- reading an incident (one place knows where each DataGate field lives) ------------------


def rule_of(incident: Mapping[str, Any]) -> str:
    return str(incident["finding_info"]["analytic"]["name"])


def principal_of(incident: Mapping[str, Any]) -> str | None:
    user = incident["unmapped"]["ecs"]["user"]
    return user.get("id")


def state_of(incident: Mapping[str, Any]) -> str:
    """new, acknowledged or resolved."""
    return str(incident["unmapped"]["workflow"]["state"])


def evidence_of_incident(incident: Mapping[str, Any]) -> dict[str, Any]:
    """features, baseline, observed, score, sample_request_ids."""
    return incident["evidences"][0]["data"]  # type: ignore[no-any-return]


def breaker_of(incident: Mapping[str, Any]) -> dict[str, Any] | None:
    """The breaker action taken (scope, key, state, until), or None."""
    return incident["unmapped"]["breaker"]  # type: ignore[no-any-return]


def sla_of(incident: Mapping[str, Any]) -> dict[str, Any]:
    return incident["unmapped"]["sla"]  # type: ignore[no-any-return]


# ---- building -----------------------------------------------------------------------------


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


def _ip(value: str | None) -> str | None:
    """`value` if it is an IP address (OCSF ip_t and ECS ip both refuse anything else)."""
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def _set_action(incident: dict[str, Any], action: tuple[int, str, int, str]) -> None:
    (
        incident["action_id"],
        incident["action"],
        incident["disposition_id"],
        incident["disposition"],
    ) = action


def _set_severity(incident: dict[str, Any], severity: int) -> None:
    incident["severity_id"], incident["severity"] = severity, SEVERITIES[severity]
    incident["priority_id"], incident["priority"] = PRIORITY[severity]
    incident["unmapped"]["ecs"]["event"]["severity"] = severity


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
    ip = _ip(client_ip)
    ms = int(now * 1000)
    at = iso(now)
    resource: dict[str, Any] = {"uid": dataset, "type": "dataset"}
    if level is not None:
        resource["labels"] = [f"level:{level}"]
    # What was seen: who, from where, which request, and the detector's own evidence.
    seen: dict[str, Any] = {"name": detection.rule, "data": evidence}
    if principal:
        user: dict[str, Any] = {"uid": principal, "name": principal}
        if department:
            user["groups"] = [{"name": department}]
        seen["actor"] = {"user": user}
    if ip:
        seen["src_endpoint"] = {"ip": ip}
    if path:
        seen["url"] = {"path": path}
    if request_id:
        seen["http_request"] = {"uid": request_id}
    if dataset:
        seen["resources"] = [resource]
    incident: dict[str, Any] = {
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "category_uid": 2,
        "category_name": "Findings",
        "metadata": {
            "version": OCSF_VERSION,
            "profiles": list(OCSF_PROFILES),
            "product": dict(PRODUCT),
            "uid": incident_id,
        },
        "time": ms,
        "finding_info": {
            "uid": incident_id,
            "title": detection.title,
            "types": [detection.rule],
            "analytic": {
                "name": detection.rule,
                "uid": detection.rule,
                "type_id": 1,
                "type": "Rule",
            },
            "created_time": ms,
            "first_seen_time": ms,
            "last_seen_time": ms,
        },
        "is_alert": True,
        "risk_score": round(min(max(evidence["score"], 0.0), 1.0) * 100),
        "count": 1,
        "resources": [resource] if dataset else [],
        "evidences": [seen],
        "anomaly_analyses": _anomaly_analyses(evidence),
        "remediation": {"desc": _remediation(detection.rule)},
        "message": detection.title,
        # What OCSF has no attribute for.
        "unmapped": {
            "dedup_key": dedup_key(detection.rule, principal, dataset),
            "breaker": None,
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
            # The same incident in ECS terms, for an Elastic index (docs/siem.md lifts it to
            # the top level in an ingest pipeline; at the top it would not be valid OCSF).
            "ecs": {
                "@timestamp": at,
                "ecs": {"version": ECS_VERSION},
                "message": detection.title,
                "event": {
                    "kind": "alert",
                    "category": ["intrusion_detection"],
                    "type": ["info"],
                    "id": incident_id,
                    "severity": severity,
                    "risk_score": 0.0,
                    "start": at,
                    "end": at,
                },
                "user": {
                    "id": principal,
                    **({"group": {"name": department}} if department else {}),
                },
                "source": {"ip": ip},
                "url": {"path": path},
                "rule": {"name": detection.rule},
            },
        },
    }
    incident["unmapped"]["ecs"]["event"]["risk_score"] = float(incident["risk_score"])
    _set_severity(incident, severity)
    _set_action(incident, DENIED if getattr(detection, "denied", False) else OBSERVED)
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
    ecs = out["unmapped"]["ecs"]
    ecs["event"]["end"] = iso(now)
    _set_severity(out, max(out["severity_id"], min(max(int(detection.severity), 1), 5)))
    evidence = evidence_of(detection)
    seen = out["evidences"][0]
    samples = seen["data"]["sample_request_ids"]
    for rid in [*evidence["sample_request_ids"], *([request_id] if request_id else [])]:
        if rid not in samples:
            samples.append(rid)
    evidence["sample_request_ids"] = samples[-max_samples:]
    seen["data"] = evidence
    if request_id:
        seen["http_request"] = {"uid": request_id}
    out["risk_score"] = max(out["risk_score"], round(min(max(evidence["score"], 0.0), 1.0) * 100))
    ecs["event"]["risk_score"] = float(out["risk_score"])
    out["anomaly_analyses"] = _anomaly_analyses(evidence)
    _set_activity(out, "update", now)
    return out


def with_action(
    incident: Mapping[str, Any], scope: str, key: str, state: str, until: float | None, now: float
) -> dict[str, Any]:
    """Record the breaker action taken for this incident: sharing was suspended."""
    out = copy.deepcopy(dict(incident))
    out["unmapped"]["breaker"] = {
        "scope": scope,
        "key": key,
        "state": state,
        "until": iso(until) if until is not None else None,
    }
    _set_action(out, DENIED)
    out["unmapped"]["ecs"]["event"]["type"] = ["denied"]
    out["remediation"]["desc"] = f"Sharing suspended for {scope} {key} ({state}). " + _remediation(
        rule_of(out)
    )
    _set_activity(out, "update", now)
    return out


def acknowledge(incident: Mapping[str, Any], by: str, note: str, now: float) -> dict[str, Any]:
    out = _step(incident, "acknowledged", by, note, now)
    out["assignee"] = {"name": by}
    return out


def resolve(incident: Mapping[str, Any], by: str, note: str, now: float) -> dict[str, Any]:
    if not note.strip():
        raise WorkflowError("note: resolving an incident requires a note")
    out = _step(incident, "resolved", by, note, now)
    out.setdefault("assignee", {"name": by})
    out["comment"] = note
    return out


def overdue(incident: Mapping[str, Any], now: float) -> bool:
    """Past its deadline, still new (nobody has acknowledged it), not yet escalated."""
    sla = sla_of(incident)
    return state_of(incident) == "new" and sla["escalated_at"] is None and now >= sla["due_ts"]


def escalate(incident: Mapping[str, Any], now: float) -> dict[str, Any]:
    out = copy.deepcopy(dict(incident))
    sla = out["unmapped"]["sla"]
    sla["escalated_at"] = iso(now)
    out["unmapped"]["escalation"] = {
        "reason": "handling deadline passed without acknowledgement",
        "due_at": sla["due_at"],
        "at": iso(now),
    }
    _set_activity(out, "update", now)
    return out


def upgrade(incident: dict[str, Any]) -> dict[str, Any]:
    """An incident stored by a DataGate before OCSF 1.5.0 records (DataGate's fields and the
    ECS mirror at the top level, `evidence`, `action`) in today's shape; others as they are.
    Read from the store, so incidents raised before an upgrade keep working."""
    if "unmapped" in incident:
        return incident
    old = copy.deepcopy(incident)
    evidence = old.pop("evidence")
    rule = old.pop("rule")["name"]
    seen: dict[str, Any] = {"name": rule, "data": evidence}
    actor = old.pop("actor", None) or {}
    if (actor.get("user") or {}).get("uid"):
        seen["actor"] = actor
    old.pop("source", None)  # the ECS mirror of src_endpoint, rebuilt below
    ip = _ip((old.pop("src_endpoint", None) or {}).get("ip"))
    if ip:
        seen["src_endpoint"] = {"ip": ip}
    url = old.pop("url", None) or {"path": None}
    if url.get("path"):
        seen["url"] = {"path": url["path"]}
    if evidence.get("sample_request_ids"):
        seen["http_request"] = {"uid": evidence["sample_request_ids"][-1]}
    if old.get("resources"):
        seen["resources"] = old["resources"]
    breaker = (old.pop("action", None) or {}).get("breaker")
    event = old.pop("event")
    event.setdefault("risk_score", float(old.get("risk_score", 0)))
    unmapped: dict[str, Any] = {
        "dedup_key": old.pop("dedup_key"),
        "breaker": breaker,
        "workflow": old.pop("workflow"),
        "sla": old.pop("sla"),
        "ecs": {
            "@timestamp": old.pop("@timestamp"),
            "ecs": {"version": ECS_VERSION},
            "message": old.get("message"),
            "event": event,
            "user": old.pop("user"),
            "source": {"ip": ip},
            "url": url,
            "rule": {"name": rule},
        },
    }
    for key in ("escalation", "stored"):
        if key in old:
            unmapped[key] = old.pop(key)
    out = {**old, "evidences": [seen], "unmapped": unmapped}
    out["metadata"] = {**old["metadata"], "version": OCSF_VERSION, "profiles": list(OCSF_PROFILES)}
    out["metadata"]["product"] = {**PRODUCT, **old["metadata"].get("product", {})}
    out["finding_info"]["analytic"].setdefault("uid", rule)
    out.pop("anomaly_analyses", None)
    out["anomaly_analyses"] = _anomaly_analyses(evidence)
    _set_severity(out, out["severity_id"])
    _set_action(out, DENIED if breaker else OBSERVED)
    history = unmapped["workflow"]["history"]
    if unmapped["workflow"]["state"] != "new" and history:
        out["assignee"] = {"name": history[-1]["by"]}
    out["type_name"] = f"Detection Finding: {out['activity_name']}"
    out["finding_info"].setdefault("modified_time", out["time"])
    return out


def worth_emitting(count: int) -> bool:
    """Repeats go to the sinks at counts 2, 4, 8, 16 ...: growth is visible, floods are not."""
    return count & (count - 1) == 0


def _step(
    incident: Mapping[str, Any], state: str, by: str, note: str, now: float
) -> dict[str, Any]:
    current = state_of(incident)
    if WORKFLOW.index(state) <= WORKFLOW.index(current):
        raise WorkflowError(f"incident is already {current}")
    out = copy.deepcopy(dict(incident))
    workflow, sla = out["unmapped"]["workflow"], out["unmapped"]["sla"]
    workflow["state"] = state
    workflow["history"].append({"state": state, "by": by, "at": iso(now), "note": note})
    sla[f"{state}_at"] = iso(now)
    if state == "resolved" and sla["acknowledged_at"] is None:
        sla["acknowledged_at"] = iso(now)
    _set_activity(out, "close" if state == "resolved" else "update", now)
    return out


def _set_activity(
    incident: dict[str, Any], activity: str, now: float, at: str | None = None
) -> None:
    activity_id, name = ACTIVITY[activity]
    incident["activity_id"], incident["activity_name"] = activity_id, name
    incident["type_uid"] = 2004 * 100 + activity_id
    incident["type_name"] = f"Detection Finding: {name}"
    incident["time"] = int(now * 1000)
    incident["finding_info"]["modified_time"] = incident["time"]
    incident["unmapped"]["ecs"]["@timestamp"] = at or iso(now)
    status_id, status = STATUS[state_of(incident)]
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
