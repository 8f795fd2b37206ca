"""Temporary grants: validation naming every bad field, lifetime caps, the shared local view."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.policy.catalog import Catalog
from gateway.policy.config import GrantLifetimes
from gateway.policy.grants import GRANTS_HASH, Grant, GrantError, GrantStore, new_grant
from gateway.state.base import StateBackend
from tests.policy.conftest import MONDAY_10, bundle_with

GOOD = {
    "department": "taxation",
    "dataset": "population",
    "actions": ["read", "list"],
    "purpose": "tax-audit",
    "duration": 3600,
    "reason": "case 2026-017",
}


@pytest.fixture
def catalog(policy_dir: Path) -> Catalog:
    return bundle_with(policy_dir).catalog


def _new(catalog: Catalog, body: Any) -> Grant:
    return new_grant(
        body, catalog=catalog, lifetimes=GrantLifetimes(), granted_by="sec-1", now=MONDAY_10
    )


def test_valid_grant(catalog: Catalog) -> None:
    g = _new(catalog, GOOD)
    assert (g.not_before, g.expires_at, g.granted_by) == (MONDAY_10, MONDAY_10 + 3600, "sec-1")
    assert g.actions == {"read", "list"} and g.id.startswith("g-")
    assert Grant.from_json(g.to_json()) == g


@pytest.mark.parametrize(
    "change, problems",
    [
        ({"dataset": "nope"}, ["dataset: unknown dataset 'nope'"]),
        (
            {"dataset": "medical"},
            ["dataset: 'medical' has sharing none: only its owner department may use it"],
        ),
        (
            {"actions": ["read", "delete"]},
            ["actions: expected a non-empty list of read, list, export, write"],
        ),
        ({"actions": []}, ["actions: expected a non-empty list of read, list, export, write"]),
        ({"purpose": None}, ["purpose: is required"]),
        ({"reason": " "}, ["reason: is required (why this grant is needed)"]),
        ({"principal": "u1"}, ["principal/department: give exactly one of them"]),
        ({"department": None}, ["principal/department: give exactly one of them"]),
        (
            {"department": "a b"},
            ["department: expected a name (letters, digits, _ . @ -), got 'a b'"],
        ),
        ({"colour": "red"}, ["colour: unknown field"]),
        ({"clearance": 5}, ["clearance: expected an integer 1..4, got 5"]),
        ({"dataset": "enterprise", "clearance": 2}, ["clearance: must be <= the dataset level 1"]),
        ({"duration": -5}, ["duration: expected seconds > 0, got -5"]),
        (
            {"expires_at": "2026-01-06T10:00:00+00:00"},
            ["expires_at/duration: give exactly one of them"],
        ),
        (
            {"duration": None, "expires_at": "2026-01-05 11:00"},
            ["expires_at: needs a UTC offset (e.g. +08:00 or Z): '2026-01-05 11:00'"],
        ),
        (
            {"duration": None, "expires_at": "tomorrow"},
            ["expires_at: not an ISO 8601 time: 'tomorrow'"],
        ),
        (
            {"duration": None, "expires_at": MONDAY_10 - 1},
            ["expires_at: must be later than now and than not_before"],
        ),
        ({"not_before": "soon"}, ["not_before: not an ISO 8601 time: 'soon'"]),
    ],
)
def test_bad_fields_are_named(
    catalog: Catalog, change: dict[str, Any], problems: list[str]
) -> None:
    body = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    with pytest.raises(GrantError) as err:
        _new(catalog, body)
    assert err.value.problems == problems


def test_every_bad_field_is_reported_at_once(catalog: Catalog) -> None:
    with pytest.raises(GrantError) as err:
        _new(catalog, {"dataset": "nope", "actions": "read", "extra": 1})
    assert err.value.problems == [
        "extra: unknown field",
        "principal/department: give exactly one of them",
        "dataset: unknown dataset 'nope'",
        "purpose: is required",
        "actions: expected a non-empty list of read, list, export, write",
        "reason: is required (why this grant is needed)",
        "expires_at/duration: give exactly one of them",
    ]


def test_not_a_json_object(catalog: Catalog) -> None:
    with pytest.raises(GrantError, match="body: expected a JSON object"):
        _new(catalog, ["x"])


@pytest.mark.parametrize(
    "dataset, seconds, ok",
    [
        ("population", 72 * 3600, True),
        ("population", 72 * 3600 + 1, False),
        ("enterprise", 30 * 86400, True),
        ("enterprise", 30 * 86400 + 1, False),
    ],
)
def test_lifetime_is_capped_per_level(
    catalog: Catalog, dataset: str, seconds: int, ok: bool
) -> None:
    body = {**GOOD, "dataset": dataset, "duration": seconds}
    if ok:
        assert _new(catalog, body).expires_at == MONDAY_10 + seconds
        return
    with pytest.raises(GrantError) as err:
        _new(catalog, body)
    (problem,) = err.value.problems
    assert problem.startswith("expires_at: a grant on level-") and "may last at most" in problem


def test_lifetime_cap_is_configurable(catalog: Catalog) -> None:
    with pytest.raises(
        GrantError, match=r"level-3 dataset 'population' may last at most 1 h \(asked 2 h\)"
    ):
        new_grant(
            {**GOOD, "duration": 7200},
            catalog=catalog,
            lifetimes=GrantLifetimes(sensitive=3600),
            granted_by="x",
            now=MONDAY_10,
        )


async def test_store_add_revoke_and_peer_view(
    catalog: Catalog, backend: StateBackend, peer: StateBackend
) -> None:
    changes: list[tuple[str, str, str]] = []
    clock = lambda: MONDAY_10  # noqa: E731
    here = GrantStore(
        backend,
        catalog=lambda: catalog,
        lifetimes=GrantLifetimes(),
        clock=clock,
        on_change=lambda action, grant, actor: changes.append((action, grant.id, actor)),
    )
    there = GrantStore(peer, catalog=lambda: catalog, lifetimes=GrantLifetimes(), clock=clock)
    refreshed: list[int] = []
    there.on_refresh(lambda: refreshed.append(there.version))
    await here.start()
    await there.start()
    try:
        grant = await here.add(GOOD, "sec-1")
        assert here.for_dataset("population") == (grant,)
        assert changes == [("add", grant.id, "sec-1")]
        for _ in range(100):
            if there.get(grant.id):
                break
            await asyncio.sleep(0.02)
        assert there.get(grant.id) == grant and refreshed
        assert await here.revoke(grant.id, "sec-2") == grant
        assert await here.revoke(grant.id, "sec-2") is None
        assert changes[-1] == ("revoke", grant.id, "sec-2")
        for _ in range(100):
            if not there.for_dataset("population"):
                break
            await asyncio.sleep(0.02)
        assert there.for_dataset("population") == ()
    finally:
        await here.close()
        await there.close()


async def test_unreadable_stored_grant_is_skipped(catalog: Catalog, backend: StateBackend) -> None:
    await backend.hset(GRANTS_HASH, "g-bad", b"{not json")
    store = GrantStore(
        backend, catalog=lambda: catalog, lifetimes=GrantLifetimes(), clock=lambda: MONDAY_10
    )
    await store.refresh()
    assert store.all_grants() == []
