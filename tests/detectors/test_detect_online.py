"""The online detector: rules from the first request, record(), batches, and the model path."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from detectors.config import DetectionConfig, HighFrequency, ModelSettings
from detectors.events import AccessEvent
from detectors.model import DetectorModel
from detectors.online import Detector, ModelResult

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


def test_high_frequency_from_the_first_requests() -> None:
    config = DetectionConfig(high_frequency=HighFrequency(per_minute=30))
    detector = Detector(config)
    results = [detector.observe(_event(T0 + i * 0.5, i)) for i in range(40)]
    assert not results[28].act
    act = results[29].act
    assert [d.rule for d in act][:1] == ["high_frequency"]
    detection = act[0]
    assert detection.severity == 4 and detection.scope in ("client_ip", "principal")
    assert detection.evidence.observed == {"requests_1m": 30}
    assert detection.evidence.baseline == {"limit_1m": 30}
    assert detection.evidence.sample_request_ids[-1] == "r29"
    assert results[29].score == pytest.approx(0.8) and results[29].anomalous
    assert detection.dedup_key.startswith("high_frequency:")
    assert detection.to_dict()["evidence"]["features"]["requests_1m"] == 30


def test_enumeration_of_sequential_ids_and_404s() -> None:
    detector = Detector(DetectionConfig())
    events = [
        _event(T0 + i * 2, i, path=f"/api/population/persons/{5000 + i}", status=404, records_out=0)
        for i in range(30)
    ]
    assert "enumeration" in _rules(detector, events)


def test_credential_stuffing_is_seen_per_ip_without_a_principal() -> None:
    detector = Detector(DetectionConfig())
    fired = []
    for i in range(25):
        event = _event(
            T0 + i,
            i,
            principal=None,
            department=None,
            token_id=None,
            status=401,
            client_ip="203.0.113.9",
            records_out=0,
        )
        fired.append(detector.record(event, observed=False))
    assert not fired[18].act
    assert fired[19].act[0].rule == "auth_failures"
    assert fired[19].act[0].key == "203.0.113.9"
    assert "alice" not in detector.principals


def test_bulk_export_in_one_response_and_over_an_hour() -> None:
    detector = Detector(DetectionConfig())
    big = _event(T0, 1, path="/api/population/persons.csv", records_out=12000)
    detector.observe(big)
    assert detector.record(big, observed=True).act[0].rule == "bulk_export"
    detector = Detector(DetectionConfig())
    events = [
        _event(T0 + i * 60, i, path="/api/population/persons.csv", records_out=7000)
        for i in range(3)
    ]
    assert "bulk_export" in _rules(detector, events)


def test_off_hours_severity_depends_on_what_happens() -> None:
    detector = Detector(DetectionConfig())
    first = _event(NIGHT, 1)
    plain = detector.observe(first)
    assert [d.severity for d in plain.detections] == [2]  # no history: nothing is "new"
    assert not plain.anomalous and plain.act == []
    detector.record(first, observed=True)  # unflagged traffic makes IP and agent familiar
    stranger = detector.observe(
        _event(NIGHT + 60, 2, client_ip="198.51.100.7", user_agent="curl/8", token_id="tok-b")
    )
    assert stranger.act[0].rule == "off_hours" and stranger.act[0].severity == 3
    public = detector.observe(_event(NIGHT + 120, 3, dataset="enterprise", level=1))
    assert public.detections == []


def test_a_new_ip_at_night_is_enough_even_with_a_familiar_client() -> None:
    detector = Detector(DetectionConfig())
    first = _event(T0, 1)
    detector.observe(first)
    detector.record(first, observed=True)
    evening = detector.observe(_event(T0 + 11 * 3600, 2, client_ip="172.16.0.9"))  # 21:00
    assert [d.severity for d in evening.detections] == [2]
    night = detector.observe(_event(NIGHT, 3, client_ip="198.51.100.7"))  # 02:00
    assert night.act[0].severity == 3 and "night access from a new IP" in night.act[0].title


def test_token_used_from_many_ips() -> None:
    detector = Detector(DetectionConfig())
    events = [_event(T0 + i * 30, i, client_ip=f"10.9.0.{i}") for i in range(5)]
    assert "token_spread" in _rules(detector, events)


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
