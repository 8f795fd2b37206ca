"""Breaker transitions: trips, cool-downs, half-open probes, forced-open, monitor, config."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.breaker import core
from gateway.breaker.config import BreakerConfig
from gateway.breaker.core import BreakerState
from gateway.configtree import build
from gateway.errors import ConfigError

T0 = 1_700_000_000.0
CFG = BreakerConfig(cooldown_base=60.0, cooldown_cap=300.0, half_open_probes=2)


def closed() -> BreakerState:
    return BreakerState("principal", "alice")


def tripped(s: BreakerState, now: float, cfg: BreakerConfig = CFG) -> BreakerState:
    new = core.trip(s, cfg, now, "burst", "inc-1")
    assert new is not None
    return new


def test_trip_opens_with_base_cooldown_and_incident() -> None:
    s = tripped(closed(), T0)
    assert (s.state, s.trips, s.until, s.incident_id, s.version) == ("open", 1, T0 + 60, "inc-1", 1)
    assert s.effective(T0 + 59) == "open"
    assert s.effective(T0 + 60) == "half_open"


def test_trip_while_open_changes_nothing() -> None:
    s = tripped(closed(), T0)
    assert core.trip(s, CFG, T0 + 10, "again", "inc-2") is None


def test_cooldown_doubles_on_each_retrip_up_to_cap() -> None:
    s, now, cooldowns = closed(), T0, []
    for _ in range(5):
        s = tripped(s, now)
        cooldowns.append(s.cooldown)
        now = s.until + 1  # half-open now; a bad probe is a re-trip
        probe = core.reserve_probe(s, CFG, now)
        assert probe is not None
        s = probe
    assert cooldowns == [60, 120, 240, 300, 300]


def test_bad_probe_reopens_with_doubled_cooldown() -> None:
    s = tripped(closed(), T0)
    s = core.reserve_probe(s, CFG, T0 + 61) or pytest.fail("no probe")
    s = core.probe_result(s, CFG, T0 + 62, clean=False) or pytest.fail("no change")
    assert (s.state, s.trips, s.until) == ("open", 2, T0 + 62 + 120)


def test_clean_probes_close_and_a_later_trip_counts_as_retrip() -> None:
    s = tripped(closed(), T0)
    now = T0 + 61
    for _ in range(2):
        s = core.reserve_probe(s, CFG, now) or pytest.fail("no probe")
    assert core.reserve_probe(s, CFG, now) is None  # both slots taken
    s = core.probe_result(s, CFG, now, clean=True) or pytest.fail("no change")
    assert s.state == "half_open"
    s = core.probe_result(s, CFG, now, clean=True) or pytest.fail("no change")
    assert (s.state, s.closed_at) == ("closed", now)
    assert tripped(s, now + 100).cooldown == 120
    assert tripped(s, now + CFG.retrip_memory + 1).cooldown == 60


def test_unreported_probes_are_given_back_after_the_probe_timeout() -> None:
    s = tripped(closed(), T0)
    now = T0 + 61
    for _ in range(2):
        s = core.reserve_probe(s, CFG, now) or pytest.fail("no probe")
    assert core.reserve_probe(s, CFG, now + CFG.probe_timeout - 1) is None
    again = core.reserve_probe(s, CFG, now + CFG.probe_timeout)
    assert again is not None and again.probes_left == 1


def test_release_probe_returns_the_slot() -> None:
    s = tripped(closed(), T0)
    s = core.reserve_probe(s, CFG, T0 + 61) or pytest.fail("no probe")
    released = core.release_probe(s, T0 + 61)
    assert released is not None and released.probes_left == 2
    assert core.release_probe(closed(), T0) is None


def test_forced_open_is_left_only_by_reset() -> None:
    s = core.soc_open(closed(), T0, "soc-ann", "investigating", None, forced=True)
    assert s.state == "forced_open" and s.by == "soc-ann"
    assert core.trip(s, CFG, T0 + 1, "burst", "inc-9") is None
    assert core.reserve_probe(s, CFG, T0 + 10**6) is None
    assert core.probe_result(s, CFG, T0 + 1, clean=True) is None
    assert s.effective(T0 + 10**9) == "forced_open"
    r = core.reset(s, T0 + 5, "soc-bob", "false positive")
    assert (r.state, r.by, r.note, r.trips) == ("closed", "soc-bob", "false positive", 0)


def test_a_clock_set_back_restarts_the_cooldown_instead_of_stretching_it() -> None:
    s = tripped(closed(), T0)
    back = T0 - 86400
    assert s.effective(back + 59) == "open"  # as it stands: shut for a day and a minute
    r = core.reanchor(s, back)
    assert r is not None and (r.opened_at, r.until, r.version) == (back, back + 60, 2)
    assert r.effective(back + 59) == "open" and r.effective(back + 60) == "half_open"
    assert core.reanchor(r, back) is None  # done once
    assert core.reanchor(s, T0 - core.CLOCK_SKEW) is None  # clocks that merely differ
    soc = core.soc_open(closed(), T0, "soc", "check", T0 + 30, forced=False)
    assert core.reanchor(soc, back).until == back + 30  # type: ignore[union-attr]


def test_a_clock_set_back_neither_touches_forced_nor_closed_breakers() -> None:
    forced = core.soc_open(closed(), T0, "soc", "x", None, forced=True)
    assert core.reanchor(forced, T0 - 86400) is None
    assert core.reanchor(closed(), T0 - 86400) is None


def test_a_clock_set_back_gives_back_a_half_open_breakers_probes_in_time() -> None:
    s = core.reserve_probe(tripped(closed(), T0), CFG, T0 + 60)
    assert s is not None and s.state == "half_open"
    s = core.reserve_probe(s, CFG, T0 + 61)
    assert s is not None and s.probes_left == 0
    back = T0 - 86400
    r = core.reanchor(s, back)
    assert r is not None and r.probe_at == back
    # Probes that never report are given back after probe_timeout, not after a day.
    assert core.reserve_probe(r, CFG, back + CFG.probe_timeout) is not None


def test_soc_open_until_then_half_open() -> None:
    s = core.soc_open(closed(), T0, "soc", "check", T0 + 30, forced=False)
    assert s.state == "open" and s.effective(T0 + 30) == "half_open"


@pytest.mark.parametrize(
    ("until", "forced", "message"),
    [
        (T0 + 30, True, "until: a forced-open breaker is lifted only by a reset"),
        (None, False, "until: must be a time in the future"),
        (T0 - 1, False, "until: must be a time in the future"),
    ],
)
def test_soc_open_rejects_bad_until(until: float | None, forced: bool, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        core.soc_open(closed(), T0, "soc", "n", until, forced)


def test_reset_requires_a_note() -> None:
    with pytest.raises(ValueError, match="note: a reset requires a note"):
        core.reset(closed(), T0, "soc", "  ")


def test_monitor_mode_records_but_never_opens() -> None:
    cfg = dataclasses.replace(CFG, monitor=True)
    s = tripped(closed(), T0, cfg)
    assert s.state == "monitor" and s.effective(T0 + 1) == "monitor"
    assert core.trip(s, cfg, T0 + 2, "burst", None) is None
    assert s.effective(T0 + cfg.cooldown_base) == "closed"


@pytest.mark.parametrize(
    ("scope", "key", "message"),
    [
        ("user", "alice", "scope must be one of principal, department, dataset, pair"),
        ("principal", " ", "key must not be empty"),
        ("pair", "alice", "a pair key is PRINCIPAL|DATASET"),
        ("pair", "alice|", "a pair key is PRINCIPAL|DATASET"),
    ],
)
def test_check_target_rejects_bad_names(scope: str, key: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        core.check_target(scope, key)


def test_state_round_trips_and_rejects_unknown_state() -> None:
    s = tripped(closed(), T0)
    assert BreakerState.from_bytes(s.to_bytes()) == s
    with pytest.raises(ValueError, match="unknown breaker state 'ajar'"):
        BreakerState.from_dict({"scope": "principal", "key": "a", "state": "ajar"})


@settings(deadline=None)  # no timing in unit tests; the machine may be busy
@given(st.lists(st.booleans(), max_size=3))
def test_three_requests_never_trip(outcomes: list[bool]) -> None:
    cfg = BreakerConfig(anomaly_min_requests=4, anomaly_rate=0.01)
    window = core.AnomalyWindow(cfg.anomaly_window)
    for i, bad in enumerate(outcomes):
        total, anomalies = window.add(T0 + i, bad)
        assert not core.rate_exceeded(total, anomalies, cfg)


@settings(deadline=None)
@given(st.lists(st.tuples(st.floats(0, 30, allow_nan=False), st.booleans()), max_size=60))
def test_the_window_counts_what_its_buckets_hold(steps: list[tuple[float, bool]]) -> None:
    """Running totals equal a recount of the requests whose bucket is still in the window
    (buckets are a tenth of the window, aligned to multiples of it)."""
    window = core.AnomalyWindow(60.0)
    now = T0
    seen: list[tuple[float, bool]] = []
    for gap, bad in steps:
        now += gap
        got = window.add(now, bad)
        seen.append((now - now % 6.0, bad))
        kept = [b for start, b in seen if start + 6.0 > now - 60.0]
        assert got == (len(kept), sum(kept))


def test_anomaly_rate_trips_over_min_requests_within_window() -> None:
    cfg = BreakerConfig(anomaly_min_requests=10, anomaly_rate=0.5, anomaly_window=60.0)
    window = core.AnomalyWindow(60.0)
    results = [core.rate_exceeded(*window.add(T0 + i, i % 2 == 0), cfg) for i in range(10)]
    assert results == [False] * 9 + [True]
    old = core.AnomalyWindow(60.0)
    for i in range(9):
        old.add(T0 + i, True)
    # Two minutes later the old requests have left the window.
    assert old.add(T0 + 120, True) == (1, 1)
    assert old.idle(T0 + 400)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"cooldown_base": 100, "cooldown_cap": 50}, "breaker.cooldown_cap: must be >= cooldown"),
        ({"anomaly_min_requests": 3}, "breaker.anomaly_min_requests: must be >= 4"),
        ({"trip_severity": 6}, "breaker.trip_severity: must be <= 5"),
        ({"trip_scope": "everyone"}, "breaker.trip_scope: must be one of"),
        ({"reload_interval": 5, "stale_after": 2}, "breaker.stale_after: must be > reload"),
        ({"cooldown": 1}, "breaker.cooldown: unknown key"),
        ({"level1_fail_open": "yes"}, "breaker.level1_fail_open: expected true or false"),
    ],
)
def test_config_errors_name_the_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build(BreakerConfig, data, "breaker")
