"""`policy replay`: re-decide recorded access events under a candidate policy, list the changes."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import tzinfo
from typing import Any

from gateway.identity.principal import Principal
from gateway.policy.bundle import PolicyBundle
from gateway.policy.cases import resolve
from gateway.policy.decide import evaluate
from gateway.policy.grants import Grant, parse_time

# Refusals that happen before the authorise stage: such events carry no policy decision.
_BEFORE_AUTHORISE = frozenset({"bad_request", "unauthenticated", "not_found", "sharing_suspended"})


@dataclasses.dataclass(frozen=True, slots=True)
class Change:
    request_id: str
    ts: str
    principal: str
    dataset: str
    action: str
    old: str
    new: str
    reason: str
    rule: str | None

    @property
    def group(self) -> tuple[str, str, str, str, str, str | None]:
        return (self.old, self.new, self.dataset, self.action, self.reason, self.rule)


@dataclasses.dataclass(slots=True)
class ReplayReport:
    events: int = 0
    decided: int = 0
    skipped: int = 0
    unchanged: int = 0
    changes: list[Change] = dataclasses.field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.changes:
            key = f"{c.old}->{c.new}"
            out[key] = out.get(key, 0) + 1
        return out

    def groups(self) -> list[tuple[tuple[str, str, str, str, str, str | None], list[Change]]]:
        grouped: dict[tuple[str, str, str, str, str, str | None], list[Change]] = {}
        for c in self.changes:
            grouped.setdefault(c.group, []).append(c)
        return sorted(grouped.items(), key=lambda kv: -len(kv[1]))


def _recorded_effect(event: dict[str, Any]) -> str | None:
    """What the policy said when the event was recorded; None if authorise never ran."""
    error = event.get("error")
    if error in _BEFORE_AUTHORISE:
        return None
    if event.get("monitor_deny") or error == "forbidden":
        return "deny"
    return "allow"


def _request(event: dict[str, Any], bundle: PolicyBundle) -> tuple[Principal, Any, str] | None:
    sub, dept, clearance = event.get("principal"), event.get("department"), event.get("clearance")
    if not isinstance(sub, str) or not isinstance(dept, str) or not isinstance(clearance, int):
        return None
    roles = event.get("roles") or []
    cert_subject = event.get("cert_subject")
    principal = Principal(
        sub,
        dept,
        clearance,
        frozenset(str(r) for r in roles),
        cert_subject=cert_subject if isinstance(cert_subject, str) else None,
    )
    try:
        dataset, action = resolve(
            bundle.catalog, str(event.get("method", "GET")), str(event["path"])
        )
    except (KeyError, ValueError):
        dataset = bundle.catalog.datasets.get(str(event.get("dataset")))
        action = str(event.get("action") or "read")
        if dataset is None:
            return None
    return principal, dataset, action


def replay(bundle: PolicyBundle, events: Iterable[dict[str, Any]], tz: tzinfo) -> ReplayReport:
    """Re-decide each event under `bundle`. A grant that allowed a recorded request is assumed
    still in force, so the changes shown are those the policy files make."""
    report = ReplayReport()
    for event in events:
        report.events += 1
        old = _recorded_effect(event)
        resolved = _request(event, bundle)
        try:
            ts = parse_time(event.get("ts"), "ts")
        except ValueError:
            resolved = None
        if old is None or resolved is None:
            report.skipped += 1
            continue
        principal, dataset, action = resolved
        purpose = event.get("purpose")
        grants = []
        if event.get("grant_id"):
            grants.append(
                Grant(
                    id=str(event["grant_id"]),
                    dataset=dataset.id,
                    actions=frozenset({action}),
                    purpose=purpose or "",
                    not_before=ts,
                    expires_at=ts + 1,
                    reason="recorded",
                    granted_by="replay",
                    created_at=ts,
                    principal=principal.subject,
                )
            )
        decision = evaluate(bundle, principal, purpose, dataset, action, ts, grants, tz).decision
        report.decided += 1
        if decision.effect == old:
            report.unchanged += 1
            continue
        report.changes.append(
            Change(
                request_id=str(event.get("request_id", "")),
                ts=str(event.get("ts")),
                principal=principal.subject,
                dataset=dataset.id,
                action=action,
                old=old,
                new=decision.effect,
                reason=decision.reason,
                rule=decision.rule.where if decision.rule else None,
            )
        )
    return report
