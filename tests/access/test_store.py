"""The access-request store on both state backends: the same answers, atomic transitions
between two processes sharing one Redis (for memory, the one process's state)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.access.config import AccessConfig
from gateway.access.model import AccessError
from gateway.access.service import AccessRequests
from gateway.identity.principal import Principal
from gateway.incidents.sinks import Sinks
from gateway.policy.catalog import parse_catalog
from gateway.policy.config import GrantLifetimes
from gateway.policy.grants import GrantStore
from gateway.state.base import StateBackend
from tests.access.conftest import CATALOG, START, Clock

REQUESTER = Principal("auditor-he", "taxation", 2)
OFFICER = Principal("officer-hr", "human-resources", 3, frozenset({"data-officer"}))
OTHER_OFFICER = Principal("officer-hr2", "human-resources", 3, frozenset({"data-officer"}))
BODY = {
    "dataset": "accounts",
    "actions": ["read", "list"],
    "purpose": "tax-audit",
    "duration": 3600,
    "justification": "case 7",
}


class Audit(list):
    def __call__(self, record: dict[str, Any]) -> None:
        self.append(record)


def service(backend: StateBackend, clock: Clock, audit: Audit) -> AccessRequests:
    catalog = parse_catalog(CATALOG)
    grants = GrantStore(backend, catalog=lambda: catalog, lifetimes=GrantLifetimes(), clock=clock)
    return AccessRequests(
        backend,
        config=AccessConfig(decision_deadline=600),
        catalog=lambda: catalog,
        lifetimes=GrantLifetimes(),
        grants=grants,
        clock=clock,
        events=Sinks([]),
        audit=audit,
    )


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


async def test_create_read_and_search(backend: StateBackend, clock: Clock) -> None:
    audit = Audit()
    access = service(backend, clock, audit)
    created = await access.create(BODY, REQUESTER)
    assert await access.get(created["id"], REQUESTER) == created
    assert await access.search(OFFICER, state="pending") == [created]
    assert await access.search(OFFICER, state="approved") == []
    assert await access.search(Principal("x", "health", 1)) == []
    assert [r["step"] for r in audit] == ["request"]
    assert audit[0]["request"]["id"] == created["id"]


async def test_racing_processes_leave_one_outcome(
    backend: StateBackend, peer: StateBackend, clock: Clock
) -> None:
    one, two = service(backend, clock, Audit()), service(peer, clock, Audit())
    for _ in range(5):
        rid = (await one.create(BODY, REQUESTER))["id"]
        results = await asyncio.gather(
            one.approve(rid, OFFICER, ""),
            two.approve(rid, OTHER_OFFICER, ""),
            two.withdraw(rid, REQUESTER, ""),
            return_exceptions=True,
        )
        winners = [r for r in results if isinstance(r, dict)]
        losers = [r for r in results if isinstance(r, AccessError)]
        assert len(winners) == 1 and len(losers) == 2, results
        assert {e.reason for e in losers} <= {"not_pending"}
        final = await one.get(rid, REQUESTER)
        assert final["state"] == winners[0]["state"]
    await one._grants.refresh()
    approved = [r for r in await one.search(OFFICER) if r["state"] == "approved"]
    assert len(one._grants.all_grants()) == len(approved)


async def test_lapse_and_expire_are_reported_once(
    backend: StateBackend, peer: StateBackend, clock: Clock
) -> None:
    audits = Audit(), Audit()
    one, two = service(backend, clock, audits[0]), service(peer, clock, audits[1])
    waiting = (await one.create(BODY, REQUESTER))["id"]
    approved = (await one.create(BODY, REQUESTER))["id"]
    await one.approve(approved, OFFICER, "")
    clock.advance(3600)
    assert sorted(await asyncio.gather(one.sweep(), two.sweep())) in ([0, 2], [1, 1])
    states = {r["id"]: r["state"] for r in await one.search(OFFICER)}
    assert states == {waiting: "lapsed", approved: "expired"}
    steps = [r["step"] for audit in audits for r in audit if r["step"] in ("lapse", "expire")]
    assert sorted(steps) == ["expire", "lapse"]
    assert await one.sweep() == 0
