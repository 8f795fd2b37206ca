"""The working calendar: time zone, working days (holidays, make-up days), working hours per
department and principal (configured, or learned from history), and what a moment is locally."""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo

from gateway.configtree import field
from gateway.errors import ConfigError

__all__ = ["Calendar", "HoursOverride", "LocalTime", "WorkingHours", "parse_hhmm"]

_BLOCK = 900  # seconds; every real UTC offset is a multiple of 15 minutes


def parse_hhmm(value: str, path: str) -> int:
    """Minutes after midnight for an `HH:MM` string (24:00 allowed as the end of the day)."""
    try:
        hours, minutes = value.split(":")
        total = int(hours) * 60 + int(minutes)
    except ValueError:
        raise ConfigError(f"{path}: expected HH:MM, got {value!r}") from None
    if not 0 <= int(minutes) < 60 or not 0 <= total <= 24 * 60:
        raise ConfigError(f"{path}: expected HH:MM, got {value!r}")
    return total


def _check_dates(days: list[str], path: str) -> None:
    for i, day in enumerate(days):
        try:
            dt.date.fromisoformat(day)
        except ValueError:
            raise ConfigError(f"{path}[{i}]: expected YYYY-MM-DD, got {day!r}") from None


@dataclasses.dataclass(frozen=True, slots=True)
class HoursOverride:
    """Configured working hours of one department or principal (a night shift, a 24/7 desk).

    `start` after `end` is a shift across midnight (22:00-06:00). With an override, the
    learned hours of that department or principal are not used by the off-hours rule."""

    always: bool = field(False, doc="24/7: no hour is off-hours")
    start: str = field("08:00", doc="local start, HH:MM")
    end: str = field("19:00", doc="local end, HH:MM (before start: the shift wraps midnight)")
    weekdays: list[int] = field([1, 2, 3, 4, 5], doc="ISO weekdays worked")

    def validate(self, path: str) -> None:
        prefix = f"{path}." if path else ""
        if parse_hhmm(self.start, f"{prefix}start") == parse_hhmm(self.end, f"{prefix}end"):
            raise ConfigError(f"{prefix}end: must differ from start {self.start!r}")
        for i, day in enumerate(self.weekdays):
            if not 1 <= day <= 7:
                raise ConfigError(f"{prefix}weekdays[{i}]: must be 1..7, got {day!r}")


@dataclasses.dataclass(frozen=True, slots=True)
class WorkingHours:
    """The organisation's calendar; everything outside working time is off-hours."""

    timezone: str = field("Asia/Shanghai", nonempty=True, doc="IANA time zone name")
    weekdays: list[int] = field([1, 2, 3, 4, 5], doc="ISO weekdays, 1 Monday .. 7 Sunday")
    start: str = field("08:00", doc="local start of the working day, HH:MM")
    end: str = field("19:00", doc="local end of the working day, HH:MM")
    holidays: list[str] = field([], doc="YYYY-MM-DD dates that are not working days")
    workdays: list[str] = field(
        [], doc="YYYY-MM-DD make-up working days (a weekend day worked instead of a holiday)"
    )
    night_start: str = field("00:00", doc="local start of the night, HH:MM")
    night_end: str = field("06:00", doc="local end of the night, HH:MM (may wrap midnight)")
    departments: dict[str, HoursOverride] = field({}, doc="hours of departments, by name")
    principals: dict[str, HoursOverride] = field({}, doc="hours of principals, by name")

    def validate(self, path: str) -> None:
        prefix = f"{path}." if path else ""
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"{prefix}timezone: unknown time zone {self.timezone!r}") from None
        for i, day in enumerate(self.weekdays):
            if not 1 <= day <= 7:
                raise ConfigError(f"{prefix}weekdays[{i}]: must be 1..7, got {day!r}")
        if parse_hhmm(self.start, f"{prefix}start") >= parse_hhmm(self.end, f"{prefix}end"):
            raise ConfigError(f"{prefix}end: must be after start {self.start!r}")
        night = parse_hhmm(self.night_start, f"{prefix}night_start")
        if night == parse_hhmm(self.night_end, f"{prefix}night_end"):
            raise ConfigError(f"{prefix}night_end: must differ from night_start")
        _check_dates(self.holidays, f"{prefix}holidays")
        _check_dates(self.workdays, f"{prefix}workdays")
        both = set(self.holidays) & set(self.workdays)
        if both:
            raise ConfigError(f"{prefix}workdays: {sorted(both)[0]} is also a holiday")


