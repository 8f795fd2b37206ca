"""The rule list, the calendar's days and shifts, drift-capped learning, and a service
account's routine against the same walk at a new hour."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from detectors.calendar import Calendar, WorkingHours
from detectors.config import DetectionConfig
from detectors.events import AccessEvent
from detectors.features import Learning, PrincipalState
from detectors.online import Detector
from detectors.profiles import REQ_DAY, Profile
from detectors.rules import RULES
from detectors.training import fit_profiles
from gateway.configtree import build
from gateway.errors import ConfigError

ZONE = "Asia/Shanghai"


def _ts(day: str, hhmm: str) -> float:
    import zoneinfo

    date = dt.date.fromisoformat(day)
    hour, minute = map(int, hhmm.split(":"))
    return dt.datetime.combine(date, dt.time(hour, minute), zoneinfo.ZoneInfo(ZONE)).timestamp()


def test_every_rule_has_its_config_remediation_and_a_config_key() -> None:
    config = DetectionConfig()
    names = [rule.name for rule in RULES]
    assert len(names) == len(set(names))
    for rule in RULES:
        assert rule.remediation and dataclasses.is_dataclass(rule.Config)
        assert isinstance(getattr(config, rule.name), rule.Config)
        assert getattr(config, rule.name).enabled


def test_a_disabled_rule_is_not_run() -> None:
    config = build(DetectionConfig, {"coverage": {"enabled": False}}, "detection")
    assert "coverage" not in {r.name for r in Detector(config).observe_rules}


def test_holidays_and_make_up_days() -> None:
    calendar = Calendar(
        WorkingHours(holidays=["2026-10-01"], workdays=["2026-09-27"])  # a Thursday; a Sunday
    )
    assert not calendar.at(_ts("2026-10-01", "10:00")).working
    assert calendar.at(_ts("2026-09-27", "10:00")).working
    assert not calendar.at(_ts("2026-09-26", "10:00")).working  # an ordinary Saturday


def test_a_day_can_not_be_both_holiday_and_make_up_day() -> None:
    with pytest.raises(ConfigError, match=r"workdays: 2026-10-01 is also a holiday"):
        build(
            DetectionConfig,
            {"working_hours": {"holidays": ["2026-10-01"], "workdays": ["2026-10-01"]}},
            "detection",
        )


def test_a_night_shift_wraps_midnight() -> None:
    config = build(
        WorkingHours,
        {"departments": {"ops": {"start": "22:00", "end": "06:00", "weekdays": [1, 2, 3, 4, 5]}}},
        "working_hours",
    )
    calendar = Calendar(config)
    # Friday 23:00 and Saturday 03:00 belong to Friday's shift; Saturday 23:00 does not.
    assert not calendar.off_hours(calendar.at(_ts("2026-09-18", "23:00")), None, "ops")
    assert not calendar.off_hours(calendar.at(_ts("2026-09-19", "03:00")), None, "ops")
    assert calendar.off_hours(calendar.at(_ts("2026-09-19", "23:00")), None, "ops")
    assert calendar.off_hours(calendar.at(_ts("2026-09-18", "12:00")), None, "ops")


def test_a_ramp_is_not_learned_faster_than_the_cap() -> None:
    reference = Profile(days=10, span=10)
    reference.peaks[REQ_DAY] = 100.0
    state = PrincipalState(reference.copy(), reference, None)
    learning = Learning(growth=0.25, drift_cap=3.0, min_days=3, unbounded=False)
    prior = [0.0] * len(reference.peaks)
    for day in range(1, 30):
        state.roll_day(day, learning, prior)
        state.day_count = 1000  # ten times the reference every day
        state.day_max[REQ_DAY] = 1000.0
    assert state.profile.peaks[REQ_DAY] == pytest.approx(300.0)  # drift cap
    state = PrincipalState(reference.copy(), reference, None)
    state.roll_day(1, learning, prior)
    state.day_count = 1000
    state.day_max[REQ_DAY] = 1000.0
    state.roll_day(2, learning, prior)
    assert state.profile.peaks[REQ_DAY] == pytest.approx(125.0)  # one day's growth


def test_a_flagged_day_never_enters_the_baseline() -> None:
    reference = Profile(days=10, span=10)
    reference.peaks[REQ_DAY] = 100.0
    state = PrincipalState(reference.copy(), reference, None)
    learning = Learning(growth=0.25, drift_cap=3.0, min_days=3, unbounded=False)
    prior = [0.0] * len(reference.peaks)
    state.roll_day(1, learning, prior)
    state.day_count = 120
    state.day_max[REQ_DAY] = 120.0
    state.day_flagged = True
    state.roll_day(2, learning, prior)
    assert state.profile.peaks[REQ_DAY] == 100.0 and state.profile.days == 10


def _walk(principal: str, start: float, n: int, first_id: int) -> list[AccessEvent]:
    return [
        AccessEvent(
            ts=start + i * 2.0,
            request_id=f"{principal}-{start:.0f}-{i}",
            client_ip="10.200.0.5",
            method="GET",
            path=f"/api/population/persons/{first_id + i}",
            record_id=str(first_id + i),
            principal=principal,
            department="statistics",
            user_agent="sync/1.0",
            token_id=f"tok-{principal}",
            dataset="population",
            level=3,
            status=200,
            records_out=1,
            bytes_out=300,
        )
        for i in range(n)
    ]


def test_a_service_accounts_nightly_walk_is_its_routine_but_not_at_a_new_hour() -> None:
    config = DetectionConfig()
    history = []
    for day in range(10):  # every night at 02:00, the same sequential walk
        start = _ts("2026-09-01", "02:00") + day * 86400
        history += _walk("etl", start, 300, 1 + day * 1000)
    model = fit_profiles(history, config)
    assert model.profiles["etl"].walk_hours[2] == 10

    def rules(start: float) -> set[str]:
        detector = Detector(config, model)
        fired = set()
        for event in _walk("etl", start, 300, 50_000):
            fired.update(d.rule for d in detector.record(event, observed=False).act)
        return fired

    assert "enumeration" not in rules(_ts("2026-09-12", "02:00"))
    assert "enumeration" in rules(_ts("2026-09-12", "14:00"))


def test_an_address_finding_does_not_count_against_the_principals_behind_it() -> None:
    from detectors.replay import score_events

    start = _ts("2026-09-14", "10:00")
    events = []
    for i in range(40):
        events.append(
            AccessEvent(
                ts=start + i,
                request_id=f"bad{i}",
                client_ip="10.9.9.9",
                method="GET",
                path="/api/population/persons/1",
                status=401,
                label="credential_stuffing",
            )
        )
        events.append(
            AccessEvent(
                ts=start + i + 0.5,
                request_id=f"ok{i}",
                client_ip="10.9.9.9",
                method="GET",
                path="/api/enterprise/companies?page=1",
                principal="alice",
                department="statistics",
                dataset="enterprise",
                level=1,
                status=200,
                records_out=20,
                label="normal",
            )
        )
    scores = {s.request_id: s for s in score_events(Detector(DetectionConfig()), events)}
    assert scores["bad39"].incident and not scores["bad39"].suspended
    assert not any(scores[f"ok{i}"].incident for i in range(40))


def test_who_is_familiar_with_an_address() -> None:
    history = _walk("etl", _ts("2026-09-01", "02:00"), 50, 1)
    detector = Detector(DetectionConfig(), fit_profiles(history, DetectionConfig()))
    assert detector.familiar("etl", "10.200.0.5")
    assert not detector.familiar("etl", "203.0.113.9")  # its history is elsewhere
    assert detector.familiar("newcomer", "203.0.113.9")  # nothing to judge by
