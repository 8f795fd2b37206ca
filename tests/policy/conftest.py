"""Fixtures for the policy tests: a private copy of the shipped policy and a fixed clock."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.identity.principal import Principal
from gateway.policy.bundle import PolicyBundle, load_bundle

SHIPPED = Path(__file__).resolve().parents[2] / "policies"
# Monday 2026-01-05 10:00 UTC: inside the shipped office-hours rows.
MONDAY_10 = datetime(2026, 1, 5, 10, tzinfo=UTC).timestamp()


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    """A writable copy of the shipped policies/ directory."""
    target = tmp_path / "policies"
    shutil.copytree(SHIPPED, target)
    return target


def bundle_with(directory: Path, policy_csv: str | None = None) -> PolicyBundle:
    """The bundle in `directory`, optionally with policy.csv replaced first."""
    if policy_csv is not None:
        (directory / "policy.csv").write_text(policy_csv)
    return load_bundle(directory, MONDAY_10)


def who(sub: str, dept: str, clearance: int, *roles: str) -> Principal:
    return Principal(sub, dept, clearance, frozenset(roles))
