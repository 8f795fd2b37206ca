"""Training, replay and evaluation on small generated data."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from detectors.config import DetectionConfig
from detectors.evaluate import evaluate, format_quality
from detectors.events import AccessEvent
from detectors.model import DetectorModel, load_model
from detectors.online import Detector, load_configured_model
from detectors.replay import Score, score_events
from detectors.training import calibrate_threshold, split_holdout, train
from gateway.errors import ConfigError


def test_split_holdout_by_local_days(history: list[AccessEvent]) -> None:
    train_part, held = split_holdout(history, "Asia/Shanghai", 1)
    assert train_part and held and train_part[-1].ts < held[0].ts
    assert held[0].ts - train_part[0].ts > 3 * 86400


def test_trained_model_has_profiles_groups_and_a_threshold(trained: DetectorModel) -> None:
    assert 0 < trained.threshold < 1
    assert len(trained.profiles) == 12
    profile = trained.profiles["u000"]
    assert profile.days >= 3 and profile.ips and profile.datasets
    assert max(profile.hour_days[9:17]) > max(profile.hour_days[0:6])
    assert profile.peaks[0] > 0  # requests_1m
    staff = [k for k in trained.groups if k.endswith("/staff") and not k.startswith("*")]
    assert staff and trained.groups["*/staff"].members >= trained.groups[staff[0]].members
    assert any(k.startswith("department:") for k in trained.aggregates)


def test_too_little_history_is_a_clear_error(history: list[AccessEvent]) -> None:
    with pytest.raises(ConfigError, match=r"training needs at least 50"):
        train(history[:10], DetectionConfig(), holdout_days=0)


def test_calibration_keeps_the_target_share_of_principals_below() -> None:
    peaks = {f"p{i}": i / 100 for i in range(100)}
    threshold = calibrate_threshold(peaks, DetectionConfig())
    assert 0.99 * 0.9 < threshold < 1.0
    with pytest.raises(ConfigError, match=r"no principal with enough events"):
        calibrate_threshold({}, DetectionConfig())


def test_replay_keeps_input_order_and_finds_the_attacks(
    trained: DetectorModel, test_events: list[AccessEvent]
) -> None:
    shuffled = list(reversed(test_events))
    scores = score_events(Detector(DetectionConfig(), trained), shuffled)
    assert [s.request_id for s in scores] == [e.request_id for e in shuffled]
    assert all(0 <= s.score <= 1 and s.anomalous == (s.score >= 0.5) for s in scores)
    assert all(s.reasons for s in scores if s.anomalous)
    quality = evaluate(shuffled, scores)
    detected = sum(q.detected for q in quality.scenarios.values())
    assert len(quality.scenarios) == 7 and detected >= 6
    assert quality.pr_auc > 0.5
    text = format_quality(quality)
    assert "burst_scraping" in text and "incident" in text and "suspended" in text


def test_configured_model_loading(tmp_path: Path, trained: DetectorModel) -> None:
    from detectors.config import ModelSettings

    assert load_configured_model(DetectionConfig()) is None
    missing = DetectionConfig(model=ModelSettings(path=str(tmp_path / "none.npz")))
    with capture_logs() as logs:
        assert load_configured_model(missing) is None
    assert [e["event"] for e in logs] == ["detection_model_missing"]
    assert logs[0]["log_level"] == "warning"
    path = tmp_path / "model.npz"
    trained.save(path)
    configured = DetectionConfig(model=ModelSettings(path=str(path)))
    loaded = load_configured_model(configured)
    assert loaded is not None and loaded.threshold == load_model(path).threshold


def test_attack_actors_link_principals_and_ips() -> None:
    def event(n: int, principal: str | None, ip: str, label: str) -> AccessEvent:
        return AccessEvent(
            ts=float(n),
            request_id=f"r{n}",
            client_ip=ip,
            method="GET",
            path="/x",
            principal=principal,
            label=label,
        )

    events = [
        event(0, "p1", "203.0.113.5", "credential_stuffing"),
        event(1, "p2", "203.0.113.5", "credential_stuffing"),
        event(2, None, "203.0.113.5", "credential_stuffing"),
        event(3, "mallory", "10.0.0.1", "slow_scraping"),
        event(4, "mallory", "10.0.0.2", "slow_scraping"),
        event(5, "bob", "10.0.0.3", "normal"),
    ]
    flags = [False, True, False, False, False, True]
    scores = [
        Score(e.request_id, float(f), f, ["why"] if f else [], incident=f)
        for e, f in zip(events, flags, strict=True)
    ]
    quality = evaluate(events, scores)
    stuffing = quality.scenarios["credential_stuffing"]
    assert (stuffing.actors, stuffing.detected, stuffing.ttd) == (1, 1, [1.0])
    assert quality.scenarios["slow_scraping"].actors == 1
    assert quality.scenarios["slow_scraping"].detected == 0
    assert quality.false_positive_actors == ["bob"]
    assert quality.false_positive_reasons == {"bob": "why"}
    assert quality.actor_fpr == 1.0
