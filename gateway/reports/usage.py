"""Usage and utilisation per dataset, consumer department and day, from access events: read
back from the audit log (reproducible) or counted live as the record stage emits them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from gateway.policy.bundle import PolicyBundle

DAY = 86400


def audit_records(paths: Iterable[Path]) -> Iterator[dict[str, Any]]:
    """Every record of the audit files, in file order; a streamed response's `access_end`
    is folded into its `access` record (the figures are only known at its end)."""
    for path in paths:
        pending: dict[str, dict[str, Any]] = {}
        held: list[dict[str, Any]] = []
        with open(path, "rb") as fh:
            for raw in fh:
                if not raw.strip():
                    continue
                record = orjson.loads(raw)
                kind = record.get("type")
                if kind == "access":
                    pending[record["request_id"]] = record
                elif kind == "access_end":
                    begun = pending.get(record.get("request_id", ""))
                    if begun is not None:
                        for key in ("status", "error", "reason", "bytes_out", "records_out"):
                            begun[key] = record.get(key, begun.get(key))
                        begun["masked_fields"] = record.get("masked_fields") or {}
                        if record.get("error"):
                            begun["decision"] = "deny"
                    continue
                held.append(record)
        yield from held


def parse_day(text: str, name: str) -> float:
    """`2026-12-01` (midnight UTC) or an ISO 8601 time with offset, as epoch seconds."""
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{name}: expected a date (2026-12-01) or ISO 8601 time, got {text!r}"
        ) from None
    if parsed.tzinfo is None:
        if len(text) > 10:
            raise ValueError(f"{name}: a time needs a UTC offset (e.g. +08:00 or Z): {text!r}")
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def event_time(event: dict[str, Any]) -> float | None:
    try:
        return dt.datetime.fromisoformat(event["ts"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return None


def day_of(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).date().isoformat()


class _Cell:
    """The figures of one dataset x consumer department x day."""

    __slots__ = ("bytes", "calls", "consumers", "masked", "records", "refusals", "served")

    def __init__(self) -> None:
        self.calls = 0
        self.served = 0
        self.records = 0
        self.bytes = 0
        self.masked = 0
        self.refusals: dict[str, int] = {}
        self.consumers: set[str] = set()


class Usage:
    """The aggregate: `add` one access event at a time (O(1); the record stage's sink), then
    `report` for a period. Days are UTC. Calls without a dataset (404s) are not counted;
    a call is served when it was allowed and answered below 400; every other call is a
    refusal, counted by its reason (or its error code when it has none)."""

    def __init__(self, keep_days: int | None = None) -> None:
        self._cells: dict[tuple[str, str, str], _Cell] = {}
        self._keep_days = keep_days
        self._newest = ""

    def add(self, event: dict[str, Any], ts: float | None = None) -> None:
        dataset = event.get("dataset")
        if dataset is None or event.get("type", "access") != "access":
            return
        when = ts if ts is not None else event_time(event)
        if when is None:
            return
        day = day_of(when)
        key = (day, dataset, event.get("department") or "-")
        cell = self._cells.get(key)
        if cell is None:
            cell = self._cells[key] = _Cell()
            if self._keep_days is not None and day > self._newest:
                self._newest = day
                self._forget_before(when - self._keep_days * DAY)
        cell.calls += 1
        status = event.get("status") or 0
        if event.get("decision") == "allow" and not event.get("error") and status < 400:
            cell.served += 1
            cell.records += event.get("records_out") or 0
            cell.bytes += event.get("bytes_out") or 0
            cell.masked += sum((event.get("masked_fields") or {}).values())
        else:
            reason = event.get("reason") or event.get("error") or f"status_{status}"
            cell.refusals[reason] = cell.refusals.get(reason, 0) + 1
        principal = event.get("principal")
        if principal:
            cell.consumers.add(principal)

    def _forget_before(self, ts: float) -> None:
        oldest = day_of(ts)
        for key in [k for k in self._cells if k[0] < oldest]:
            del self._cells[key]

    def report(
        self, start: float, end: float, bundle: PolicyBundle, granted: dict[str, set[str]]
    ) -> dict[str, Any]:
        """Rows for the days in [start, end) and, per catalogued dataset, its utilisation:
        the share of its catalogued consumers (see `catalogued_consumers`) that were served
        at least once in the period. `granted` adds departments that held a grant on it."""
        first, last = day_of(start), day_of(end - 1e-6)
        rows = []
        called: dict[str, set[str]] = {}
        calls: dict[str, int] = {}
        for (day, dataset, department), cell in sorted(self._cells.items()):
            if not first <= day <= last:
                continue
            rows.append(
                {
                    "day": day,
                    "dataset": dataset,
                    "department": department,
                    "calls": cell.calls,
                    "served": cell.served,
                    "records": cell.records,
                    "bytes": cell.bytes,
                    "masked_fields": cell.masked,
                    "refused": cell.calls - cell.served,
                    "refusals": dict(sorted(cell.refusals.items())),
                    "consumers": len(cell.consumers),
                }
            )
            calls[dataset] = calls.get(dataset, 0) + cell.calls
            if cell.served:
                called.setdefault(dataset, set()).add(department)
        datasets = []
        for dataset in bundle.catalog.datasets.values():
            catalogued = catalogued_consumers(bundle, dataset.id) | granted.get(dataset.id, set())
            served = called.get(dataset.id, set())
            # A consumer the policy lets in by role or name is a consumer too.
            consumers = catalogued | served
            datasets.append(
                {
                    "dataset": dataset.id,
                    "owner": dataset.owner,
                    "sharing": dataset.sharing,
                    "calls": calls.get(dataset.id, 0),
                    "catalogued_consumers": sorted(consumers),
                    "consumers_served": sorted(served),
                    "utilisation": round(len(served) / len(consumers), 4) if consumers else 0.0,
                }
            )
        return {
            "from": dt.datetime.fromtimestamp(start, dt.UTC).isoformat(),
            "to": dt.datetime.fromtimestamp(end, dt.UTC).isoformat(),
            "rows": rows,
            "datasets": datasets,
            "never_called": [d["dataset"] for d in datasets if d["calls"] == 0],
        }


def catalogued_consumers(bundle: PolicyBundle, dataset_id: str) -> set[str]:
    """The departments that may consume a dataset by the catalog and the policy rows: its
    owner; for unconditional sharing every department the catalog lists; the departments
    of allow rows naming it (or `*`), all listed departments for a `*` subject. Sharing
    none: the owner only."""
    dataset = bundle.catalog.datasets[dataset_id]
    found = {dataset.owner}
    if dataset.sharing == "none":
        return found
    listed = set(bundle.catalog.departments)
    if dataset.sharing == "unconditional":
        found |= listed
    for row in bundle.rows:
        if row.eft != "allow" or row.dataset not in (dataset_id, "*"):
            continue
        if row.sub == "*":
            found |= listed
        elif row.sub.startswith("dept:"):
            found.add(row.sub[len("dept:") :])
    return found


def grants_in(records: list[dict[str, Any]], start: float, end: float) -> dict[str, set[str]]:
    """Departments holding a grant on each dataset during [start, end), from the audit
    log's grant records: a department grant's department, or for a principal's grant made by
    an approved access request, the department the request came from. (A principal grant
    added by hand names no department; its holder counts once it is served.)"""
    asked = {
        r["request"]["grant_id"]: r["request"].get("department")
        for r in records
        if r.get("type") == "access_request" and (r.get("request") or {}).get("grant_id")
    }
    held: dict[str, set[str]] = {}
    for record in records:
        if record.get("type") != "grant" or record.get("action") != "add":
            continue
        grant = record.get("grant") or {}
        try:
            begins = dt.datetime.fromisoformat(grant["not_before"]).timestamp()
            ends = dt.datetime.fromisoformat(grant["expires_at"]).timestamp()
        except (KeyError, TypeError, ValueError):
            continue
        department = grant.get("department") or asked.get(grant.get("id"))
        if department and begins < end and ends > start:
            held.setdefault(grant["dataset"], set()).add(department)
    return held