def _within(minute: int, low: int, high: int) -> bool:
    """Whether a minute of the day is in [low, high), which may wrap midnight."""
    return low <= minute < high if low < high else (minute >= low or minute < high)


class LocalTime:
    """What the calendar says about one moment."""

    __slots__ = (
        "day",
        "daytime",
        "hour",
        "minute",
        "night",
        "slot",
        "weekday",
        "workday",
        "working",
    )

    def __init__(
        self,
        hour: int,
        weekday: int,
        workday: bool,
        daytime: bool,
        night: bool,
        day: int = 0,
        minute: int = 0,
    ) -> None:
        self.hour = hour  # local hour of the day, 0..23
        self.minute = minute  # local minute of the day, 0..1439
        self.weekday = weekday  # ISO weekday 1..7
        self.day = day  # local date as a day number (date.toordinal())
        self.workday = workday  # a working day: weekday or make-up day, not a holiday
        self.daytime = daytime  # within the working day's hours, whatever the day
        self.working = workday and daytime
        self.night = night  # within the configured night hours
        # Model features keep hours separately for working and other days.
        self.slot = hour if workday else 24 + hour


class Calendar:
    """Answers `at(ts)` in O(1): local facts are cached per 15-minute block."""

    __slots__ = (
        "_block",
        "_departments",
        "_end",
        "_holidays",
        "_last",
        "_local",
        "_minute",
        "_night",
        "_principals",
        "_start",
        "_weekdays",
        "_workdays",
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
        self._workdays = frozenset(dt.date.fromisoformat(d) for d in hours.workdays)
        self._departments = {k: self._shift(v) for k, v in hours.departments.items()}
        self._principals = {k: self._shift(v) for k, v in hours.principals.items()}
        self._block = -1
        self._local: tuple[int, int, bool, int, int] = (0, 1, False, 0, 0)
        self._minute = -1
        self._last = LocalTime(0, 1, False, False, False)

    @staticmethod
    def _shift(o: HoursOverride) -> tuple[bool, int, int, frozenset[int]]:
        return (
            o.always,
            parse_hhmm(o.start, "start"),
            parse_hhmm(o.end, "end"),
            frozenset(o.weekdays),
        )

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return self._zone

    def workday(self, date: dt.date) -> bool:
        if date in self._workdays:
            return True
        return date.isoweekday() in self._weekdays and date not in self._holidays

    def at(self, ts: float) -> LocalTime:
        minute_index = int(ts // 60)
        if minute_index == self._minute:
            return self._last
        block = int(ts // _BLOCK)
        if block != self._block:
            local = dt.datetime.fromtimestamp(block * _BLOCK, self._zone)
            date = local.date()
            self._local = (
                local.hour,
                local.isoweekday(),
                self.workday(date),
                local.hour * 60 + local.minute,
                date.toordinal(),
            )
            self._block = block
        _, weekday, workday, minute, day = self._local
        minute += int(ts - self._block * _BLOCK) // 60
        self._minute = minute_index
        night = _within(minute, *self._night)
        self._last = LocalTime(
            minute // 60, weekday, workday, self._start <= minute < self._end, night, day, minute
        )
        return self._last

    def configured(self, principal: str | None, department: str | None) -> bool:
        """Whether the principal's (or its department's) hours are set in the config."""
        return (principal is not None and principal in self._principals) or (
            department is not None and department in self._departments
        )

    def off_hours(self, local: LocalTime, principal: str | None, department: str | None) -> bool:
        """Outside the configured hours of the principal, else its department, else the
        organisation's working time (holidays and make-up days included)."""
        shift = self._principals.get(principal or "") or self._departments.get(department or "")
        if shift is None:
            return not local.working
        always, start, end, weekdays = shift
        if always:
            return False
        if not _within(local.minute, start, end):
            return True
        # A shift that wraps midnight belongs to the day it started on.
        weekday = local.weekday
        if start > end and local.minute < end:
            weekday = 7 if weekday == 1 else weekday - 1
        return weekday not in weekdays
