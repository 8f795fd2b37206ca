"""The decision table: sharing types, clearance, masking, purpose, time, deny and actions."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import pytest

from gateway.identity.principal import Principal
from gateway.policy.decide import evaluate
from gateway.policy.grants import Grant
from tests.policy.conftest import MONDAY_10, bundle_with, who

ROWS = """\
p, dept:civil-affairs, population, read|list, allow, benefit-eligibility, 08-18, mon-fri, 2
p, role:tax-auditor, social-security, read|list, allow, tax-audit, *, *, 3
p, dept:statistics, enterprise, export, allow, statistics
p, role:data-officer, medical, export, allow
p, dept:civil-affairs, population, export, allow, benefit-eligibility
p, user:clerk-bad, population, *, deny
p, dept:taxation, social-security, write, deny
p, role:tax-auditor, social-security, write, allow, tax-audit
p, *, enterprise, read, deny, *, 22-06
"""

HOUR = 3600.0
SATURDAY_10 = MONDAY_10 + 5 * 24 * HOUR

CIVIL = who("clerk-zhao", "civil-affairs", 2)
AUDITOR = who("auditor-qian", "taxation", 3, "tax-auditor")
POLICE = who("officer-wang", "public-security", 3)
DOCTOR = who("dr-chen", "health", 4)

CASES = [
    # (name, principal, purpose, dataset, action, ts, effect, reason, mask_clearance)
    ("none: owner reads", DOCTOR, None, "medical", "read", MONDAY_10, "allow", "owner", 4),
    (
        "none: other dept refused",
        POLICE,
        "x",
        "medical",
        "read",
        MONDAY_10,
        "deny",
        "sharing_none",
        3,
    ),
    (
        "none: owner export needs a row",
        DOCTOR,
        None,
        "medical",
        "export",
        MONDAY_10,
        "deny",
        "default_deny",
        4,
    ),
    (
        "none: row grants owner export",
        who("d", "health", 4, "data-officer"),
        None,
        "medical",
        "export",
        MONDAY_10,
        "allow",
        "policy_allow",
        4,
    ),
    (
        "none: row cannot open to others",
        who("s", "statistics", 4, "data-officer"),
        None,
        "medical",
        "export",
        MONDAY_10,
        "deny",
        "sharing_none",
        4,
    ),
    (
        "none: owner below level refused",
        who("n", "health", 3),
        None,
        "medical",
        "read",
        MONDAY_10,
        "deny",
        "clearance_below_level",
        3,
    ),
    (
        "unconditional: anyone reads",
        CIVIL,
        None,
        "enterprise",
        "read",
        MONDAY_10,
        "allow",
        "unconditional",
        2,
    ),
    (
        "unconditional: anyone lists",
        who("x", "nowhere", 1),
        None,
        "enterprise",
        "list",
        MONDAY_10,
        "allow",
        "unconditional",
        1,
    ),
    (
        "unconditional: export separate",
        CIVIL,
        None,
        "enterprise",
        "export",
        MONDAY_10,
        "deny",
        "default_deny",
        2,
    ),
    (
        "unconditional: export row",
        who("s", "statistics", 1),
        "statistics",
        "enterprise",
        "export",
        MONDAY_10,
        "allow",
        "policy_allow",
        1,
    ),
    (
        "unconditional: write never implicit",
        CIVIL,
        None,
        "enterprise",
        "write",
        MONDAY_10,
        "deny",
        "default_deny",
        2,
    ),
    (
        "unconditional: night deny row",
        CIVIL,
        None,
        "enterprise",
        "read",
        MONDAY_10 + 13 * HOUR,
        "deny",
        "explicit_deny",
        2,
    ),
    (
        "conditional: owner reads without purpose",
        POLICE,
        None,
        "population",
        "read",
        MONDAY_10,
        "allow",
        "owner",
        3,
    ),
    (
        "conditional: row + purpose",
        CIVIL,
        "benefit-eligibility",
        "population",
        "list",
        MONDAY_10,
        "allow",
        "policy_allow",
        2,
    ),
    (
        "conditional: no purpose",
        CIVIL,
        None,
        "population",
        "list",
        MONDAY_10,
        "deny",
        "no_purpose",
        2,
    ),
    (
        "conditional: purpose not in row",
        CIVIL,
        "marketing",
        "population",
        "list",
        MONDAY_10,
        "deny",
        "default_deny",
        2,
    ),
    (
        "conditional: outside hours",
        CIVIL,
        "benefit-eligibility",
        "population",
        "list",
        MONDAY_10 + 9 * HOUR,
        "deny",
        "default_deny",
        2,
    ),
    (
        "conditional: hour 17 inside",
        CIVIL,
        "benefit-eligibility",
        "population",
        "list",
        MONDAY_10 + 7 * HOUR,
        "allow",
        "policy_allow",
        2,
    ),
    (
        "conditional: hour 18 outside",
        CIVIL,
        "benefit-eligibility",
        "population",
        "list",
        MONDAY_10 + 8 * HOUR,
        "deny",
        "default_deny",
        2,
    ),
    (
        "conditional: weekend outside",
        CIVIL,
        "benefit-eligibility",
        "population",
        "list",
        SATURDAY_10,
        "deny",
        "default_deny",
        2,
    ),
    (
        "conditional: masked below level",
        CIVIL,
        "benefit-eligibility",
        "population",
        "read",
        MONDAY_10,
        "allow",
        "policy_allow",
        2,
    ),
    (
        "clearance below masked floor",
        who("a", "civil-affairs", 1),
        "benefit-eligibility",
        "population",
        "read",
        MONDAY_10,
        "deny",
        "clearance_below_level",
        1,
    ),
    (
        "row clearance condition met",
        AUDITOR,
        "tax-audit",
        "social-security",
        "read",
        MONDAY_10,
        "allow",
        "policy_allow",
        3,
    ),
    (
        "row clearance condition unmet",
        who("w", "taxation", 2, "tax-auditor"),
        "tax-audit",
        "social-security",
        "read",
        MONDAY_10,
        "deny",
        "default_deny",
        2,
    ),
    (
        "deny overrides allow",
        AUDITOR,
        "tax-audit",
        "social-security",
        "write",
        MONDAY_10,
        "deny",
        "explicit_deny",
        3,
    ),
    (
        "explicit deny on owner-free row",
        who("clerk-bad", "civil-affairs", 3),
        "benefit-eligibility",
        "population",
        "read",
        MONDAY_10,
        "deny",
        "explicit_deny",
        3,
    ),
    (
        "deny wins even for owner",
        who("clerk-bad", "public-security", 3),
        None,
        "population",
        "read",
        MONDAY_10,
        "deny",
        "explicit_deny",
        3,
    ),
    (
        "default deny: nothing matches",
        who("x", "nowhere", 3),
        "x",
        "social-security",
        "read",
        MONDAY_10,
        "deny",
        "default_deny",
        3,
    ),
    (
        "export granted separately from read",
        CIVIL,
        "benefit-eligibility",
        "population",
        "export",
        MONDAY_10,
        "allow",
        "policy_allow",
        2,
    ),
    (
        "write needs full clearance (no masked write)",
        who("c", "civil-affairs", 2),
        "benefit-eligibility",
        "population",
        "write",
        MONDAY_10,
        "deny",
        "clearance_below_level",
        2,
    ),
]


@pytest.mark.parametrize(
    "name, principal, purpose, dataset, action, ts, effect, reason, mask",
    CASES,
    ids=[c[0] for c in CASES],
)
def test_decision_table(
    policy_dir: Path,
    name: str,
    principal: Principal,
    purpose: str | None,
    dataset: str,
    action: str,
    ts: float,
    effect: str,
    reason: str,
    mask: int,
) -> None:
    bundle = bundle_with(policy_dir, ROWS)
    d = evaluate(bundle, principal, purpose, bundle.catalog.datasets[dataset], action, ts, (), UTC)
    assert (d.decision.effect, d.decision.reason, d.decision.mask_clearance) == (
        effect,
        reason,
        mask,
    )
    assert d.decision.allowed is (effect == "allow")


def test_matched_rule_names_file_and_line(policy_dir: Path) -> None:
    bundle = bundle_with(policy_dir, ROWS)
    ds = bundle.catalog.datasets
    allow = evaluate(
        bundle, AUDITOR, "tax-audit", ds["social-security"], "read", MONDAY_10, (), UTC
    )
    assert allow.decision.rule is not None
    assert allow.decision.rule.where == f"{policy_dir / 'policy.csv'}:2"
    deny = evaluate(
        bundle, AUDITOR, "tax-audit", ds["social-security"], "write", MONDAY_10, (), UTC
    )
    assert deny.decision.rule is not None and deny.decision.rule.line == 7


def _grant(**kw: object) -> Grant:
    base: dict[str, object] = dict(
        id="g-1",
        dataset="population",
        actions=frozenset({"read"}),
        purpose="tax-audit",
        not_before=MONDAY_10 - HOUR,
        expires_at=MONDAY_10 + HOUR,
        reason="case 42",
        granted_by="officer",
        created_at=MONDAY_10 - HOUR,
        department="taxation",
    )
    base.update(kw)
    return Grant(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "grant, purpose, action, effect, reason",
    [
        (_grant(), "tax-audit", "read", "allow", "grant"),
        (_grant(), "marketing", "read", "deny", "default_deny"),
        (_grant(), None, "read", "deny", "no_purpose"),
        (_grant(), "tax-audit", "export", "deny", "default_deny"),
        (_grant(department="health"), "tax-audit", "read", "deny", "default_deny"),
        (_grant(department=None, principal="clerk-sun"), "tax-audit", "read", "allow", "grant"),
        (_grant(not_before=MONDAY_10 + 1), "tax-audit", "read", "deny", "default_deny"),
    ],
)
def test_grants(
    policy_dir: Path, grant: Grant, purpose: str | None, action: str, effect: str, reason: str
) -> None:
    bundle = bundle_with(policy_dir, ROWS)
    caller = who("clerk-sun", "taxation", 2)
    d = evaluate(
        bundle,
        caller,
        purpose,
        bundle.catalog.datasets["population"],
        action,
        MONDAY_10,
        [grant],
        UTC,
    ).decision
    assert (d.effect, d.reason) == (effect, reason)
    assert d.grant_id == (grant.id if effect == "allow" else None)


def test_grant_expires_at_its_second(policy_dir: Path) -> None:
    bundle = bundle_with(policy_dir, ROWS)
    grant = _grant(expires_at=MONDAY_10 + 30)
    caller = who("clerk-sun", "taxation", 2)
    ds = bundle.catalog.datasets["population"]
    before = evaluate(bundle, caller, "tax-audit", ds, "read", MONDAY_10 + 29.999, [grant], UTC)
    at = evaluate(bundle, caller, "tax-audit", ds, "read", MONDAY_10 + 30, [grant], UTC)
    assert before.decision.allowed and not at.decision.allowed
    assert before.valid_until == MONDAY_10 + 30


def test_grant_clearance_raises_mask_clearance(policy_dir: Path) -> None:
    bundle = bundle_with(policy_dir, ROWS)
    caller = who("clerk-sun", "taxation", 1)
    ds = bundle.catalog.datasets["population"]
    plain = evaluate(bundle, caller, "tax-audit", ds, "read", MONDAY_10, [_grant()], UTC).decision
    raised = evaluate(
        bundle, caller, "tax-audit", ds, "read", MONDAY_10, [_grant(clearance=3)], UTC
    ).decision
    assert (plain.effect, plain.reason) == ("deny", "clearance_below_level")
    assert (raised.effect, raised.mask_clearance) == ("allow", 3)


def test_monitor_mode_logs_but_allows(policy_dir: Path) -> None:
    bundle = bundle_with(policy_dir, ROWS)
    ds = bundle.catalog.datasets["medical"]
    d = evaluate(bundle, POLICE, "x", ds, "read", MONDAY_10, (), UTC, monitor=True).decision
    assert (d.allowed, d.effect, d.reason, d.monitor) == (True, "deny", "sharing_none", True)
    ok = evaluate(bundle, DOCTOR, None, ds, "read", MONDAY_10, (), UTC, monitor=True).decision
    assert (ok.allowed, ok.monitor) == (True, False)


def test_dataset_monitor_flag(policy_dir: Path) -> None:
    catalog = policy_dir / "catalog.yaml"
    catalog.write_text(
        catalog.read_text().replace("sharing: none\n", "sharing: none\n    monitor: true\n")
    )
    bundle = bundle_with(policy_dir, ROWS)
    d = evaluate(
        bundle, POLICE, "x", bundle.catalog.datasets["medical"], "read", MONDAY_10, (), UTC
    )
    assert (d.decision.allowed, d.decision.monitor) == (True, True)
    other = evaluate(
        bundle,
        who("x", "nowhere", 3),
        "x",
        bundle.catalog.datasets["social-security"],
        "read",
        MONDAY_10,
        (),
        UTC,
    )
    assert other.decision.allowed is False


def test_time_windows_use_the_configured_zone(policy_dir: Path) -> None:
    from zoneinfo import ZoneInfo

    bundle = bundle_with(policy_dir, ROWS)
    ds = bundle.catalog.datasets["population"]
    # 10:00 UTC is 18:00 in Shanghai: outside 08-18.
    d = evaluate(
        bundle, CIVIL, "benefit-eligibility", ds, "list", MONDAY_10, (), ZoneInfo("Asia/Shanghai")
    )
    assert d.decision.reason == "default_deny"
