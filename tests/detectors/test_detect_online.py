"""The online detector: rules from the first request, record(), batches, and the model path."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from detectors.config import DetectionConfig, ModelSettings
from detectors.events import AccessEvent
from detectors.model import DetectorModel
from detectors.online import Detector, ModelResult
from detectors.rules import HighFrequency

T0 = 1_773_972_000.0  # Friday 10:00 in Asia/Shanghai
NIGHT = T0 + 16 * 3600  # Saturday 02:00


def _event(ts: float, n: int = 0, **changes: object) -> AccessEvent:
    event = AccessEvent(
        ts=ts,
        request_id=f"r{n}",
        client_ip="10.1.1.1",
        method="GET",
        path=f"/api/population/persons/{1000 + n * 7919 % 5000}",
        principal="alice",
        department="statistics",
        user_agent="browser",
        token_id="tok-a",
        dataset="population",
        level=3,
        status=200,
        records_out=1,
        bytes_out=300,
    )
    for key, value in changes.items():
        setattr(event, key, value)
    if "path" in changes:
        event.record_id = str(changes["path"]).rsplit("/", 1)[-1]
    else:
        event.record_id = event.path.rsplit("/", 1)[-1]
    return event


def _rules(detector: Detector, events: list[AccessEvent]) -> set[str]:
    fired: set[str] = set()
    for event in events:
        fired.update(d.rule for d in detector.observe(event).detections)
        fired.update(d.rule for d in detector.record(event, observed=True).detections)
    return fired


def test_quiet_traffic_fires_nothing() -> None:
    detector = Detector(DetectionConfig())
    assessment = detector.observe(_event(T0))
    assert assessment.score == 0 and not assessment.anomalous and assessment.act == []


def test_high_frequency_ceiling_from_the_first_requests() -> None:
    config = DetectionConfig(high_frequency=HighFrequency.Config(per_minute=30))
    detector = Detector(config)
    results = [detector.observe(_event(T0 + i * 0.5, i, path="/api/x?page=1")) for i in range(40)]
    assert not any(d.rule == "high_frequency" for d in results[28].act)
    act = [d for d in results[29].act if d.rule == "high_frequency"]
    detection = act[0]
    assert detection.severity == 4 and detection.scope == "principal"
    assert detection.actor == "alice"
    assert detection.evidence.observed == {"requests_1m": 30}
    assert detection.evidence.baseline == {"ceiling_1m": 30}
    assert detection.evidence.sample_request_ids[-1] == "r29"
    assert detection.remediation == HighFrequency.remediation
    assert results[29].score == pytest.approx(0.8) and results[29].anomalous


def test_unordered_scraping_is_stopped_by_coverage_from_the_first_request() -> None:
    """Issue 18 item 9: a random-order scrape at ~100 requests/min by a principal nobody
    knows raises an incident within the first minute and suspends before 119 records."""
    detector = Detector(DetectionConfig())
    first_incident = first_suspension = None
    for i in range(284):
        event = _event(T0 + i * 0.6, i, path=f"/api/population/persons/{(i * 7919) % 150000}")
        act = detector.observe(event).act
        if act and first_incident is None:
            first_incident = i
        if any(d.severity >= 4 and d.rule == "coverage" for d in act):
            first_suspension = i
            break
        detector.record(event, observed=True)
    assert first_incident is not None and first_incident < 100
    assert first_suspension is not None and first_suspension < 119


def test_ordinary_reading_raises_nothing() -> None:
    detector = Detector(DetectionConfig())
    fired = _rules(detector, [_event(T0 + i * 240, i) for i in range(25)])
    assert fired == set()


def test_enumeration_of_sequential_ids_and_404s() -> None:
    detector = Detector(DetectionConfig())
    events = [
        _event(T0 + i * 2, i, path=f"/api/population/persons/{5000 + i}", status=404, records_out=0)
        for i in range(30)
    ]
    assert "enumeration" in _rules(detector, events)


def test_a_misconfigured_client_asking_one_missing_record_is_not_enumeration() -> None:
    detector = Detector(DetectionConfig())
    events = [
        _event(T0 + i * 2, i, path="/api/population/persons/77", status=404, records_out=0)
        for i in range(60)
    ]
    assert "enumeration" not in _rules(detector, events)


def _stuffing(detector: Detector, ip: str, start: float, n: int, gap: float) -> list[object]:
    out = []
    for i in range(n):
        event = _event(
            start + i * gap,
            i,
            principal=None,
            department=None,
            token_id=None,
            status=401,
            client_ip=ip,
            records_out=0,
        )
        out.append(detector.record(event, observed=False))
    return out


def test_credential_stuffing_acts_on_the_address() -> None:
    detector = Detector(DetectionConfig())
    fired = _stuffing(detector, "203.0.113.9", T0, 25, 1.0)
    assert not fired[18].act  # type: ignore[attr-defined]
    detection = fired[19].act[0]  # type: ignore[attr-defined]
    assert detection.rule == "auth_failures" and detection.scope == "address"
    assert detection.key == "203.0.113.9" and detection.actor == "ip:203.0.113.9"
    assert detection.principal is None


def test_slow_stuffing_spread_over_a_range_is_seen_per_range() -> None:
    detector = Detector(DetectionConfig())
    hits = []
    for n in range(20):  # twenty addresses of one /24, one attempt a minute each
        for result in _stuffing(detector, f"203.0.113.{n + 1}", T0 + n * 3, 6, 60.0 * 20):
            hits.extend(result.act)  # type: ignore[attr-defined]
    ranged = [d for d in hits if d.key == "203.0.113.0/24"]
    assert ranged and ranged[0].scope == "address"


def test_bulk_export_over_the_peers_and_over_the_ceiling() -> None:
    detector = Detector(DetectionConfig())
    big = _event(T0, 1, path="/api/population/persons.csv", records_out=60000)
    detector.observe(big)
    act = detector.record(big, observed=True).act
    assert act[0].rule == "bulk_export" and act[0].severity == 4
    detector = Detector(DetectionConfig())
    events = [
        _event(T0 + i * 60, i, path="/api/population/persons.csv", records_out=7000)
        for i in range(3)
    ]
    assert "bulk_export" in _rules(detector, events)


def test_a_night_read_of_core_data_raises_an_incident_without_suspending() -> None:
    detector = Detector(DetectionConfig())
    night = detector.observe(_event(NIGHT, 1, level=4, dataset="medical"))
    assert [(d.rule, d.severity) for d in night.act] == [("off_hours", 3)]
    public = detector.observe(_event(NIGHT + 120, 3, dataset="enterprise", level=1))
    assert public.detections == []


def test_a_24_7_department_is_never_off_hours() -> None:
    from gateway.configtree import build

    config = build(
        DetectionConfig,
        {"working_hours": {"departments": {"statistics": {"always": True}}}},
        "detection",
    )
    detector = Detector(config)
    assert detector.observe(_event(NIGHT, 1, level=4)).detections == []


def test_token_in_two_places_at_once() -> None:
    detector = Detector(DetectionConfig())
    events = [
        _event(T0 + i * 20, i, client_ip="10.1.1.1" if i % 2 else "198.51.100.4") for i in range(6)
    ]
    fired = []
    for event in events:
        fired.extend(detector.observe(event).act)
    spread = [d for d in fired if d.rule == "token_spread"]
    assert spread and spread[0].scope == "token" and spread[0].key == "tok-a"
    assert spread[0].severity == 4


def test_moving_once_from_office_to_vpn_is_not_two_places() -> None:
    detector = Detector(DetectionConfig())
    events = [
        _event(T0 + i * 20, i, client_ip="10.1.1.1" if i < 3 else "172.16.0.3") for i in range(6)
    ]
    assert "token_spread" not in _rules(detector, events)


def test_disabled_detection_does_nothing() -> None:
    detector = Detector(DetectionConfig(enabled=False))
    assert detector.observe(_event(T0)).score == 0
    assert detector.record(_event(T0), observed=True).score == 0


def test_without_a_model_it_queues_nothing() -> None:
    detector = Detector(DetectionConfig())
    event = _event(T0)
    detector.observe(event)
    detector.record(event, observed=True)
    assert detector.pending == 0 and detector.score_pending() == []


def test_model_scores_in_batches(trained: DetectorModel, test_events: list[AccessEvent]) -> None:
    seen: list[ModelResult] = []
    detector = Detector(DetectionConfig(), trained, on_result=seen.append)
    events = [e for e in test_events if e.principal is not None][:300]
    for event in events:
        detector.observe(event)
        detector.record(event, observed=True)
    assert detector.pending == 300
    results = detector.score_pending()
    assert results == seen and len(results) == 300 and detector.pending == 0
    assert [r.event for r in results] == events
    assert all(0 < r.raw < 1 and 0 <= r.score <= 1 for r in results)
    assert all((r.detection is not None) == r.anomalous for r in results)


async def test_background_batches_run_off_the_request_path(
    trained: DetectorModel, test_events: list[AccessEvent]
) -> None:
    seen: list[ModelResult] = []
    config = DetectionConfig()
    detector = Detector(config, trained, on_result=seen.append)
    detector.start()
    events = [e for e in test_events if e.principal is not None][:100]
    for event in events:
        detector.observe(event)
        detector.record(event, observed=True)
    assert seen == []  # nothing is scored inside observe/record
    for _ in range(100):
        await asyncio.sleep(0.02)
        if len(seen) == 100:
            break
    await detector.stop()
    assert [r.event for r in seen] == events


async def test_stop_scores_what_is_left(
    trained: DetectorModel, test_events: list[AccessEvent]
) -> None:
    seen: list[ModelResult] = []
    detector = Detector(DetectionConfig(), trained, on_result=seen.append)
    detector.start()
    event = next(e for e in test_events if e.principal is not None)
    detector.observe(event)
    detector.record(event, observed=True)
    await detector.stop()
    assert [r.event for r in seen] == [event]


async def test_a_failing_subscriber_does_not_stop_the_scorer(
    trained: DetectorModel, test_events: list[AccessEvent]
) -> None:
    calls: list[ModelResult] = []

    def flaky(result: ModelResult) -> None:
        calls.append(result)
        if len(calls) == 1:
            raise RuntimeError("subscriber down")

    config = DetectionConfig(model=ModelSettings(batch_size=1, batch_interval_ms=5))
    detector = Detector(config, trained, on_result=flaky)
    events = [e for e in test_events if e.principal is not None][:2]
    with capture_logs() as logs:
        detector.start()
        for event in events:
            detector.observe(event)
            detector.record(event, observed=True)
            for _ in range(50):
                await asyncio.sleep(0.01)
                if detector.pending == 0:
                    break
        await detector.stop()
    assert [e["event"] for e in logs] == ["detector_batch_failed"]
    assert [r.event for r in calls] == events
