"""The working-hours calendar: local hour, working day and working time for a timestamp."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from detectors.config import WorkingHours, parse_hhmm

__all__ = ["Calendar", "LocalTime"]

_BLOCK = 900  # seconds; every real UTC offset is a multiple of 15 minutes


class LocalTime:
    """What the calendar says about one moment."""

    __slots__ = ("daytime", "hour", "night", "slot", "weekday", "workday", "working")

    def __init__(self, hour: int, weekday: int, workday: bool, daytime: bool, night: bool) -> None:
        self.hour = hour  # local hour of the day, 0..23
        self.weekday = weekday  # ISO weekday 1..7
        self.workday = workday
        self.daytime = daytime  # within the working day's hours, whatever the day
        self.working = workday and daytime
        self.night = night  # within the configured night hours
        # Baselines are kept per hour, separately for working and other days.
        self.slot = hour if workday else 24 + hour


class Calendar:
    """Answers `at(ts)` in O(1): local facts are cached per 15-minute block."""

    __slots__ = (
        "_block",
        "_end",
        "_holidays",
        "_last",
        "_local",
        "_minute",
        "_night",
        "_start",
        "_weekdays",
        "_zone",
    )

    def __init__(self, hours: WorkingHours) -> None:
        self._zone = zoneinfo.ZoneInfo(hours.timezone)
        self._weekdays = frozenset(hours.weekdays)
        self._start = parse_hhmm(hours.start, "start")
        self._end = parse_hhmm(hours.end, "end")
        self._night = (
            parse_hhmm(hours.night_start, "night_start"),
            parse_hhmm(hours.night_end, "night_end"),
        )
        self._holidays = frozenset(dt.date.fromisoformat(d) for d in hours.holidays)
        self._block = -1
        self._local: tuple[int, int, bool, int] = (0, 1, False, 0)
        self._minute = -1
        self._last = LocalTime(0, 1, False, False, False)

    def at(self, ts: float) -> LocalTime:
        minute_index = int(ts // 60)
        if minute_index == self._minute:
            return self._last
        block = int(ts // _BLOCK)
        if block != self._block:
            local = dt.datetime.fromtimestamp(block * _BLOCK, self._zone)
            workday = local.isoweekday() in self._weekdays and local.date() not in self._holidays
            self._local = (local.hour, local.isoweekday(), workday, local.hour * 60 + local.minute)
            self._block = block
        hour, weekday, workday, minute = self._local
        minute += int(ts - self._block * _BLOCK) // 60
        self._minute = minute_index
        low, high = self._night
        # The night may wrap midnight (22:00-06:00) or not (00:00-06:00).
        night = low <= minute < high if low < high else (minute >= low or minute < high)
        self._last = LocalTime(hour, weekday, workday, self._start <= minute < self._end, night)
        return self._last
