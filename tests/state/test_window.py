"""The sliding-window arithmetic both backends share."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.state.common import estimate, parse_stream_id, window_ms, window_position


def test_window_position_examples() -> None:
    assert window_position(1000.0, 10_000) == (100, 10_000)
    assert window_position(1002.5, 10_000) == (100, 7_500)
    assert window_position(1009.999, 10_000) == (100, 1)
    assert window_position(0.25, 500) == (0, 250)


def test_window_ms_rounds_to_whole_milliseconds() -> None:
    assert window_ms(60) == 60_000
    assert window_ms(0.5) == 500
    assert window_ms(0.0015) == 2


def test_estimate_takes_the_previous_bucket_pro_rata_floored() -> None:
    assert estimate(3, 10, 7_500, 10_000) == 3 + 7
    assert estimate(0, 3, 5_000, 10_000) == 1
    assert estimate(5, 0, 10_000, 10_000) == 5


@given(
    now=st.floats(min_value=0, max_value=4e9, allow_nan=False),
    window=st.integers(min_value=1, max_value=86_400_000),
    current=st.integers(min_value=0, max_value=10**9),
    previous=st.integers(min_value=0, max_value=10**9),
)
def test_estimate_lies_between_current_and_both_buckets(
    now: float, window: int, current: int, previous: int
) -> None:
    index, remaining = window_position(now, window)
    assert index * window <= round(now * 1000) < (index + 1) * window
    assert 0 < remaining <= window
    assert current <= estimate(current, previous, remaining, window) <= current + previous


@given(ms=st.integers(0, 2**64 - 1), seq=st.integers(0, 2**64 - 1))
def test_stream_ids_parse(ms: int, seq: int) -> None:
    assert parse_stream_id(f"{ms}-{seq}") == (ms, seq)
    assert parse_stream_id(str(ms)) == (ms, 0)
