"""Incident handling per period: by severity, time to acknowledge and to resolve, the share
handled within the deadline, escalations; from incident records (the file sink or the store)."""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from gateway.incidents import model
from gateway.reports.usage import day_of


def _ts(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def incident_id(incident: dict[str, Any]) -> str | None:
    return (incident.get("finding_info") or {}).get("uid")


def created_at(incident: dict[str, Any]) -> float | None:
    """When the incident was raised: its first workflow step (else first seen, in ms)."""
    history = incident["unmapped"]["workflow"].get("history") or []
    if history and _ts(history[0].get("at")) is not None:
        return _ts(history[0]["at"])
    first = (incident.get("finding_info") or {}).get("first_seen_time")
    return first / 1000 if isinstance(first, int | float) else None


def latest(lines: Iterable[bytes]) -> list[dict[str, Any]]:
    """The last state of each incident from JSON lines where every change is a new line."""
    found: dict[str, dict[str, Any]] = {}
    for raw in lines:
        if not raw.strip():
            continue
        # Lines written before incidents were OCSF 1.5.0 read in today's shape.
        incident = model.upgrade(orjson.loads(raw))
        uid = incident_id(incident)
        if uid is not None:
            found[uid] = incident
    return list(found.values())


def read_files(paths: Iterable[Path]) -> Iterator[bytes]:
    for path in paths:
        with open(path, "rb") as fh:
            yield from fh


def _quantiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "p90": None}
    ordered = sorted(values)
    # Nearest rank: the smallest value at or above the share (no interpolation).
    rank = max(0, -(-len(ordered) * 9 // 10) - 1)
    return {"median": round(statistics.median(ordered), 3), "p90": round(ordered[rank], 3)}


def incident_report(
    incidents: Iterable[dict[str, Any]], start: float, end: float, now: float
) -> dict[str, Any]:
    """Incidents raised in [start, end), per UTC day and in total. Handled within the
    deadline: acknowledged (or resolved) by `sla.due_at`; one still unhandled past it counts
    as missed, one still open before it as not yet decided (left out of the share)."""
    days: dict[str, list[dict[str, Any]]] = {}
    for incident in incidents:
        raised = created_at(incident)
        if raised is None or not start <= raised < end:
            continue
        days.setdefault(day_of(raised), []).append(incident)
    everything = [i for day in days.values() for i in day]
    return {
        "from": dt.datetime.fromtimestamp(start, dt.UTC).isoformat(),
        "to": dt.datetime.fromtimestamp(end, dt.UTC).isoformat(),
        "periods": [{"day": day, **_figures(days[day], now)} for day in sorted(days)],
        "total": _figures(everything, now),
    }


def _figures(incidents: list[dict[str, Any]], now: float) -> dict[str, Any]:
    severity: dict[str, int] = {}
    to_ack: list[float] = []
    to_resolve: list[float] = []
    within = missed = escalations = 0
    for incident in incidents:
        name = str(incident.get("severity") or incident.get("severity_id"))
        severity[name] = severity.get(name, 0) + 1
        sla = model.sla_of(incident)
        raised = created_at(incident) or 0.0
        acked, resolved = _ts(sla.get("acknowledged_at")), _ts(sla.get("resolved_at"))
        due = _ts(sla.get("due_at"))
        if acked is not None:
            to_ack.append((acked - raised) / 60)
        if resolved is not None:
            to_resolve.append((resolved - raised) / 60)
        if sla.get("escalated_at") or incident["unmapped"].get("escalation"):
            escalations += 1
        handled = acked if acked is not None else resolved
        if due is None:
            continue
        if handled is not None and handled <= due:
            within += 1
        elif handled is not None or now >= due:
            missed += 1
    decided = within + missed
    return {
        "incidents": len(incidents),
        "by_severity": dict(sorted(severity.items())),
        "minutes_to_acknowledge": _quantiles(to_ack),
        "minutes_to_resolve": _quantiles(to_resolve),
        "handled_within_deadline": within,
        "missed_deadline": missed,
        "share_within_deadline": round(within / decided, 4) if decided else None,
        "escalations": escalations,
        "resolved": len(to_resolve),
    }
