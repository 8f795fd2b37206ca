"""Incidents on both state backends: dedup, workflow, filters, escalation, store outages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from gateway.errors import StateUnavailable
from gateway.incidents import model
from gateway.incidents.config import FileSinkConfig, IncidentsConfig
from gateway.incidents.model import WorkflowError
from gateway.incidents.service import IncidentNotFound, Incidents
from gateway.incidents.sinks import FileSink, Sinks
from gateway.state import RedisBackend, StateBackend
from tests.incidents.conftest import Clock, Finding, RedisServer, free_port
from tests.incidents.ocsf import ocsf_errors


def file_lines(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines()] if path.exists() else []


@pytest.fixture
async def incidents(
    backend: StateBackend, clock: Clock, tmp_path: Path
) -> AsyncIterator[Incidents]:
    sinks = Sinks([FileSink(FileSinkConfig(path=tmp_path / "incidents.jsonl"))])
    service = Incidents(backend, IncidentsConfig(escalation_interval=3600), sinks, clock)
    await service.start()
    yield service
    await service.close()


async def test_repeats_within_the_window_update_one_incident(
    incidents: Incidents, clock: Clock, tmp_path: Path
) -> None:
    first = await incidents.raise_detection(Finding(), request_id="r-10")
    for n in range(4):
        clock.advance(60)
        again = await incidents.raise_detection(Finding(), request_id=f"r-{11 + n}")
    uid = first["finding_info"]["uid"]
    assert again["finding_info"]["uid"] == uid and again["count"] == 5
    assert (await incidents.get(uid))["count"] == 5
    other = await incidents.raise_detection(Finding(principal="bob"))
    assert other["finding_info"]["uid"] != uid
    await incidents.close()
    counts = [i["count"] for i in file_lines(tmp_path / "incidents.jsonl")]
    assert counts == [1, 2, 4, 1]  # repeats reach the sinks at powers of two


async def test_a_repeat_after_the_window_or_resolution_raises_a_new_one(
    incidents: Incidents, clock: Clock
) -> None:
    first = await incidents.raise_detection(Finding())
    clock.advance(incidents.config.dedup_window + 1)
    second = await incidents.raise_detection(Finding())
    assert second["finding_info"]["uid"] != first["finding_info"]["uid"]
    await incidents.resolve(second["finding_info"]["uid"], "soc", "handled")
    third = await incidents.raise_detection(Finding())
    assert third["finding_info"]["uid"] not in {
        first["finding_info"]["uid"],
        second["finding_info"]["uid"],
    }


async def test_workflow_and_errors(incidents: Incidents) -> None:
    uid = (await incidents.raise_detection(Finding()))["finding_info"]["uid"]
    acked = await incidents.acknowledge(uid, "soc-ann", "on it")
    assert acked["unmapped"]["workflow"]["state"] == "acknowledged"
    with pytest.raises(WorkflowError, match="incident is already acknowledged"):
        await incidents.acknowledge(uid, "soc-ann")
    with pytest.raises(WorkflowError, match="note: resolving an incident requires a note"):
        await incidents.resolve(uid, "soc-ann", "")
    with pytest.raises(IncidentNotFound):
        await incidents.acknowledge("inc-missing", "soc")
    with pytest.raises(IncidentNotFound):
        await incidents.get("inc-missing")


async def test_filters(incidents: Incidents, clock: Clock) -> None:
    a = await incidents.raise_detection(Finding(severity=2))
    clock.advance(10)
    b = await incidents.raise_detection(
        Finding(rule="enumeration", principal="bob", dataset="medical", severity=5)
    )
    await incidents.acknowledge(b["finding_info"]["uid"], "soc")
    ids = lambda xs: [x["finding_info"]["uid"] for x in xs]  # noqa: E731
    a_id, b_id = a["finding_info"]["uid"], b["finding_info"]["uid"]
    assert ids(await incidents.search()) == [b_id, a_id]
    assert ids(await incidents.search(status="new")) == [a_id]
    assert ids(await incidents.search(min_severity=4)) == [b_id]
    assert ids(await incidents.search(principal="alice")) == [a_id]
    assert ids(await incidents.search(dataset="medical")) == [b_id]
    assert ids(await incidents.search(since=clock.now - 5)) == [b_id]


async def test_escalation_when_the_deadline_passes_unhandled(
    incidents: Incidents, clock: Clock, tmp_path: Path
) -> None:
    late = await incidents.raise_detection(Finding())
    handled = await incidents.raise_detection(Finding(principal="bob"))
    await incidents.acknowledge(handled["finding_info"]["uid"], "soc")
    clock.advance(7199)
    assert await incidents.escalate_overdue() == []
    clock.advance(1)
    [escalated] = await incidents.escalate_overdue()
    assert escalated["finding_info"]["uid"] == late["finding_info"]["uid"]
    assert (
        escalated["unmapped"]["escalation"]["reason"]
        == "handling deadline passed without acknowledgement"
    )
    assert await incidents.escalate_overdue() == []  # only once
    await incidents.close()
    assert "escalation" in file_lines(tmp_path / "incidents.jsonl")[-1]["unmapped"]


async def test_a_store_outage_still_sends_the_incident_to_the_sinks(
    clock: Clock, tmp_path: Path
) -> None:
    dead = RedisBackend(f"redis://127.0.0.1:{free_port()}/0", "t:", timeout=0.1)
    sinks = Sinks([FileSink(FileSinkConfig(path=tmp_path / "incidents.jsonl"))])
    service = Incidents(dead, IncidentsConfig(), sinks, clock)
    await service.start()
    incident = await service.raise_detection(Finding())
    assert incident["unmapped"]["stored"] is False
    with pytest.raises(StateUnavailable):
        await service.search()
    await service.close()
    await dead.close()
    [line] = file_lines(tmp_path / "incidents.jsonl")
    assert line["finding_info"]["uid"] == incident["finding_info"]["uid"]


async def test_repeats_during_a_store_outage_update_one_incident(
    clock: Clock, tmp_path: Path
) -> None:
    """With the store down, dedup goes on in memory: a burst raises one incident per
    dedup_key, not one per request, and still reaches the sinks at powers of two."""
    dead = RedisBackend(f"redis://127.0.0.1:{free_port()}/0", "t:", timeout=0.1)
    sinks = Sinks([FileSink(FileSinkConfig(path=tmp_path / "incidents.jsonl"))])
    service = Incidents(dead, IncidentsConfig(), sinks, clock)
    await service.start()
    raised = []
    for n in range(5):
        clock.advance(1)
        raised.append(await service.raise_detection(Finding(), request_id=f"r-{n}"))
    other = await service.raise_detection(Finding(principal="bob"))
    clock.advance(service.config.dedup_window + 1)
    later = await service.raise_detection(Finding())
    await service.close()
    await dead.close()
    assert {i["finding_info"]["uid"] for i in raised} == {raised[0]["finding_info"]["uid"]}
    assert raised[-1]["count"] == 5 and raised[-1]["unmapped"]["stored"] is False
    assert {f"r-{n}" for n in range(5)} <= set(
        raised[-1]["evidences"][0]["data"]["sample_request_ids"]
    )
    assert other["finding_info"]["uid"] != raised[0]["finding_info"]["uid"]
    assert later["finding_info"]["uid"] != raised[0]["finding_info"]["uid"]
    lines = file_lines(tmp_path / "incidents.jsonl")
    assert [(line["unmapped"]["ecs"]["user"]["id"], line["count"]) for line in lines] == [  # type: ignore[index]
        ("alice", 1),
        ("alice", 2),
        ("alice", 4),
        ("bob", 1),
        ("alice", 1),
    ]


async def test_two_processes_raising_the_same_detection_share_one_incident(
    redis_url: str, redis_prefix: str, clock: Clock
) -> None:
    backends = [RedisBackend(redis_url, redis_prefix) for _ in range(2)]
    one, two = (Incidents(b, IncidentsConfig(file=None), Sinks([]), clock) for b in backends)
    a = await one.raise_detection(Finding())
    b = await two.raise_detection(Finding())
    assert a["finding_info"]["uid"] == b["finding_info"]["uid"] and b["count"] == 2
    for backend in backends:
        await backend.close()


async def test_incidents_raised_during_an_outage_are_stored_once_it_ends(
    clock: Clock, tmp_path: Path, redis_server: RedisServer
) -> None:
    """The SOC's list and the CLI show them too, and a repeat after the outage updates the
    incident raised during it rather than raising a second one."""
    backend = RedisBackend(redis_server.url, "t:", timeout=0.2)
    sinks = Sinks([FileSink(FileSinkConfig(path=tmp_path / "incidents.jsonl"))])
    service = Incidents(backend, IncidentsConfig(), sinks, clock)
    await service.start()
    await redis_server.stop()
    during = await service.raise_detection(Finding())
    assert during["unmapped"]["stored"] is False
    with pytest.raises(StateUnavailable):
        await service.store_unstored()
    await redis_server.start()
    assert await service.store_unstored() == 1
    [listed] = await service.search()
    assert listed["finding_info"]["uid"] == during["finding_info"]["uid"]
    assert "stored" not in listed["unmapped"] and ocsf_errors(listed) == []
    clock.advance(1)
    after = await service.raise_detection(Finding())
    assert after["finding_info"]["uid"] == during["finding_info"]["uid"] and after["count"] == 2
    assert await service.store_unstored() == 0
    await service.close()
    await backend.close()


async def test_an_incident_an_older_version_stored_is_listed_and_handled(
    incidents: Incidents, backend: StateBackend
) -> None:
    legacy = Path(__file__).with_name("data") / "incident-before-ocsf-1.5.json"
    old = orjson.loads(legacy.read_bytes())
    uid = old["finding_info"]["uid"]
    await backend.hset("incidents", uid, legacy.read_bytes().strip())
    [listed] = await incidents.search(principal="alice", status="acknowledged")
    assert listed["finding_info"]["uid"] == uid and ocsf_errors(listed) == []
    resolved = await incidents.resolve(uid, "soc-bob", "approved export")
    assert model.state_of(resolved) == "resolved" and ocsf_errors(resolved) == []
    assert "unmapped" in orjson.loads(await backend.hget("incidents", uid) or b"{}")
