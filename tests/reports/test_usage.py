"""The usage report read from a generated audit log with known counts, through the CLI too."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from gateway.audit.chain import verify
from gateway.cli import main
from gateway.policy.bundle import load_bundle
from gateway.reports.usage import Usage, audit_records, catalogued_consumers, grants_in
from tests.reports.conftest import DAY1, known_log, write_log

START, END = DAY1 - 9 * 3600, DAY1 - 9 * 3600 + 2 * 86400  # 2026-12-01 .. 2026-12-03

ROWS = [
    {
        "day": "2026-12-01",
        "dataset": "accounts",
        "department": "taxation",
        "calls": 3,
        "served": 0,
        "records": 0,
        "bytes": 0,
        "masked_fields": 0,
        "refused": 3,
        "refusals": {"default_deny": 3},
        "consumers": 1,
    },
    {
        "day": "2026-12-01",
        "dataset": "register",
        "department": "taxation",
        "calls": 7,
        "served": 5,
        "records": 50,
        "bytes": 5000,
        "masked_fields": 50,
        "refused": 2,
        "refusals": {"default_deny": 1, "per_principal": 1},
        "consumers": 3,
    },
    {
        "day": "2026-12-02",
        "dataset": "accounts",
        "department": "taxation",
        "calls": 4,
        "served": 4,
        "records": 4,
        "bytes": 1200,
        "masked_fields": 8,
        "refused": 0,
        "refusals": {},
        "consumers": 1,
    },
    {
        "day": "2026-12-02",
        "dataset": "register",
        "department": "statistics",
        "calls": 1,
        "served": 1,
        "records": 100,
        "bytes": 50000,
        "masked_fields": 0,
        "refused": 0,
        "refusals": {},
        "consumers": 1,
    },
]
EVERYONE = ["civil-affairs", "health", "human-resources", "statistics", "taxation"]


def report(config_file: Path, audit_file: Path) -> dict:
    bundle = load_bundle(config_file.parent / "policies", 0.0)
    records = list(audit_records([audit_file]))
    usage = Usage()
    for record in records:
        usage.add(record)
    return usage.report(START, END, bundle, grants_in(records, START, END))


def test_the_generated_log_is_a_valid_audit_log(audit_file: Path) -> None:
    with open(audit_file, "rb") as fh:
        assert verify(fh).ok


def test_rows_per_dataset_department_and_day(config_file: Path, audit_file: Path) -> None:
    got = report(config_file, audit_file)
    assert got["rows"] == ROWS
    assert got["from"] == "2026-12-01T00:00:00+00:00"
    assert got["to"] == "2026-12-03T00:00:00+00:00"


def test_utilisation_and_never_called(config_file: Path, audit_file: Path) -> None:
    datasets = {d["dataset"]: d for d in report(config_file, audit_file)["datasets"]}
    accounts = datasets["accounts"]
    # The owner, the department of the policy row, and the one an approved request granted.
    assert accounts["catalogued_consumers"] == ["civil-affairs", "human-resources", "taxation"]
    assert (accounts["calls"], accounts["consumers_served"]) == (7, ["taxation"])
    assert accounts["utilisation"] == 0.3333
    register = datasets["register"]  # unconditional: every listed department
    assert register["catalogued_consumers"] == EVERYONE
    assert (register["consumers_served"], register["utilisation"]) == (
        ["statistics", "taxation"],
        0.4,
    )
    medical = datasets["medical"]
    assert (medical["catalogued_consumers"], medical["calls"], medical["utilisation"]) == (
        ["health"],
        0,
        0.0,
    )
    assert report(config_file, audit_file)["never_called"] == ["medical"]


def test_catalogued_consumers_by_sharing(config_file: Path) -> None:
    bundle = load_bundle(config_file.parent / "policies", 0.0)
    assert catalogued_consumers(bundle, "medical") == {"health"}
    assert catalogued_consumers(bundle, "accounts") == {"human-resources", "civil-affairs"}


def test_live_counters_give_the_audit_logs_figures(config_file: Path, audit_file: Path) -> None:
    """The dashboard's sink sees the final events (a streamed one once, at its end)."""
    bundle = load_bundle(config_file.parent / "policies", 0.0)
    live = Usage(keep_days=31)
    for record in audit_records([audit_file]):
        live.add(record)
    assert live.report(START, END, bundle, {})["rows"] == ROWS


