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

# Without a policy row or grant, owners may read and list their own datasets and anyone
# may read and list an unconditional one; export and write always need their own row/grant.
IMPLICIT_ACTIONS = frozenset({"read", "list"})


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
    )
    env = Env(purpose, local.hour, local.weekday())
    deny_rule, allow_rule = bundle.index.match(subject, dataset.id, action, env)

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
    owner = principal.department == dataset.owner
    if dataset.sharing == "none" and not owner:
        return result("deny", "sharing_none")

    implicit = action in IMPLICIT_ACTIONS
    grant: Grant | None = None
    basis: str | None = None
    missing = "default_deny"
    if implicit and owner:
        basis = "owner"
    elif implicit and dataset.sharing == "unconditional":
        basis = "unconditional"
    elif dataset.sharing == "conditional" and not purpose:
        missing = "no_purpose"
    elif allow_rule is not None:
        basis = "policy_allow"
    elif dataset.sharing != "none":
        grant = next(
            (
                g
                for g in grants
                if g.active(ts)
                and g.covers(principal.subject, principal.department, action, purpose)
            ),
            None,
        )
        basis = "grant" if grant else None

    clearance = principal.clearance
    if grant is not None and grant.clearance is not None:
        clearance = max(clearance, grant.clearance)
    if clearance < dataset.level:
        floor = dataset.masked_from_clearance
        if action == "write" or floor is None or clearance < floor:
            return result("deny", "clearance_below_level")
    if basis is None:
        return result("deny", missing)
    return result("allow", basis, allow_rule if basis == "policy_allow" else None, grant)
