"""Sliding windows, sketches and the working-hours calendar."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.calendar import Calendar
from detectors.config import WorkingHours
from detectors.windows import COUNT, S404, Windows, distinct_estimate, sketch_bit

T0 = 1_773_972_000.0  # 2026-03-20 10:00 +08:00, a Friday


def _count(windows: Windows, ts: float) -> tuple[int, int, int]:
    m, f, h = windows.advance(ts)
    return m[COUNT], f[COUNT], h[COUNT]


def test_counts_leave_each_window_in_turn() -> None:
    windows = Windows()
    for i in range(10):
        windows.advance(T0 + i)
        windows.add_request(False)
    assert _count(windows, T0 + 10) == (10, 10, 10)
    assert _count(windows, T0 + 75) == (0, 10, 10)
    assert _count(windows, T0 + 340) == (0, 0, 10)
    assert _count(windows, T0 + 3700) == (0, 0, 0)


def test_results_are_counted_per_status() -> None:
    windows = Windows()
    windows.advance(T0)
    windows.add_request(False)
    windows.add_result(404, 100, 0)
    m, _, h = windows.totals()
    assert m[S404] == 1 and h[S404] == 1


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=7200), min_size=1, max_size=60))
def test_counts_match_a_brute_force_window(offsets: list[float]) -> None:
    """The bucketed count is exact up to one bucket at the window's far edge."""
    windows = Windows()
    times = sorted(T0 + o for o in offsets)
    for ts in times:
        windows.advance(ts)
        windows.add_request(False)
    now = times[-1]
    m, f, h = windows.totals()
    for got, span, width in ((m, 60, 10), (f, 300, 30), (h, 3600, 300)):
        short = sum(1 for t in times if t > now - span + width)
        full = sum(1 for t in times if t > now - span)
        assert short <= got[COUNT] <= full


def test_distinct_sketch_estimates_within_a_few_percent() -> None:
    windows = Windows(sketches=1)
    windows.advance(T0)
    for i in range(500):
        windows.mark(0, sketch_bit(f"record-{i}"))
        windows.mark(0, sketch_bit(f"record-{i}"))
    assert abs(windows.distinct(0) - 500) < 40
    assert distinct_estimate(0) == 0


def test_calendar_knows_working_hours_weekends_and_holidays() -> None:
    calendar = Calendar(WorkingHours(holidays=["2026-03-23"]))
    assert calendar.at(T0).working
    assert not calendar.at(T0 + 10 * 3600).working  # 20:00
    saturday = calendar.at(T0 + 86400)
    assert not saturday.workday and saturday.slot == 24 + 10
    assert not calendar.at(T0 + 3 * 86400).workday  # Monday, a holiday


def test_calendar_night_hours_may_wrap_midnight() -> None:
    default = Calendar(WorkingHours())
    assert default.at(T0 + 16 * 3600).night  # 02:00
    assert not default.at(T0 + 12 * 3600).night  # 22:00
    wrapped = Calendar(WorkingHours(night_start="22:00", night_end="05:00"))
    assert wrapped.at(T0 + 12 * 3600).night
    assert not wrapped.at(T0 + 20 * 3600).night  # 06:00


def test_calendar_uses_its_time_zone() -> None:
    paris = Calendar(WorkingHours(timezone="Europe/Paris", start="09:00", end="17:00"))
    ts = dt.datetime(2026, 3, 20, 9, 30, tzinfo=dt.UTC).timestamp()  # 10:30 in Paris
    local = paris.at(ts)
    assert local.hour == 10 and local.working
