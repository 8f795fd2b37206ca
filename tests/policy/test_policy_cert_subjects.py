"""Policy rows on a client certificate's subject (`cert:SUBJECT`): the decision, `policy
explain --cert-subject`, policy test cases with `cert_subject`, replayed access events."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import pytest

from gateway.cli.adminclient import CLIError
from gateway.errors import ConfigError
from gateway.identity.principal import Principal
from gateway.policy.cases import load_cases
from gateway.policy.decide import evaluate
from gateway.policy.replay import replay
from tests.policy.conftest import MONDAY_10, bundle_with
from tests.policy.test_policy_cli import _policy

SUBJECT = "CN=etl-01,O=Tax Bureau,C=CN"
ROW = f'p, "cert:{SUBJECT}", enterprise, export, allow, *, *, *, *\n'


@pytest.fixture
def cert_policy(policy_dir: Path) -> Path:
    csv = policy_dir / "policy.csv"
    csv.write_text(csv.read_text() + ROW)
    return policy_dir


def test_a_row_on_a_certificate_subject_matches_only_that_subject(cert_policy: Path) -> None:
    bundle = bundle_with(cert_policy)
    dataset = bundle.catalog.datasets["enterprise"]

    def decide(cert_subject: str | None) -> tuple[str, str]:
        who = Principal("etl", "taxation", 2, cert_subject=cert_subject)
        decision = evaluate(bundle, who, None, dataset, "export", MONDAY_10, (), UTC).decision
        return decision.effect, decision.reason

    assert decide(SUBJECT) == ("allow", "policy_allow")
    assert decide(None) == ("deny", "default_deny")
    assert decide("CN=etl-01,O=Tax Bureau") == ("deny", "default_deny")


def test_policy_check_accepts_certificate_rows(
    cert_policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _policy("check", "--dir", str(cert_policy)) == 0
    assert capsys.readouterr().out.endswith(": ok\n")


def test_explain_with_a_certificate_subject(
    cert_policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["explain", "--dir", str(cert_policy), "--sub", "etl", "--dept", "taxation"]
    args += ["--clearance", "2", "--path", "/api/enterprise/companies.csv"]
    assert _policy(*args, "--cert-subject", SUBJECT) == 0
    out = capsys.readouterr().out
    assert "decision: allow\n" in out and "reason:   policy_allow\n" in out
    assert f"{cert_policy / 'policy.csv'}:27  {ROW.strip()}" in out
    assert f"(taxation, clearance 2, certificate {SUBJECT}) export enterprise" in out
    assert _policy(*args) == 1  # a deny is a negative answer
    assert "reason:   default_deny\n" in capsys.readouterr().out


def test_explain_refuses_a_subject_the_gateway_would_never_write(cert_policy: Path) -> None:
    args = ["explain", "--dir", str(cert_policy), "--sub", "etl", "--dept", "taxation"]
    args += ["--clearance", "2", "--path", "/api/enterprise/companies.csv"]
    with pytest.raises(CLIError) as err:
        _policy(*args, "--cert-subject", "CN=etl-01, O=Tax Bureau")
    assert str(err.value) == (
        "--cert-subject: a certificate subject must be an RFC 4514 name like "
        "'CN=etl-01,O=Tax Bureau' (as `openssl x509 -noout -subject -nameopt RFC2253` prints "
        "it), got 'CN=etl-01, O=Tax Bureau'"
    )


def test_policy_test_cases_can_give_a_certificate_subject(
    cert_policy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = tmp_path / "cert.yaml"
    cases.write_text(
        f"""
cases:
  - name: the ETL job exports with its certificate
    principal: {{sub: etl, dept: taxation, clearance: 2, cert_subject: "{SUBJECT}"}}
    request: {{path: /api/enterprise/companies.csv}}
    expect: {{decision: allow, reason: policy_allow, rule_line: 27}}
  - name: the same token without the certificate
    principal: {{sub: etl, dept: taxation, clearance: 2}}
    request: {{path: /api/enterprise/companies.csv}}
    expect: {{decision: deny, reason: default_deny}}
"""
    )
    assert _policy("test", "--dir", str(cert_policy), str(cases)) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("2 passed, 0 failed")
    cases.write_text(
        "cases:\n  - name: x\n    principal: {sub: a, dept: b, clearance: 1, cert_subject: 5}\n"
        "    request: {path: /api/enterprise/companies}\n    expect: allow\n"
    )
    with pytest.raises(ConfigError) as err:
        load_cases(cases)
    assert str(err.value).endswith("principal.cert_subject: expected a string")


def test_replay_reads_the_recorded_certificate_subject(cert_policy: Path, tmp_path: Path) -> None:
    event = {
        "type": "access",
        "request_id": "r1",
        "principal": "etl",
        "department": "taxation",
        "clearance": 2,
        "roles": [],
        "cert_subject": SUBJECT,
        "method": "GET",
        "path": "/api/enterprise/companies.csv",
        "dataset": "enterprise",
        "decision": "allow",
        "status": 200,
        "ts": "2026-01-05T10:00:00+00:00",
    }
    kept = replay(bundle_with(cert_policy), [event], UTC)
    assert (kept.decided, kept.unchanged, kept.changes) == (1, 1, [])
    csv = cert_policy / "policy.csv"
    csv.write_text(csv.read_text().replace(ROW, ""))
    dropped = replay(bundle_with(cert_policy), [event], UTC)
    assert [(c.request_id, c.old, c.new) for c in dropped.changes] == [("r1", "allow", "deny")]
