"""The consumers' catalog: what is shared and what the caller can read now, per action."""

from __future__ import annotations

from typing import Any, Protocol

from gateway.identity.principal import Principal
from gateway.masking.plan import MaskPlan, norm_name
from gateway.policy.catalog import LEVEL_NAMES, Catalog, Dataset
from gateway.policy.decision import Decision
from gateway.policy.rules import ACTIONS


class Decides(Protocol):
    def decide(
        self, principal: Principal, purpose: str | None, dataset: Dataset, action: str, ts: float
    ) -> Decision: ...


class Plans(Protocol):
    def get(self, dataset: Dataset, clearance: int) -> MaskPlan: ...


def field_access(dataset: Dataset, plan: MaskPlan) -> list[dict[str, Any]]:
    """Each catalogued field as the mask plan treats it: clear, masked (with its strategy)
    or removed."""
    out = []
    for spec in dataset.fields:
        rule = plan.by_column.get(norm_name(spec.column or spec.name))
        if rule is None:
            state, strategy = "clear", None
        elif rule.strategy == "remove":
            state, strategy = "removed", None
        else:
            state, strategy = "masked", rule.strategy
        out.append({"name": spec.name, "level": spec.level, "access": state, "strategy": strategy})
    return out


def dataset_view(
    dataset: Dataset,
    principal: Principal,
    purpose: str | None,
    decider: Decides,
    plans: Plans,
    now: float,
) -> dict[str, Any]:
    """One dataset: what the catalog file says, and for each action the gateway's own
    decision (refused, with the reason) or the mask plan it would apply: `masked` when a
    catalogued field is masked or removed, else `clear`; `identifier_scan` says that
    identifiers found outside the catalogued fields are masked too."""
    actions: dict[str, Any] = {}
    for action in ACTIONS:
        decision = decider.decide(principal, purpose, dataset, action, now)
        if not decision.allowed:
            actions[action] = {"access": "refused", "reason": decision.reason}
            continue
        plan = plans.get(dataset, decision.mask_clearance)
        fields = field_access(dataset, plan)
        hidden = any(f["access"] != "clear" for f in fields)
        actions[action] = {
            "access": "masked" if hidden else "clear",
            "reason": decision.reason,
            "grant_id": decision.grant_id,
            "clearance": decision.mask_clearance,
            "identifier_scan": plan.scan,
            "fields": fields,
        }
    return {
        "id": dataset.id,
        "title": dataset.title,
        "route": dataset.route,
        "owner": dataset.owner,
        "level": dataset.level,
        "level_name": LEVEL_NAMES[dataset.level],
        "sharing": dataset.sharing,
        "fields": [{"name": f.name, "level": f.level} for f in dataset.fields],
        "actions": actions,
    }


def catalog_view(
    catalog: Catalog,
    principal: Principal,
    purpose: str | None,
    decider: Decides,
    plans: Plans,
    now: float,
) -> dict[str, Any]:
    return {
        "catalog_version": catalog.version,
        "principal": principal.subject,
        "department": principal.department,
        "clearance": principal.clearance,
        "purpose": purpose,
        "datasets": [
            dataset_view(d, principal, purpose, decider, plans, now)
            for d in catalog.datasets.values()
        ],
    }
