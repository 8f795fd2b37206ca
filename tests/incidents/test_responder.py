"""Detections and outcomes into incidents and trips, through the suspension stage."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from gateway.breaker.config import BreakerConfig
from gateway.breaker.store import Breakers
from gateway.errors import GatewayError
from gateway.incidents.config import FileSinkConfig, IncidentsConfig
from gateway.incidents.responder import Responder
from gateway.incidents.service import Incidents
from gateway.incidents.sinks import FileSink, Sinks
from gateway.stages.suspension import PROBES_KEY, SuspensionStage
from gateway.state import MemoryBackend
from tests.breaker.conftest import make_ctx
from tests.incidents.conftest import Clock, Finding

CFG = BreakerConfig(
    cooldown_base=60.0,
    half_open_probes=1,
    anomaly_min_requests=10,
    anomaly_rate=0.5,
    trip_severity=4,
    stale_after=10_000.0,
)


@dataclasses.dataclass
class World:
    responder: Responder
    stage: SuspensionStage
    incidents: Incidents
    clock: Clock
    file: Path


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    clock = Clock()
    backend = MemoryBackend()
    file = tmp_path / "incidents.jsonl"
    incidents = Incidents(
        backend, IncidentsConfig(), Sinks([FileSink(FileSinkConfig(path=file))]), clock
    )
    breakers = Breakers(backend, CFG, clock)
    await breakers.start()
    await incidents.start()
    yield World(
        Responder(breakers, incidents, CFG), SuspensionStage(breakers, CFG), incidents, clock, file
    )
    await incidents.close()
    await breakers.close()
    await backend.close()


async def test_a_high_severity_detection_trips_at_once_and_links_the_incident(
    world: World,
) -> None:
    ctx = make_ctx(now=world.clock.now)
    await world.responder.on_detections(ctx, [Finding(severity=2, rule="off_hours"), Finding()])
    incident = await world.incidents.get(ctx.incident_id or "")
    assert incident["finding_info"]["analytic"]["name"] == "bulk_export"
    assert incident["unmapped"]["breaker"]["scope"] == "principal"
    with pytest.raises(GatewayError) as err:
        await world.stage(make_ctx(now=world.clock.now))
    assert err.value.extra == {"incident_id": ctx.incident_id}
    await world.incidents.close()
    lines = [orjson.loads(x) for x in world.file.read_bytes().splitlines()]
    assert lines[-1]["unmapped"]["breaker"]["key"] == "alice"


async def test_a_low_severity_detection_raises_an_incident_without_tripping(
    world: World,
) -> None:
    ctx = make_ctx(now=world.clock.now)
    await world.responder.on_detections(ctx, [Finding(severity=3)])
    assert ctx.incident_id is not None
    await world.stage(make_ctx(now=world.clock.now))


async def test_three_anomalous_requests_never_trip_but_a_sustained_rate_does(
    world: World,
) -> None:
    for _ in range(3):
        await world.responder.on_outcome(make_ctx(now=world.clock.now), anomalous=True)
    await world.stage(make_ctx(now=world.clock.now))
    for n in range(7):
        world.clock.advance(1)
        await world.responder.on_outcome(make_ctx(now=world.clock.now), anomalous=n % 2 == 0)
    with pytest.raises(GatewayError) as err:
        await world.stage(make_ctx(now=world.clock.now))
    incident = await world.incidents.get(err.value.extra["incident_id"])
    assert incident["finding_info"]["analytic"]["name"] == "anomaly_rate"
    assert incident["evidences"][0]["data"]["observed"] == {"anomaly_rate": 0.7, "requests": 10}


@dataclasses.dataclass(frozen=True)
class IpFinding(Finding):
    """A finding about a client IP (a failed-authentication burst), not about a principal."""

    rule: str = "auth_failures"
    scope: str = "client_ip"


async def test_findings_about_a_shared_client_ip_never_trip_its_principals(
    world: World,
) -> None:
    """A burst of bad tokens from an address that legitimate callers share (a NAT, a proxy)
    marks each of their requests with the IP's finding: that must not count against them
    in the anomaly-rate window, or one attacker suspends everybody behind the address."""
    for _ in range(2 * CFG.anomaly_min_requests):
        world.clock.advance(0.5)
        ctx = make_ctx(now=world.clock.now)
        ctx.detections = [IpFinding(severity=4)]
        await world.responder.on_outcome(ctx)
    await world.stage(make_ctx(now=world.clock.now))  # not suspended
    for _ in range(3 * CFG.anomaly_min_requests):
        world.clock.advance(0.5)
        ctx = make_ctx(now=world.clock.now)
        ctx.detections = [Finding(severity=4)]  # about the principal: this one counts
        await world.responder.on_outcome(ctx)
    with pytest.raises(GatewayError) as err:
        await world.stage(make_ctx(now=world.clock.now))
    assert err.value.code == "sharing_suspended"


async def test_a_clean_probe_closes_and_a_bad_probe_reopens(world: World) -> None:
    await world.responder.on_detections(make_ctx(now=world.clock.now), [Finding()])
    world.clock.advance(61)
    probe = make_ctx(now=world.clock.now)
    await world.stage(probe)
    assert probe.extra[PROBES_KEY] == ["principal:alice"]
    await world.responder.on_outcome(probe, anomalous=True)
    with pytest.raises(GatewayError) as err:
        await world.stage(make_ctx(now=world.clock.now))
    assert err.value.headers["Retry-After"] == "120"  # doubled
    world.clock.advance(121)
    probe = make_ctx(now=world.clock.now)
    await world.stage(probe)
    await world.responder.on_outcome(probe, anomalous=False)
    await world.stage(make_ctx(now=world.clock.now))  # closed again


async def test_lower_confidence_findings_raise_incidents_but_never_suspend(
    world: World,
) -> None:
    """Issue 12 item 7: below trip_severity a finding raises an incident; however many
    requests carry it, the anomaly-rate rule does not turn it into a suspension."""
    for _ in range(3 * CFG.anomaly_min_requests):
        world.clock.advance(0.5)
        ctx = make_ctx(now=world.clock.now)
        ctx.detections = [Finding(severity=3)]
        await world.responder.on_detections(ctx, ctx.detections)
        await world.responder.on_outcome(ctx)
    await world.stage(make_ctx(now=world.clock.now))  # not suspended


@dataclasses.dataclass(frozen=True)
class AddressFinding(Finding):
    """A severe finding about an address (the detector's auth_failures)."""

    rule: str = "auth_failures"
    scope: str = "address"
    key: str = "10.0.0.1"
    principal: str | None = None


async def test_a_severe_address_finding_trips_the_address_not_the_principal(
    world: World,
) -> None:
    ctx = make_ctx(now=world.clock.now)
    await world.responder.on_detections(ctx, [AddressFinding(severity=4)])
    states = {s.field: s.state for s in await world.responder.breakers.list_all()}
    assert states == {"address:10.0.0.1": "open"}
