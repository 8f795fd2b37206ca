"""Dashboard statistics: a bounded, O(1)-per-event summary of recent access events."""

from __future__ import annotations

import datetime as dt
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

_UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=_UTC)
_NUMBER = (int, float)


class _PrincipalScores:
    """Score summary of one principal since its current run of activity began."""

    __slots__ = ("count", "department", "last_seen", "max_score", "total")

    def __init__(self, department: str | None, seen: float) -> None:
        self.department = department
        self.last_seen = seen
        self.count = 0
        self.total = 0.0
        self.max_score = 0.0


class DashboardStats:
    """Requests and decisions per minute, the anomaly-score histogram and the principals
    with the highest scores, over the last `minutes` minutes.

    `add` is an access-event sink on the request path: it bumps a few counters in a ring of
    per-minute slots, so its cost does not grow with traffic.
    At most `max_principals` principals are tracked (least recently seen dropped first);
    a principal idle for longer than the window starts again from zero.
    """

    def __init__(
        self,
        *,
        minutes: int = 60,
        score_bins: int = 10,
        top: int = 10,
        max_principals: int = 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if minutes < 1 or score_bins < 1 or top < 1 or max_principals < top:
            raise ValueError("minutes, score_bins and top must be >= 1, max_principals >= top")
        self.minutes = minutes
        self.score_bins = score_bins
        self.top = top
        self.max_principals = max_principals
        self._clock = clock  # for events without a readable `ts`
        self._window = minutes * 60.0
        # Slot i holds the minute `_minute[i]` (minute number since the epoch, -1 = empty).
        self._minute = [-1] * minutes
        self._requests = [0] * minutes
        self._allow = [0] * minutes
        self._deny = [0] * minutes
        self._scores = [[0] * score_bins for _ in range(minutes)]
        self._principals: OrderedDict[str, _PrincipalScores] = OrderedDict()

    def add(self, event: dict[str, Any], ts: float | None = None) -> None:
        """Count one access event (the shape of PRODUCT.md "Access events"). `ts` is its
        time in epoch seconds when the caller has it, which saves parsing `event["ts"]`."""
        seen = ts if ts is not None else _timestamp(event.get("ts"))
        if seen is None:
            seen = self._clock()
        score = event.get("score")
        if not isinstance(score, _NUMBER) or not 0.0 <= score <= 1.0:
            score = None  # absent, or not a score (NaN fails both comparisons)
        minute = int(seen // 60)
        slot = minute % self.minutes
        held = self._minute[slot]
        if held != minute:
            if held > minute:
                # Older than the window the ring holds: only the principal summary sees it.
                self._add_principal(event, seen, score)
                return
            self._minute[slot] = minute
            self._requests[slot] = self._allow[slot] = self._deny[slot] = 0
            self._scores[slot] = [0] * self.score_bins
        self._requests[slot] += 1
        decision = event.get("decision")
        if decision == "allow":
            self._allow[slot] += 1
        elif decision == "deny":
            self._deny[slot] += 1
        if score is not None:
            self._scores[slot][min(int(score * self.score_bins), self.score_bins - 1)] += 1
        self._add_principal(event, seen, score)

    def _add_principal(self, event: dict[str, Any], seen: float, score: float | None) -> None:
        subject = event.get("principal")
        if not subject or score is None:
            return
        entry = self._principals.get(subject)
        if entry is None or seen - entry.last_seen > self._window:
            entry = _PrincipalScores(event.get("department"), seen)
            self._principals[subject] = entry
            if len(self._principals) > self.max_principals:
                self._principals.popitem(last=False)
        self._principals.move_to_end(subject)
        entry.last_seen = max(entry.last_seen, seen)
        entry.count += 1
        entry.total += score
        if score > entry.max_score:
            entry.max_score = score

    def snapshot(self, now: float) -> dict[str, Any]:
        """The dashboard's view at `now` (epoch seconds), oldest minute first."""
        current = int(now // 60)
        series: list[dict[str, Any]] = []
        histogram = [0] * self.score_bins
        for minute in range(current - self.minutes + 1, current + 1):
            slot = minute % self.minutes
            if self._minute[slot] == minute:
                series.append(
                    {
                        "minute": _iso(minute * 60.0),
                        "requests": self._requests[slot],
                        "allow": self._allow[slot],
                        "deny": self._deny[slot],
                    }
                )
                for i, count in enumerate(self._scores[slot]):
                    histogram[i] += count
            else:
                series.append({"minute": _iso(minute * 60.0), "requests": 0, "allow": 0, "deny": 0})
        since = now - self._window
        active = [
            (subject, entry)
            for subject, entry in self._principals.items()
            if since < entry.last_seen <= now + 60.0  # allow a little clock skew
        ]
        active.sort(key=lambda item: (-item[1].max_score, -item[1].total / item[1].count))
        return {
            "generated_at": _iso(now),
            "window_minutes": self.minutes,
            "per_minute": series,
            "totals": {
                "requests": sum(row["requests"] for row in series),
                "allow": sum(row["allow"] for row in series),
                "deny": sum(row["deny"] for row in series),
            },
            "scores": {
                "edges": [round(i / self.score_bins, 6) for i in range(self.score_bins + 1)],
                "counts": histogram,
                "total": sum(histogram),
            },
            "top_principals": [
                {
                    "principal": subject,
                    "department": entry.department,
                    "max_score": round(entry.max_score, 4),
                    "mean_score": round(entry.total / entry.count, 4),
                    "requests": entry.count,
                    "last_seen": _iso(entry.last_seen),
                }
                for subject, entry in active[: self.top]
            ],
        }


def _timestamp(ts: Any) -> float | None:
    """Epoch seconds of an ISO 8601 `ts`; one without an offset is taken as UTC."""
    if not isinstance(ts, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(ts)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_UTC)
    return (parsed - _EPOCH).total_seconds()  # cheaper than .timestamp()


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, _UTC).isoformat(timespec="seconds")
