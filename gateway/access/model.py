"""Access requests as plain data: validation of a new request and the state transitions."""

from __future__ import annotations

import dataclasses
import math
import re
import secrets
from typing import Any

from gateway.identity.principal import Principal
from gateway.policy.catalog import Catalog, Dataset
from gateway.policy.config import GrantLifetimes
from gateway.policy.grants import iso
from gateway.policy.rules import ACTIONS

STATES = ("pending", "approved", "rejected", "withdrawn", "lapsed", "expired")
# What each step may start from: a decided request never changes again, except that an
# approved one becomes `expired` when its grant ends.
STEPS = {
    "approve": ("pending", "approved"),
    "reject": ("pending", "rejected"),
    "withdraw": ("pending", "withdrawn"),
    "lapse": ("pending", "lapsed"),
    "expire": ("approved", "expired"),
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")
_FIELDS = frozenset({"dataset", "actions", "fields", "purpose", "duration", "justification"})
MAX_TEXT = 2000


class AccessError(Exception):
    """A refusal of the workflow: HTTP `status`, the public `code`, a machine `reason`."""

    def __init__(self, status: int, code: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.reason = reason
        self.message = message

    def body(self, request_id: str) -> dict[str, Any]:
        return {
            "error": self.code,
            "message": self.message,
            "reason": self.reason,
            "request_id": request_id,
        }


def bad(reason: str, message: str) -> AccessError:
    return AccessError(400, "bad_request", reason, message)


def refused(reason: str, message: str) -> AccessError:
    return AccessError(403, "forbidden", reason, message)


def conflict(reason: str, message: str) -> AccessError:
    return AccessError(409, "conflict", reason, message)


def _text(body: dict[str, Any], key: str, reason: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise bad(reason, f"{key}: is required")
    if len(value) > MAX_TEXT:
        raise bad(reason, f"{key}: at most {MAX_TEXT} characters")
    return value.strip()


def clearance_for(dataset: Dataset, fields: list[str]) -> int | None:
    """The clearance a grant needs to read `fields` in clear: the highest of their levels
    (None without fields: the grantee reads at its own clearance)."""
    levels = [f.level for f in dataset.fields if f.name in fields]
    return min(max(levels), dataset.level) if levels else None


def new_request(
    body: Any,
    requester: Principal,
    *,
    catalog: Catalog,
    lifetimes: GrantLifetimes,
    deadline: float,
    now: float,
) -> dict[str, Any]:
    """A pending request from a consumer's JSON body; AccessError names the first bad field."""
    if not isinstance(body, dict):
        raise bad("bad_body", "body: must be a JSON object")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise bad("unknown_field", f"{unknown[0]}: unknown field")
    dataset_id = body.get("dataset")
    if not isinstance(dataset_id, str) or not dataset_id:
        raise bad("unknown_dataset", "dataset: is required")
    dataset = catalog.datasets.get(dataset_id)
    if dataset is None:
        raise bad("unknown_dataset", f"dataset: unknown dataset {dataset_id!r}")
    if dataset.sharing == "none":
        raise refused(
            "sharing_none",
            f"dataset: {dataset.id!r} has sharing none: only its owner department may use it",
        )
    actions = body.get("actions")
    if (
        not isinstance(actions, list)
        or not actions
        or not all(isinstance(a, str) and a in ACTIONS for a in actions)
    ):
        raise bad("bad_actions", f"actions: expected a non-empty list of {', '.join(ACTIONS)}")
    fields = body.get("fields", [])
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        raise bad("unknown_catalog_field", "fields: expected a list of field names")
    known = {f.name for f in dataset.fields}
    for name in fields:
        if name not in known:
            raise bad(
                "unknown_catalog_field",
                f"fields: dataset {dataset.id!r} has no catalogued field {name!r}",
            )
    purpose = body.get("purpose")
    if not isinstance(purpose, str) or not _NAME.match(purpose):
        raise bad("bad_purpose", "purpose: expected a name (letters, digits, _ . @ -)")
    duration = body.get("duration")
    if (
        isinstance(duration, bool)
        or not isinstance(duration, int | float)
        or not math.isfinite(duration)
        or duration < 60
    ):
        raise bad("bad_duration", f"duration: expected seconds >= 60, got {duration!r}")
    cap = lifetimes.for_level(dataset.level)
    if duration > cap:
        raise bad(
            "over_cap",
            f"duration: a grant on level-{dataset.level} dataset {dataset.id!r} may last at "
            f"most {cap:g} s (asked {duration:g} s)",
        )
    justification = _text(body, "justification", "missing_justification")
    request_id = "ar-" + secrets.token_hex(8)
    return {
        "id": request_id,
        "state": "pending",
        "requester": requester.subject,
        "department": requester.department,
        "clearance": requester.clearance,
        "dataset": dataset.id,
        "owner": dataset.owner,
        "level": dataset.level,
        "actions": sorted(set(actions)),
        "fields": sorted(set(fields)),
        "grant_clearance": clearance_for(dataset, fields),
        "purpose": purpose,
        "duration": float(duration),
        "justification": justification,
        "created_at": iso(now),
        "created_ts": now,
        "decide_by": iso(now + deadline),
        "decide_by_ts": now + deadline,
        "decided_by": None,
        "decided_at": None,
        "note": None,
        "grant_id": None,
        "grant_expires_at": None,
        "grant_expires_ts": None,
        "history": [{"step": "request", "by": requester.subject, "at": iso(now), "note": ""}],
    }


def step(
    request: dict[str, Any], name: str, by: str, note: str, now: float, **changes: Any
) -> dict[str, Any]:
    """The request after step `name` (its start state checked by the caller)."""
    _, to = STEPS[name]
    out = {**request, **changes, "state": to}
    out["history"] = [*request["history"], {"step": name, "by": by, "at": iso(now), "note": note}]
    if name in ("approve", "reject", "withdraw"):
        out["decided_by"], out["decided_at"], out["note"] = by, iso(now), note
    return out


def lapsed(request: dict[str, Any], now: float) -> bool:
    return request["state"] == "pending" and now >= request["decide_by_ts"]


def grant_ended(request: dict[str, Any], now: float) -> bool:
    ends = request.get("grant_expires_ts")
    return request["state"] == "approved" and ends is not None and now >= ends


@dataclasses.dataclass(frozen=True, slots=True)
class Officer:
    """Who may decide requests: a principal with `role` deciding for its own department."""

    role: str

    def check(self, principal: Principal, request: dict[str, Any]) -> None:
        """Raise the refusal naming why `principal` may not decide `request`."""
        if principal.subject == request["requester"]:
            raise refused("self_approval", "a requester can never decide its own request")
        if self.role not in principal.roles:
            raise refused(
                "not_data_officer",
                f"deciding a request needs the role {self.role!r} in the owner department",
            )
        if principal.department != request["owner"]:
            raise refused(
                "wrong_department",
                f"dataset {request['dataset']!r} is owned by {request['owner']!r}: only its "
                f"data officers decide, not {principal.department!r}",
            )
