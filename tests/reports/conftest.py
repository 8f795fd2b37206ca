"""A generated audit log and incident file with known counts, and a config to read them with."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from gateway.audit.chain import GENESIS, seal
from tests.gateway.conftest import REPO, identity_section

DAY1 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC).timestamp()

CATALOG = """
departments: [human-resources, taxation, statistics, health, civil-affairs]
datasets:
  - {id: accounts, route: /api/accounts/, upstream: up, owner: human-resources, level: 3,
     sharing: conditional, fields: [{name: id_card, level: 3, strategy: resident_id}]}
  - {id: register, route: /api/register/, upstream: up, owner: statistics, level: 1,
     sharing: unconditional, fields: [{name: contact_phone, level: 2, strategy: mobile}]}
  - {id: medical, route: /api/medical/, upstream: up, owner: health, level: 4, sharing: none}
"""
ROWS = "p, dept:civil-affairs, accounts, read|list, allow, benefit-eligibility\n"


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()


def access(ts: float, dataset: str | None, department: str, principal: str, **kw: Any) -> dict:
    event = {
        "type": "access",
        "ts": iso(ts),
        "request_id": kw.pop("request_id", f"r{ts}{principal}{dataset}"),
        "principal": principal,
        "department": department,
        "dataset": dataset,
        "decision": "allow",
        "status": 200,
        "error": None,
        "reason": "policy_allow",
        "bytes_out": 0,
        "records_out": 0,
        "masked_fields": {},
    }
    event.update(kw)
    return event


def known_log() -> list[dict[str, Any]]:
    """Day 1 and 2 are reported; day 3 is outside the period. Counts in the tests' tables."""
    day2, day3 = DAY1 + 86400, DAY1 + 2 * 86400
    records: list[dict[str, Any]] = []
    for i, who in enumerate(["a1", "a1", "a1", "a2", "a2"]):
        records.append(
            access(
                DAY1 + i,
                "register",
                "taxation",
                who,
                records_out=10,
                bytes_out=1000,
                masked_fields={"contact_phone": 10},
            )
        )
    records.append(
        access(
            DAY1 + 10,
            "register",
            "taxation",
            "a1",
            decision="deny",
            status=429,
            error="rate_limited",
            reason="per_principal",
        )
    )
    records.append(
        access(
            DAY1 + 11,
            "register",
            "taxation",
            "a3",
            decision="deny",
            status=403,
            error="forbidden",
            reason="default_deny",
        )
    )
    for i in range(3):
        records.append(
            access(
                DAY1 + 20 + i,
                "accounts",
                "taxation",
                "a1",
                decision="deny",
                status=403,
                error="forbidden",
                reason="default_deny",
            )
        )
    records.append(access(DAY1 + 30, None, "taxation", "a1", status=404, error="not_found"))
    # A streamed export: the figures come with its end record.
    records.append(access(day2, "register", "statistics", "s1", request_id="stream-1"))
    records.append(
        {
            "type": "access_end",
            "ts": iso(day2 + 5),
            "request_id": "stream-1",
            "begin_seq": 0,
            "status": 200,
            "error": None,
            "reason": None,
            "bytes_out": 50000,
            "records_out": 100,
            "masked_fields": {},
        }
    )
    grant = {
        "id": "g-1",
        "principal": "a3",
        "department": None,
        "dataset": "accounts",
        "actions": ["read"],
        "purpose": "tax-audit",
        "not_before": iso(day2),
        "expires_at": iso(day2 + 3600),
        "reason": "x",
        "granted_by": "o1",
        "created_at": iso(day2),
        "clearance": None,
    }
    records.append(
        {"type": "grant", "ts": iso(day2), "action": "add", "grant": grant, "actor": "o1"}
    )
    records.append(
        {
            "type": "access_request",
            "ts": iso(day2),
            "step": "approve",
            "actor": "o1",
            "request": {"id": "ar-1", "department": "taxation", "grant_id": "g-1"},
        }
    )
    for i in range(4):
        records.append(
            access(
                day2 + 60 + i,
                "accounts",
                "taxation",
                "a3",
                records_out=1,
                bytes_out=300,
                masked_fields={"id_card": 1, "name": 1},
                grant_id="g-1",
            )
        )
    for i in range(7):
        records.append(access(day3 + i, "register", "health", "h1", records_out=1))
    return records


def write_log(path: Path, records: list[dict[str, Any]]) -> Path:
    prev = GENESIS
    with open(path, "wb") as fh:
        for seq, record in enumerate(records, start=1):
            line, prev = seal(record, seq, prev)
            fh.write(line)
    return path


@pytest.fixture
def audit_file(tmp_path: Path) -> Path:
    return write_log(tmp_path / "audit.jsonl", known_log())


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "catalog.yaml").write_text(CATALOG)
    (policies / "policy.csv").write_text(ROWS)
    shutil.copy(REPO / "policies" / "model.conf", policies / "model.conf")
    path = tmp_path / "datagate.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "upstreams": {"up": {"url": "http://127.0.0.1:9"}},
                "identity": identity_section(),
                "policy": {"dir": str(policies), "watch": False},
                "data_dir": str(tmp_path / "data"),
            }
        )
    )
    return path


def dump(records: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)
