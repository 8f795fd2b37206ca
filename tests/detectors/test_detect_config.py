"""DetectionConfig: defaults, validation and the errors users see."""

from __future__ import annotations

import pytest

from detectors.config import DetectionConfig
from gateway.configtree import build
from gateway.errors import ConfigError


def test_defaults_build_from_nothing() -> None:
    config = build(DetectionConfig, None, "detection")
    assert config == DetectionConfig()
    assert config.working_hours.timezone == "Asia/Shanghai"


def test_thresholds_and_calendar_are_configurable() -> None:
    config = build(
        DetectionConfig,
        {
            "high_frequency": {"per_minute": 50, "severity": 5},
            "working_hours": {
                "timezone": "Europe/Paris",
                "weekdays": [1, 2, 3],
                "start": "09:30",
                "end": "17:00",
                "holidays": ["2026-05-01"],
            },
        },
        "detection",
    )
    assert config.high_frequency.per_minute == 50
    assert config.working_hours.weekdays == [1, 2, 3]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"bogus": 1}, "detection.bogus: unknown key"),
        ({"high_frequency": {"severity": 6}}, "detection.high_frequency.severity: must be <= 5"),
        (
            {"working_hours": {"timezone": "Mars/Olympus"}},
            "detection.working_hours.timezone: unknown time zone 'Mars/Olympus'",
        ),
        (
            {"working_hours": {"weekdays": [0]}},
            "detection.working_hours.weekdays[0]: must be 1..7, got 0",
        ),
        (
            {"working_hours": {"start": "8am"}},
            "detection.working_hours.start: expected HH:MM, got '8am'",
        ),
        (
            {"working_hours": {"start": "18:00", "end": "09:00"}},
            "detection.working_hours.end: must be after start '18:00'",
        ),
        (
            {"working_hours": {"holidays": ["2026-13-01"]}},
            "detection.working_hours.holidays[0]: expected YYYY-MM-DD, got '2026-13-01'",
        ),
        ({"model": {"smoothing": 0}}, "detection.model.smoothing: must be >= 0.01"),
        (
            {"working_hours": {"night_start": "01:00", "night_end": "01:00"}},
            "detection.working_hours.night_end: must differ from night_start",
        ),
    ],
)
def test_bad_config_names_the_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build(DetectionConfig, data, "detection")
    assert str(info.value).startswith(message)