def test_live_counters_forget_old_days() -> None:
    live = Usage(keep_days=2)
    live.add({"dataset": "x", "ts": "2026-12-01T00:00:00+00:00", "decision": "allow"})
    live.add({"dataset": "x", "ts": "2026-12-05T00:00:00+00:00", "decision": "allow"})
    assert [k[0] for k in live._cells] == ["2026-12-05"]


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["report", "usage", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_cli_in_csv(capsys, config_file: Path, audit_file: Path) -> None:
    code, out, _ = cli(
        capsys,
        *("--config", str(config_file), "--audit", str(audit_file)),
        *("--from", "2026-12-01", "--to", "2026-12-03", "--format", "csv"),
    )
    assert code == 0
    rows_part, datasets_part = out.split("\n\n")
    rows = list(csv.DictReader(io.StringIO(rows_part)))
    assert [(r["day"], r["dataset"], r["department"], r["calls"]) for r in rows] == [
        (r["day"], r["dataset"], r["department"], str(r["calls"])) for r in ROWS
    ]
    assert rows[1]["refusals"] == "default_deny=1;per_principal=1"
    assert rows[3]["bytes"] == "50000"
    datasets = list(csv.DictReader(io.StringIO(datasets_part)))
    assert [(d["dataset"], d["utilisation"]) for d in datasets] == [
        ("accounts", "0.3333"),
        ("register", "0.4"),
        ("medical", "0.0"),
    ]


def test_the_cli_in_json_is_reproducible(capsys, config_file: Path, audit_file: Path) -> None:
    args = (
        "--config",
        str(config_file),
        "--audit",
        str(audit_file),
        "--from",
        "2026-12-01",
        "--to",
        "2026-12-03",
        "-o",
        "json",
    )
    first, second = cli(capsys, *args)[1], cli(capsys, *args)[1]
    assert first == second and '"never_called": [\n    "medical"\n  ]' in first


def test_the_cli_table_and_chart(capsys, config_file: Path, audit_file: Path, tmp_path) -> None:
    chart = tmp_path / "usage.png"
    code, out, _ = cli(
        capsys,
        *("--config", str(config_file), "--audit", str(audit_file)),
        *("--from", "2026-12-01", "--to", "2026-12-03", "--chart", str(chart)),
    )
    assert code == 0
    assert out.splitlines()[0].split()[:4] == ["DAY", "DATASET", "DEPARTMENT", "CALLS"]
    assert "never called 2026-12-01 .. 2026-12-03: medical" in out
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_two_worker_files(config_file: Path, tmp_path: Path) -> None:
    records = known_log()
    one = write_log(tmp_path / "audit.w0.jsonl", records[:10])
    two = write_log(tmp_path / "audit.w1.jsonl", records[10:])
    bundle = load_bundle(config_file.parent / "policies", 0.0)
    both = list(audit_records([one, two]))
    usage = Usage()
    for record in both:
        usage.add(record)
    assert usage.report(START, END, bundle, grants_in(both, START, END))["rows"] == ROWS


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--from", "yesterday"), "--from: expected a date (2026-12-01) or ISO 8601 time"),
        (("--from", "2026-12-01T08:00"), "--from: a time needs a UTC offset"),
        (("--from", "2026-12-03", "--to", "2026-12-01"), "--to: must be later than --from"),
        (("--audit", "/nonexistent.jsonl"), "--audit: no such file: /nonexistent.jsonl"),
    ],
)
def test_bad_arguments(capsys, config_file: Path, args, message) -> None:
    code, _, err = cli(capsys, "--config", str(config_file), *args)
    assert code == 2
    assert message in err
