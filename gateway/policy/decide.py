"""The decision itself, pure: Casbin rows, catalog sharing rules, grants and clearance."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime, tzinfo

from gateway.identity.principal import Principal
from gateway.policy.bundle import PolicyBundle
from gateway.policy.catalog import Dataset
from gateway.policy.decision import Decision, Rule
from gateway.policy.enforcer import Env, Subject, subject_names
from gateway.policy.grants import Grant
from gateway.policy.sharing import (
    clearance_ok,
    implicit_basis,
    purpose_ok,
    raised_clearance,
    shared_with,
)


@dataclasses.dataclass(frozen=True, slots=True)
class Evaluation:
    """A decision and the span of time `[valid_from, valid_until)` it holds for unchanged."""

    decision: Decision
    valid_from: float
    valid_until: float


def evaluate(
    bundle: PolicyBundle,
    principal: Principal,
    purpose: str | None,
    dataset: Dataset,
    action: str,
    ts: float,
    grants: Sequence[Grant],
    tz: tzinfo,
    monitor: bool = False,
) -> Evaluation:
    """Decide one request. `grants` are the grants on `dataset` (any caller, any time)."""
    local = datetime.fromtimestamp(ts, tz)
    into_hour = local.minute * 60 + local.second + local.microsecond / 1e6
    # Time windows are whole local hours, so nothing a row reads changes within the hour;
    # a grant starting or ending is the only other moment the answer can change.
    valid_from, valid_until = ts - into_hour, ts - into_hour + 3600
    for g in grants:
        for t in (g.not_before, g.expires_at):
            if t <= ts:
                valid_from = max(valid_from, t)
            else:
                valid_until = min(valid_until, t)

    subject = Subject(
        subject_names(
            principal.subject, principal.department, principal.roles, principal.cert_subject
        ),
        principal.clearance,
        principal.department,
    )
    env = Env(purpose, local.hour, local.weekday())
    deny_rule, allow_rule = bundle.index.match(subject, dataset, action, env)

    def result(
        effect: str, reason: str, rule: Rule | None = None, grant: Grant | None = None
    ) -> Evaluation:
        clearance = principal.clearance
        if grant is not None and grant.clearance is not None:
            clearance = max(clearance, grant.clearance)
        held = monitor or dataset.monitor
        decision = Decision(
            allowed=effect == "allow" or held,
            effect=effect,  # type: ignore[arg-type]
            reason=reason,
            dataset=dataset.id,
            action=action,
            policy_version=bundle.version,
            mask_clearance=clearance,
            rule=rule,
            grant_id=grant.id if grant else None,
            monitor=held and effect == "deny",
        )
        return Evaluation(decision, valid_from, valid_until)

    if deny_rule is not None:
        return result("deny", "explicit_deny", deny_rule)
    department = principal.department
    if not shared_with(department, dataset):
        return result("deny", "sharing_none")
    # Every way a request may be allowed, in the order explained; the first whose clearance
    # suffices decides. This is the union plain Casbin computes from the `catalog` row
    # (gateway.policy.casbin_functions), so both decide alike.
    bases: list[tuple[str, Rule | None, Grant | None, int]] = []
    implicit = implicit_basis(department, dataset, action)
    if implicit is not None:
        bases.append((implicit, None, None, principal.clearance))
    if purpose_ok(dataset, purpose):
        if allow_rule is not None:
            bases.append(("policy_allow", allow_rule, None, principal.clearance))
        bases.extend(
            ("grant", None, g, raised_clearance(principal.clearance, g.clearance))
            for g in grants
            if g.active(ts) and g.covers(principal.subject, department, action, purpose)
        )
    for basis, rule, grant, clearance in bases:
        if clearance_ok(clearance, dataset, action):
            return result("allow", basis, rule, grant)
    if bases or not clearance_ok(principal.clearance, dataset, action):
        return result("deny", "clearance_below_level")
    return result("deny", "default_deny" if purpose_ok(dataset, purpose) else "no_purpose")
