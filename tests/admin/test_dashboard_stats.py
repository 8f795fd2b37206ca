"""DashboardStats: per-minute counts, the score histogram and top principals, bounded."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.admin.stats import DashboardStats

T0 = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC).timestamp()  # on a minute boundary


def event(
    at: float,
    *,
    principal: str | None = "alice",
    decision: str = "allow",
    score: Any = 0.1,
    department: str = "tax",
) -> dict[str, Any]:
    return {
        "ts": dt.datetime.fromtimestamp(at, dt.UTC).isoformat(timespec="milliseconds"),
        "principal": principal,
        "department": department,
        "dataset": "citizens",
        "decision": decision,
        "status": 200 if decision == "allow" else 403,
        "score": score,
    }


def test_counts_requests_and_decisions_per_minute() -> None:
    stats = DashboardStats()
    for _ in range(3):
        stats.add(event(T0 + 5))
    stats.add(event(T0 + 59, decision="deny"))
    stats.add(event(T0 + 61, decision="deny"))

    snap = stats.snapshot(T0 + 90)

    rows = snap["per_minute"]
    assert len(rows) == 60
    assert rows[-2] == {"minute": "2026-11-23T08:00:00+00:00", "requests": 4, "allow": 3, "deny": 1}
    assert rows[-1] == {"minute": "2026-11-23T08:01:00+00:00", "requests": 1, "allow": 0, "deny": 1}
    assert all(row["requests"] == 0 for row in rows[:-2])
    assert snap["totals"] == {"requests": 5, "allow": 3, "deny": 2}
    assert snap["window_minutes"] == 60


def test_minutes_leave_the_window_and_slots_are_reused() -> None:
    stats = DashboardStats(minutes=5)
    stats.add(event(T0))
    stats.add(event(T0 + 5 * 60))  # same ring slot, five minutes later

    snap = stats.snapshot(T0 + 5 * 60)

    assert [row["requests"] for row in snap["per_minute"]] == [0, 0, 0, 0, 1]
    assert stats.snapshot(T0 + 11 * 60)["totals"]["requests"] == 0


def test_an_event_older_than_the_ring_is_not_counted_per_minute() -> None:
    stats = DashboardStats(minutes=5)
    stats.add(event(T0 + 5 * 60))
    stats.add(event(T0, score=0.9))  # its slot already holds a newer minute

    snap = stats.snapshot(T0 + 5 * 60)

    assert snap["totals"]["requests"] == 1
    assert snap["scores"]["total"] == 1


def test_score_histogram_has_fixed_bins() -> None:
    stats = DashboardStats(score_bins=4)
    for score in (0.0, 0.1, 0.25, 0.5, 0.99, 1.0, 1):
        stats.add(event(T0, score=score))

    scores = stats.snapshot(T0)["scores"]

    assert scores["edges"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert scores["counts"] == [2, 1, 1, 3]
    assert scores["total"] == 7


@pytest.mark.parametrize("score", [None, "0.5", -0.1, 1.5, math.nan, math.inf])
def test_missing_or_invalid_scores_count_as_requests_only(score: Any) -> None:
    stats = DashboardStats()
    stats.add(event(T0, score=score))

    snap = stats.snapshot(T0)

    assert snap["totals"]["requests"] == 1
    assert snap["scores"]["total"] == 0
    assert snap["top_principals"] == []


def test_event_without_a_score_key_is_counted() -> None:
    stats = DashboardStats()
    ev = event(T0)
    del ev["score"]
    stats.add(ev)

    assert stats.snapshot(T0)["totals"]["requests"] == 1


def test_timestamps_with_offsets_and_without() -> None:
    stats = DashboardStats()
    stats.add({"ts": "2026-11-23T16:00:30+08:00", "decision": "allow"})  # 08:00:30 UTC
    stats.add({"ts": "2026-11-23T08:00:40Z", "decision": "allow"})
    stats.add({"ts": "2026-11-23T08:00:50", "decision": "allow"})  # no offset: UTC

    assert stats.snapshot(T0 + 59)["per_minute"][-1]["requests"] == 3


@pytest.mark.parametrize("ts", [None, "", "yesterday", 12345])
def test_unreadable_ts_uses_the_clock(ts: Any) -> None:
    stats = DashboardStats(clock=lambda: T0 + 30)
    stats.add({"ts": ts, "decision": "deny"})

    assert stats.snapshot(T0 + 30)["per_minute"][-1]["deny"] == 1


def test_top_principals_by_max_then_mean_score() -> None:
    stats = DashboardStats(top=3)
    stats.add(event(T0, principal="alice", score=0.2))
    stats.add(event(T0, principal="alice", score=0.4))
    stats.add(event(T0, principal="bob", score=0.95, department="health"))
    stats.add(event(T0, principal="carol", score=0.4))
    stats.add(event(T0, principal="carol", score=0.4))
    stats.add(event(T0, principal="dave", score=0.05))
    stats.add(event(T0, principal=None, score=1.0))  # unauthenticated: not a principal

    top = stats.snapshot(T0 + 10)["top_principals"]

    assert [p["principal"] for p in top] == ["bob", "carol", "alice"]
    assert top[0] == {
        "principal": "bob",
        "department": "health",
        "max_score": 0.95,
        "mean_score": 0.95,
        "requests": 1,
        "last_seen": "2026-11-23T08:00:00+00:00",
    }
    assert top[2]["mean_score"] == pytest.approx(0.3)
    assert top[2]["requests"] == 2


def test_principals_idle_for_the_window_drop_out_and_start_again() -> None:
    stats = DashboardStats(minutes=10)
    stats.add(event(T0, principal="alice", score=0.9))
    assert stats.snapshot(T0 + 10 * 60 + 1)["top_principals"] == []

    stats.add(event(T0 + 11 * 60, principal="alice", score=0.1))
    (alice,) = stats.snapshot(T0 + 11 * 60)["top_principals"]
    assert alice["max_score"] == 0.1
    assert alice["requests"] == 1


def test_tracked_principals_are_bounded_least_recently_seen_first() -> None:
    stats = DashboardStats(top=3, max_principals=3)
    stats.add(event(T0, principal="p0", score=0.9))
    stats.add(event(T0, principal="p1", score=0.8))
    stats.add(event(T0, principal="p2", score=0.1))
    stats.add(event(T0, principal="p0", score=0.1))  # p0 seen again: p1 is now the oldest
    stats.add(event(T0, principal="p3", score=0.2))

    top = stats.snapshot(T0)["top_principals"]

    # p1 (max 0.8) was forgotten to make room for p3.
    assert [p["principal"] for p in top] == ["p0", "p3", "p2"]


@pytest.mark.parametrize(
    "kwargs",
    [{"minutes": 0}, {"score_bins": 0}, {"top": 0}, {"top": 10, "max_principals": 5}],
)
def test_rejects_unusable_sizes(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        DashboardStats(**kwargs)


@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=7200),
            st.sampled_from(["allow", "deny", "other"]),
            st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
            st.sampled_from(["a", "b", "c", None]),
        ),
        max_size=200,
    )
)
def test_snapshot_is_consistent_for_any_events(
    events: list[tuple[float, str, float | None, str | None]],
) -> None:
    stats = DashboardStats(minutes=30, top=2, max_principals=2)
    for offset, decision, score, principal in events:
        stats.add(event(T0 + offset, principal=principal, decision=decision, score=score))

    snap = stats.snapshot(T0 + 7200)

    assert len(snap["per_minute"]) == 30
    for row in snap["per_minute"]:
        assert 0 <= row["allow"] + row["deny"] <= row["requests"]
    assert snap["scores"]["total"] <= snap["totals"]["requests"]
    assert len(snap["top_principals"]) <= 2
    for p in snap["top_principals"]:
        assert 0.0 <= p["mean_score"] <= p["max_score"] <= 1.0
