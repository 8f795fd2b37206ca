"""The function map and request builder that let plain pycasbin decide as the gateway does.

    import casbin
    from gateway.policy import casbin_functions
    from gateway.policy.catalog import load_catalog

    enforcer = casbin.Enforcer("policies/model.conf", "policies/policy.csv")
    casbin_functions.register(enforcer)
    catalog = load_catalog(Path("policies/catalog.yaml"))
    allowed = enforcer.enforce(*casbin_functions.request(
        catalog, principal, "population", "read", "benefit-eligibility", ts, tz, grants))

docs/policy.md ("Standard Casbin tools") explains the request tuple and the `catalog` row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, tzinfo
from typing import Any

from gateway.identity.principal import Principal
from gateway.policy.catalog import Catalog, Dataset
from gateway.policy.enforcer import FUNCTIONS as ROW_FUNCTIONS
from gateway.policy.enforcer import Env, Subject, subject_names
from gateway.policy.grants import Grant
from gateway.policy.rules import CATALOG_SUBJECT
from gateway.policy.sharing import (
    clearance_ok,
    implicit_basis,
    purpose_ok,
    raised_clearance,
    shared_with,
)


def sharing_match(
    sub: Subject, dataset: Dataset, act: str, env: Env, p_sub: str, p_eft: str
) -> bool:
    """The catalog's rules for one row: deny rows always apply; an allow row applies only
    where the dataset is shared with the caller, a conditional dataset has a purpose and the
    caller's clearance suffices; the `catalog` row applies where the owner or unconditional
    rule, or a grant in force (with the clearance it carries), allows the request."""
    if p_eft == "deny":
        return True
    if not shared_with(sub.department, dataset):
        return False
    if p_sub != CATALOG_SUBJECT:
        return purpose_ok(dataset, env.purpose) and clearance_ok(sub.clearance, dataset, act)
    if implicit_basis(sub.department, dataset, act) and clearance_ok(sub.clearance, dataset, act):
        return True
    return purpose_ok(dataset, env.purpose) and any(
        clearance_ok(raised_clearance(sub.clearance, g), dataset, act) for g in env.grants
    )


FUNCTIONS: dict[str, Callable[..., bool]] = {**ROW_FUNCTIONS, "sharing_match": sharing_match}


def register(enforcer: Any) -> None:
    """Add every function model.conf may call to a `casbin.Enforcer`."""
    for name, fn in FUNCTIONS.items():
        enforcer.add_function(name, fn)


def request(
    catalog: Catalog,
    principal: Principal,
    dataset: str,
    action: str,
    purpose: str | None,
    ts: float,
    tz: tzinfo,
    grants: Iterable[Grant] = (),
) -> tuple[Subject, Dataset, str, Env]:
    """The request tuple `(sub, dataset, act, env)` for `enforcer.enforce(*tuple)`.

    `dataset` is a catalog id; the tuple carries its catalog entry (owner, level, sharing
    type, masked-sharing floor). `grants` are the temporary grants held in the state backend
    (any); those active at `ts` for this caller, dataset, action and purpose go into `env`.
    `ts` is epoch seconds; `tz` is the config's `policy.timezone`.
    """
    entry = catalog.datasets[dataset]
    local = datetime.fromtimestamp(ts, tz)
    names = subject_names(
        principal.subject, principal.department, principal.roles, principal.cert_subject
    )
    in_force = tuple(
        g.clearance
        for g in grants
        if g.dataset == dataset
        and g.active(ts)
        and g.covers(principal.subject, principal.department, action, purpose)
    )
    return (
        Subject(names, principal.clearance, principal.department),
        entry,
        action,
        Env(purpose, local.hour, local.weekday(), in_force),
    )
