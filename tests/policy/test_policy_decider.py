"""The decision cache: hits for the same attributes, never a stale answer after a change."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

from gateway.identity.principal import Principal
from gateway.policy.bundle import PolicyBundle
from gateway.policy.decider import Decider, NoGrants
from gateway.policy.grants import Grant
from tests.policy.conftest import MONDAY_10, bundle_with, who


class Grants:
    """A grant view the test changes by hand, as GrantStore's refresh would."""

    def __init__(self) -> None:
        self.version = 0
        self.grants: list[Grant] = []

    def for_dataset(self, dataset: str) -> list[Grant]:
        return [g for g in self.grants if g.dataset == dataset]

    def set(self, grants: list[Grant]) -> None:
        self.grants = grants
        self.version += 1


def _decider(bundle: list[PolicyBundle], grants: Grants | NoGrants) -> Decider:
    return Decider(lambda: bundle[0], grants, UTC, cache_size=100)


CIVIL = who("clerk-zhao", "civil-affairs", 2)


def test_same_attributes_hit_the_cache(policy_dir: Path) -> None:
    bundle = [bundle_with(policy_dir)]
    decider = _decider(bundle, NoGrants())
    ds = bundle[0].catalog.datasets["population"]
    first = decider.decide(CIVIL, "benefit-eligibility", ds, "list", MONDAY_10)
    second = decider.decide(CIVIL, "benefit-eligibility", ds, "list", MONDAY_10 + 60)
    assert first is second and (decider.hits, decider.misses) == (1, 1)


def test_every_attribute_is_in_the_key(policy_dir: Path) -> None:
    bundle = [bundle_with(policy_dir)]
    decider = _decider(bundle, NoGrants())
    ds = bundle[0].catalog.datasets
    base = decider.decide(CIVIL, "benefit-eligibility", ds["population"], "list", MONDAY_10)
    assert base.allowed
    variants = [
        (who("clerk-zhao", "civil-affairs", 1), "benefit-eligibility", "population", "list"),
        (who("clerk-zhao", "taxation", 2), "benefit-eligibility", "population", "list"),
        (who("contractor-017", "civil-affairs", 2), "benefit-eligibility", "population", "list"),
        (CIVIL, "marketing", "population", "list"),
        (CIVIL, None, "population", "list"),
        (CIVIL, "benefit-eligibility", "population", "export"),
        (CIVIL, "benefit-eligibility", "social-security", "list"),
    ]
    for principal, purpose, dataset, action in variants:
        assert not decider.decide(principal, purpose, ds[dataset], action, MONDAY_10).allowed
    roles = Principal("clerk-zhao", "health", 4, frozenset({"data-officer"}))
    no_roles = Principal("clerk-zhao", "health", 4)
    assert decider.decide(roles, None, ds["medical"], "export", MONDAY_10).allowed
    assert not decider.decide(no_roles, None, ds["medical"], "export", MONDAY_10).allowed


def test_policy_change_is_never_served_stale(policy_dir: Path) -> None:
    bundle = [bundle_with(policy_dir)]
    decider = _decider(bundle, NoGrants())
    ds = bundle[0].catalog.datasets["population"]
    assert decider.decide(CIVIL, "benefit-eligibility", ds, "list", MONDAY_10).allowed
    bundle[0] = bundle_with(policy_dir, "p, dept:civil-affairs, population, *, deny\n")
    d = decider.decide(CIVIL, "benefit-eligibility", ds, "list", MONDAY_10)
    assert (d.allowed, d.reason, d.policy_version) == (False, "explicit_deny", bundle[0].version)


def test_grant_change_is_never_served_stale(policy_dir: Path) -> None:
    bundle = [bundle_with(policy_dir)]
    grants = Grants()
    decider = _decider(bundle, grants)
    ds = bundle[0].catalog.datasets["population"]
    caller = who("clerk-sun", "taxation", 2)
    assert not decider.decide(caller, "tax-audit", ds, "read", MONDAY_10).allowed
    grant = Grant(
        "g-1",
        "population",
        frozenset({"read"}),
        "tax-audit",
        MONDAY_10 - 10,
        MONDAY_10 + 100,
        "case",
        "officer",
        MONDAY_10 - 10,
        department="taxation",
    )
    grants.set([grant])
    assert decider.decide(caller, "tax-audit", ds, "read", MONDAY_10).grant_id == "g-1"
    grants.set([])
    assert not decider.decide(caller, "tax-audit", ds, "read", MONDAY_10).allowed


def test_cached_grant_decision_expires_at_the_second(policy_dir: Path) -> None:
    bundle = [bundle_with(policy_dir)]
    grants = Grants()
    grants.set(
        [
            Grant(
                "g-1",
                "population",
                frozenset({"read"}),
                "tax-audit",
                MONDAY_10 - 10,
                MONDAY_10 + 5,
                "case",
                "officer",
                MONDAY_10 - 10,
                department="taxation",
            )
        ]
    )
    decider = _decider(bundle, grants)
    ds = bundle[0].catalog.datasets["population"]
    caller = who("clerk-sun", "taxation", 2)
    assert decider.decide(caller, "tax-audit", ds, "read", MONDAY_10).allowed
    assert decider.decide(caller, "tax-audit", ds, "read", MONDAY_10 + 4.999).allowed
    assert decider.hits == 1
    assert not decider.decide(caller, "tax-audit", ds, "read", MONDAY_10 + 5).allowed


def test_cached_decision_does_not_cross_an_hour(policy_dir: Path) -> None:
    bundle = [bundle_with(policy_dir)]
    decider = _decider(bundle, NoGrants())
    ds = bundle[0].catalog.datasets["population"]
    assert decider.decide(CIVIL, "benefit-eligibility", ds, "list", MONDAY_10 + 7 * 3600).allowed
    assert not decider.decide(
        CIVIL, "benefit-eligibility", ds, "list", MONDAY_10 + 8 * 3600
    ).allowed


def test_cache_is_bounded(policy_dir: Path) -> None:
    bundle = [bundle_with(policy_dir)]
    decider = Decider(lambda: bundle[0], NoGrants(), UTC, cache_size=3)
    ds = bundle[0].catalog.datasets["enterprise"]
    for i in range(10):
        decider.decide(who(f"u{i}", "x", 1), None, ds, "read", MONDAY_10)
    decider.decide(who("u0", "x", 1), None, ds, "read", MONDAY_10)
    assert decider.misses == 11
    decider.decide(who("u9", "x", 1), None, ds, "read", MONDAY_10)
    assert decider.hits == 1
