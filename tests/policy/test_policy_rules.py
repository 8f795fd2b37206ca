"""Policy files: syntax errors name the file and line; `check` finds rows that never matter."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import ConfigError
from gateway.policy.check import problems
from gateway.policy.rules import DAYS, days, hours
from tests.policy.conftest import bundle_with


@pytest.mark.parametrize(
    "row, message",
    [
        ("q, dept:a, population, read, allow", "a row must start with 'p', got 'q'"),
        (
            "p, dept:a, population, read",
            "a row needs at least sub, dataset, act, eft, got 3 field(s)",
        ),
        ("p, dept:a, population, read, allow, *, *, *, *, extra", "too many fields (9; the model"),
        (
            "p, group:a, population, read, allow",
            "subject must be user:ID, dept:NAME, role:NAME, cert:SUBJECT or '*', got 'group:a'",
        ),
        (
            'p, "cert:2.5.4.3=etl-01,O=Tax Bureau", population, read, allow',
            "the gateway writes the certificate subject '2.5.4.3=etl-01,O=Tax Bureau' as "
            "'CN=etl-01,O=Tax Bureau'; use that",
        ),
        (
            'p, "cert:CN=etl-01, O=Tax Bureau", population, read, allow',
            "a certificate subject must be an RFC 4514 name like 'CN=etl-01,O=Tax Bureau' "
            "(as `openssl x509 -noout -subject -nameopt RFC2253` prints it), "
            "got 'CN=etl-01, O=Tax Bureau'",
        ),
        (
            "p, cert:etl-01, population, read, allow",
            "a certificate subject must be an RFC 4514 name like 'CN=etl-01,O=Tax Bureau' "
            "(as `openssl x509 -noout -subject -nameopt RFC2253` prints it), got 'etl-01'",
        ),
        (
            "p, cert:, population, read, allow",
            "a certificate subject must be an RFC 4514 name like 'CN=etl-01,O=Tax Bureau' "
            "(as `openssl x509 -noout -subject -nameopt RFC2253` prints it), got ''",
        ),
        (
            "p, dept:a, population, fetch, allow",
            "unknown action 'fetch' (known: read, list, export, write or '*')",
        ),
        (
            "p, dept:a, population, *, allow",
            "an allow row must name its actions (read|list|export|write), not '*'",
        ),
        ("p, dept:a, population, read, permit", "effect must be allow or deny, got 'permit'"),
        (
            "p, dept:a, population, read, allow, a b",
            "purpose must be '*' or names joined by '|', got 'a b'",
        ),
        (
            "p, dept:a, population, read, allow, *, 8-25",
            "hours must be two different hours between 00 and 24, got '8-25'",
        ),
        (
            "p, dept:a, population, read, allow, *, 9am",
            "hours must be '*' or 'HH-HH' (e.g. 08-18), got '9am'",
        ),
        (
            "p, dept:a, population, read, allow, *, *, funday",
            "days must be '*' or weekdays like mon-fri or sat|sun, got 'funday'",
        ),
        (
            "p, dept:a, population, read, allow, *, *, *, 5",
            "clearance must be '*' or 1..4, got '5'",
        ),
        ('p, dept:a, "population, read, allow', "not a CSV row"),
        (
            "p, dept:a, pop/ulation, read, allow",
            "dataset must be a dataset id or '*', got 'pop/ulation'",
        ),
    ],
)
def test_policy_syntax_errors_name_file_and_line(policy_dir: Path, row: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        bundle_with(policy_dir, f"# comment\n\np, dept:health, medical, export, allow\n{row}\n")
    text = str(err.value)
    assert text.startswith(f"{policy_dir / 'policy.csv'}:4: ")
    assert message in text
    assert "\n" not in text


MODEL = (Path(__file__).resolve().parents[2] / "policies" / "model.conf").read_text()


@pytest.mark.parametrize(
    "old, new, line, message",
    [
        ("[matchers]", "[matchers", 18, "section header must end with ']'"),
        ("[matchers]", "[rules]", 18, "unknown section [rules]"),
        (
            "r = sub, dataset, act, env",
            "r = sub, obj, act",
            10,
            "request definition must be 'r = sub, dataset, act, env'",
        ),
        (
            "p = sub, dataset, act, eft, purpose",
            "p = sub, dataset, act, eft, reason",
            13,
            "unknown policy column 'reason'",
        ),
        (
            "p = sub, dataset, act, eft",
            "p = dataset, sub, act, eft",
            13,
            "must start with 'p = sub, dataset, act, eft'",
        ),
        (
            "e = some(where (p.eft == allow)) && !some",
            "e = some(where (p.eft == allow)) || !some",
            16,
            "policy effect must be deny-overrides",
        ),
        (
            "m = subject_match(r.sub, p.sub)",
            "m = eval(p.sub)",
            19,
            "matcher calls an unknown function",
        ),
        (
            "m = subject_match(r.sub, p.sub)",
            "m = subject_match(r.sub, p.owner)",
            19,
            "matcher uses unknown p.owner",
        ),
        (
            "m = subject_match(r.sub, p.sub) &&",
            "m = subject_match(r.sub, p.sub) && &&",
            19,
            "matcher is not a valid expression",
        ),
        ("[policy_effect]", "policy_effect", 15, "expected 'key = value', got 'policy_effect'"),
    ],
)
def test_model_syntax_errors_name_file_and_line(
    policy_dir: Path, old: str, new: str, line: int, message: str
) -> None:
    assert old in MODEL
    assert line == next(i for i, t in enumerate(MODEL.splitlines(), 1) if old in t)
    (policy_dir / "model.conf").write_text(MODEL.replace(old, new, 1))
    with pytest.raises(ConfigError) as err:
        bundle_with(policy_dir)
    assert str(err.value).startswith(f"{policy_dir / 'model.conf'}:{line}: ")
    assert message in str(err.value)


def test_model_missing_section(policy_dir: Path) -> None:
    (policy_dir / "model.conf").write_text(MODEL.split("[matchers]")[0])
    with pytest.raises(ConfigError, match=r"model.conf: missing \[matchers\] with 'm = \.\.\.'"):
        bundle_with(policy_dir)


def test_catalog_yaml_error_names_line(policy_dir: Path) -> None:
    (policy_dir / "catalog.yaml").write_text("version: 1\ndatasets:\n  - id: [unclosed\n")
    with pytest.raises(ConfigError, match=r"catalog.yaml:\d+: invalid YAML"):
        bundle_with(policy_dir)


def test_short_rows_default_to_any(policy_dir: Path) -> None:
    bundle = bundle_with(policy_dir, "p, dept:statistics, enterprise, export, allow\n")
    (row,) = bundle.rows
    assert (row.purpose, row.hours, row.days, row.clearance) == ("*", "*", "*", "*")


def test_shipped_policy_checks_clean() -> None:
    shipped = Path(__file__).resolve().parents[2] / "policies"
    assert problems(bundle_with(shipped)) == []


def test_check_reports_rows_that_never_matter(policy_dir: Path) -> None:
    csv = policy_dir / "policy.csv"
    bundle = bundle_with(
        policy_dir,
        "p, dept:health, medcal, read, allow\n"
        "p, dept:statistics, medical, export, allow\n"
        "p, dept:statistics, enterprise, read, allow\n"
        "p, role:data-officer, medical, read, allow\n"
        "p, dept:taxation, population, read, allow, tax-audit\n"
        "p, dept:taxation, population, read, allow, tax-audit\n"
        "p, dept:taxaton, population, read, allow, tax-audit\n",
    )
    assert problems(bundle) == [
        f"{csv}:1: unknown dataset 'medcal': this row can never match",
        f"{csv}:2: dataset 'medical' is shared with its owner 'health' only: "
        "this row can never match",
        f"{csv}:3: anyone may read and list unconditional dataset 'enterprise': "
        "this row never matters",
        f"{csv}:4: the owner of 'medical' may already read and list it: this row never matters",
        f"{csv}:6: duplicates line 5: this row never matters",
        f"{csv}:7: unknown department 'taxaton': this row can never match",
    ]


def test_check_reports_missing_owner(policy_dir: Path) -> None:
    catalog = policy_dir / "catalog.yaml"
    catalog.write_text(catalog.read_text().replace("  - health\n", ""))
    assert problems(bundle_with(policy_dir)) == [
        f"{catalog}: dataset 'medical': owner 'health' is missing from the catalog's departments"
    ]


def test_documented_rows_parse_and_check_clean(policy_dir: Path) -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "policy.md"
    lines = docs.read_text().splitlines()
    rows = [line for line in lines if line.startswith("p, ") and "subject" not in line]
    assert len(rows) >= 8
    bundle = bundle_with(policy_dir, "\n".join(rows) + "\n")
    assert problems(bundle) == []


@given(st.integers(0, 23), st.integers(0, 24), st.integers(0, 23))
def test_hours_window_membership(start: int, end: int, hour: int) -> None:
    spec = f"{start:02d}-{end:02d}"
    if start == end % 24:
        with pytest.raises(ValueError):
            hours(spec)
        return
    inside = start <= hour < end if start < end else hour >= start or hour < end
    assert (hour in (hours(spec) or set())) is inside


@given(st.sampled_from(DAYS), st.sampled_from(DAYS), st.integers(0, 6))
def test_day_range_membership(first: str, last: str, day: int) -> None:
    a, b = DAYS.index(first), DAYS.index(last)
    inside = a <= day <= b if a <= b else day >= a or day <= b
    assert (day in (days(f"{first}-{last}") or set())) is inside


def test_matcher_failing_at_evaluation_is_a_load_error(policy_dir: Path) -> None:
    model = MODEL.replace("m = subject_match", "m = p.clearance > 3 && subject_match")
    (policy_dir / "model.conf").write_text(model)
    with pytest.raises(ConfigError) as err:
        bundle_with(policy_dir)
    assert str(err.value).startswith(f"{policy_dir / 'model.conf'}:19: matcher failed: TypeError")


@pytest.mark.parametrize(
    "clause, ok",
    [("r.sub.clearance >= 2", True), ("r.env.hour < 20", True), ("r.sub.age > 3", False)],
)
def test_matcher_request_attributes(policy_dir: Path, clause: str, ok: bool) -> None:
    model = MODEL.replace("m = subject_match", f"m = {clause} && subject_match")
    (policy_dir / "model.conf").write_text(model)
    if ok:
        assert bundle_with(policy_dir).model.matcher.startswith(clause)
        return
    with pytest.raises(ConfigError, match=r"model.conf:19: matcher uses unknown attribute \.age"):
        bundle_with(policy_dir)
