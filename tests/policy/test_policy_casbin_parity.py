"""Plain pycasbin with the shipped files and casbin_functions decides as the gateway does."""

from __future__ import annotations

import filecmp
from datetime import UTC
from pathlib import Path

import casbin
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.identity.principal import Principal
from gateway.policy import casbin_functions
from gateway.policy.bundle import load_bundle
from gateway.policy.cases import _grants, case_files, case_time, decide_case, load_cases, resolve
from gateway.policy.decider import Decider
from gateway.policy.grants import Grant
from gateway.policy.rules import ACTIONS

REPO = Path(__file__).resolve().parents[2]
DIRS = [REPO / "policies", REPO / "gateway" / "demo" / "policies"]
MONDAY_10 = 1767607200.0  # 2026-01-05 10:00 UTC


def plain_casbin(directory: Path) -> casbin.Enforcer:
    enforcer = casbin.Enforcer(str(directory / "model.conf"), str(directory / "policy.csv"))
    casbin_functions.register(enforcer)
    return enforcer


def test_policy_directories_are_identical() -> None:
    shipped, demo = DIRS
    names = ["catalog.yaml", "model.conf", "policy.csv"]
    names += [f"tests/{p.name}" for p in case_files(shipped / "tests")]
    names += [f"tests/{p.name}" for p in case_files(demo / "tests")]
    for name in sorted(set(names)):
        assert (demo / name).is_file(), f"gateway/demo/policies/{name} is missing"
        assert filecmp.cmp(shipped / name, demo / name, shallow=False), f"{name} differs"


def test_plain_casbin_needs_the_function_map() -> None:
    enforcer = casbin.Enforcer(str(DIRS[0] / "model.conf"), str(DIRS[0] / "policy.csv"))
    bundle = load_bundle(DIRS[0], MONDAY_10)
    req = casbin_functions.request(
        bundle.catalog, Principal("a", "health", 4, frozenset()), "medical", "read", None,
        MONDAY_10, UTC,
    )
    with pytest.raises(Exception, match="subject_match"):
        enforcer.enforce(*req)


CASES = [(d, c) for d in DIRS for f in case_files(d / "tests") for c in load_cases(f)]


@pytest.mark.parametrize(
    "directory, case", CASES, ids=[f"{d.parent.name}/{c.name}" for d, c in CASES]
)
def test_every_policy_case_decides_alike(directory: Path, case) -> None:
    bundle = load_bundle(directory, MONDAY_10)
    enforcer = plain_casbin(directory)
    dataset, action = resolve(bundle.catalog, case.method, case.path)
    ts = case_time(case, UTC)
    grants = _grants(case, dataset, ts)
    gateway = decide_case(bundle, case, UTC)
    plain = enforcer.enforce(
        *casbin_functions.request(
            bundle.catalog, case.principal, dataset.id, action, case.purpose, ts, UTC, grants
        )
    )
    assert plain == (gateway.effect == "allow") == (case.expect["decision"] == "allow")


SHIPPED = load_bundle(DIRS[0], MONDAY_10)
PLAIN = plain_casbin(DIRS[0])
DEPARTMENTS = [*sorted(SHIPPED.catalog.departments), "elsewhere"]
ROLES = ["tax-auditor", "data-officer", "statistician"]
PURPOSES = [None, "benefit-eligibility", "household-registration", "tax-audit", "statistics", "x"]
SUBJECTS = ["contractor-017", "clerk-zhao", "dr-chen", "someone"]


class _Grants:
    def __init__(self, grants: list[Grant]) -> None:
        self.version = 1
        self._grants = grants

    def for_dataset(self, dataset: str) -> list[Grant]:
        return [g for g in self._grants if g.dataset == dataset]


grant_strategy = st.builds(
    lambda ds, sub, dept, by_sub, acts, purpose, start, length, clearance: Grant(
        id="g", dataset=ds, actions=frozenset(acts), purpose=purpose,
        not_before=MONDAY_10 + start, expires_at=MONDAY_10 + start + length,
        reason="r", granted_by="t", created_at=MONDAY_10,
        principal=sub if by_sub else None, department=None if by_sub else dept,
        clearance=clearance,
    ),
    st.sampled_from(sorted(SHIPPED.catalog.datasets)),
    st.sampled_from(SUBJECTS),
    st.sampled_from(DEPARTMENTS),
    st.booleans(),
    st.sets(st.sampled_from(ACTIONS), min_size=1),
    st.sampled_from([p for p in PURPOSES if p]),
    st.integers(-7200, 3600),
    st.integers(1, 7200),
    st.one_of(st.none(), st.integers(1, 4)),
)


@settings(max_examples=600, deadline=None)
@given(
    sub=st.sampled_from(SUBJECTS),
    dept=st.sampled_from(DEPARTMENTS),
    clearance=st.integers(1, 4),
    roles=st.sets(st.sampled_from(ROLES), max_size=2),
    dataset=st.sampled_from(sorted(SHIPPED.catalog.datasets)),
    action=st.sampled_from(ACTIONS),
    purpose=st.sampled_from(PURPOSES),
    hour_offset=st.integers(0, 24 * 7 - 1),
    grants=st.lists(grant_strategy, max_size=3),
)
def test_generated_requests_decide_alike(
    sub, dept, clearance, roles, dataset, action, purpose, hour_offset, grants
) -> None:
    principal = Principal(sub, dept, clearance, frozenset(roles))
    ts = MONDAY_10 + hour_offset * 3600 + 60
    decider = Decider(lambda: SHIPPED, _Grants(grants), UTC, cache_size=0)
    gateway = decider.decide(principal, purpose, SHIPPED.catalog.datasets[dataset], action, ts)
    plain = PLAIN.enforce(
        *casbin_functions.request(
            SHIPPED.catalog, principal, dataset, action, purpose, ts, UTC, grants
        )
    )
    assert plain == (gateway.effect == "allow"), gateway


def test_a_sweep_without_grants_decides_alike_with_both_outcomes() -> None:
    decider = Decider(lambda: SHIPPED, _Grants([]), UTC, cache_size=0)
    seen = set()
    for sub in ("contractor-017", "clerk-zhao"):
        for dept in DEPARTMENTS:
            for clearance in (1, 2, 3, 4):
                for roles in ((), ("tax-auditor",), ("data-officer",)):
                    principal = Principal(sub, dept, clearance, frozenset(roles))
                    for dataset in SHIPPED.catalog.datasets.values():
                        for action in ACTIONS:
                            for purpose in PURPOSES:
                                d = decider.decide(principal, purpose, dataset, action, MONDAY_10)
                                plain = PLAIN.enforce(
                                    *casbin_functions.request(
                                        SHIPPED.catalog, principal, dataset.id, action,
                                        purpose, MONDAY_10, UTC,
                                    )
                                )
                                assert plain == (d.effect == "allow"), (principal, d)
                                seen.add((plain, d.reason))
    reasons = {r for _, r in seen}
    assert {True, False} == {p for p, _ in seen}
    assert {"owner", "unconditional", "policy_allow", "explicit_deny", "sharing_none",
            "clearance_below_level", "no_purpose", "default_deny"} <= reasons
