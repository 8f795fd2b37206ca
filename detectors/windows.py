"""Sliding-window counters (1 min, 5 min, 1 h) and bounded distinct-count sketches, O(1)."""

from __future__ import annotations

import math
import zlib

__all__ = [
    "BYTES",
    "COUNT",
    "NCH",
    "RECORDS",
    "S401",
    "S403",
    "S404",
    "S429",
    "SEQ",
    "Windows",
    "distinct_estimate",
    "sketch_bit",
]

# Channels counted in every window.
COUNT, S401, S403, S404, S429, BYTES, RECORDS, SEQ = range(8)
NCH = 8
_STATUS_CHANNEL = {401: S401, 403: S403, 404: S404, 429: S429}

# (bucket width in seconds, number of buckets) for the 1 min, 5 min and 1 h windows.
_RINGS = ((10, 6), (30, 10), (300, 12))
SKETCH_BITS = 2048


def sketch_bit(value: str, bits: int = SKETCH_BITS) -> int:
    """The one-bit mask a value sets in a linear-counting sketch of `bits` bits."""
    return 1 << (zlib.crc32(value.encode()) & (bits - 1))


def distinct_estimate(bitmap: int, bits: int = SKETCH_BITS) -> float:
    """Linear-counting estimate of the distinct values behind a bitmap."""
    zeros = bits - bitmap.bit_count()
    if zeros == 0:
        return bits * math.log(bits)
    return -bits * math.log(zeros / bits)


class _Ring:
    """A ring of buckets; each remembers which absolute bucket it holds (`stamps`), so
    skipping ahead after a quiet spell costs nothing and stale buckets are cleared on reuse."""

    __slots__ = ("buckets", "current", "n", "sketches", "stamps", "totals", "unions", "width")

    def __init__(self, width: int, n: int, sketches: int) -> None:
        self.width = width
        self.n = n
        self.current = -(10**9)
        self.totals = [0] * NCH
        self.buckets = [[0] * NCH for _ in range(n)]
        self.stamps = [-1] * n
        self.sketches = [[0] * sketches for _ in range(n)]
        self.unions: list[int | None] = [None] * sketches  # cached until the bucket moves

    def advance(self, ts: float) -> list[int]:
        """Move to the bucket of `ts`, dropping buckets that left the window; return it.

        Late events (ts in an earlier bucket) count in the current bucket.
        """
        b = int(ts // self.width)
        current = self.current
        n = self.n
        if b <= current:
            return self.buckets[current % n]
        totals = self.totals
        stamps = self.stamps
        if b - current >= n:
            for i in range(NCH):
                totals[i] = 0
        else:
            for index in range(current + 1 - n, b + 1 - n):
                slot = index % n
                if stamps[slot] == index:
                    old = self.buckets[slot]
                    for i in range(NCH):
                        totals[i] -= old[i]
        slot = b % n
        bucket = self.buckets[slot]
        if stamps[slot] != b:
            for i in range(NCH):
                bucket[i] = 0
            sketch = self.sketches[slot]
            for i in range(len(sketch)):
                sketch[i] = 0
            stamps[slot] = b
        self.current = b
        for i in range(len(self.unions)):
            self.unions[i] = None
        return bucket

    def union(self, sketch: int) -> int:
        """The union of one sketch over the buckets still in the window."""
        cached = self.unions[sketch]
        if cached is not None:
            return cached
        low = self.current - self.n
        union = 0
        for stamp, sketches in zip(self.stamps, self.sketches, strict=True):
            if stamp > low:
                union |= sketches[sketch]
        self.unions[sketch] = union
        return union


class Windows:
    """Counts and sums of the channels over the last 1 min, 5 min and 1 h.

    Buckets are 10 s, 30 s and 5 min wide; a window is its whole buckets, so it covers its
    span less at most one bucket at the far edge. The 1 h window also keeps `sketches`
    bitmaps per bucket for distinct counts (records, datasets, IPs). Call `advance(ts)` once
    per event, then the other methods, which act on the buckets of that moment.
    """

    __slots__ = ("_at", "_buckets", "_sketch", "five", "hour", "minute")

    def __init__(self, sketches: int = 0) -> None:
        self.minute = _Ring(*_RINGS[0], 0)
        self.five = _Ring(*_RINGS[1], 0)
        self.hour = _Ring(*_RINGS[2], sketches)
        self._buckets: tuple[list[int], list[int], list[int]] = ([], [], [])
        self._sketch: list[int] = []
        self._at = -1  # the finest bucket advanced to; coarser ones cannot have moved since

    def advance(self, ts: float) -> tuple[list[int], list[int], list[int]]:
        """Move to `ts`; returns the channel totals over (1 min, 5 min, 1 h)."""
        at = int(ts // _RINGS[0][0])
        if at <= self._at:
            return self.minute.totals, self.five.totals, self.hour.totals
        self._at = at
        hour = self.hour
        self._buckets = (self.minute.advance(ts), self.five.advance(ts), hour.advance(ts))
        self._sketch = hour.sketches[hour.current % hour.n]
        return self.minute.totals, self.five.totals, hour.totals

    def add_request(self, sequential: bool) -> None:
        """One request (and whether its record id follows the previous one)."""
        m, f, h = self._buckets
        tm, tf, th = self.minute.totals, self.five.totals, self.hour.totals
        m[COUNT] += 1
        f[COUNT] += 1
        h[COUNT] += 1
        tm[COUNT] += 1
        tf[COUNT] += 1
        th[COUNT] += 1
        if sequential:
            m[SEQ] += 1
            f[SEQ] += 1
            h[SEQ] += 1
            tm[SEQ] += 1
            tf[SEQ] += 1
            th[SEQ] += 1

    def add_result(self, status: int, bytes_out: int, records_out: int) -> None:
        """The outcome of one request."""
        m, f, h = self._buckets
        tm, tf, th = self.minute.totals, self.five.totals, self.hour.totals
        channel = _STATUS_CHANNEL.get(status)
        if channel is not None:
            m[channel] += 1
            f[channel] += 1
            h[channel] += 1
            tm[channel] += 1
            tf[channel] += 1
            th[channel] += 1
        if bytes_out:
            m[BYTES] += bytes_out
            f[BYTES] += bytes_out
            h[BYTES] += bytes_out
            tm[BYTES] += bytes_out
            tf[BYTES] += bytes_out
            th[BYTES] += bytes_out
        if records_out:
            m[RECORDS] += records_out
            f[RECORDS] += records_out
            h[RECORDS] += records_out
            tm[RECORDS] += records_out
            tf[RECORDS] += records_out
            th[RECORDS] += records_out

    def mark(self, sketch: int, bit: int) -> None:
        """Set `bit` in distinct-count sketch number `sketch` of the hour window."""
        self._sketch[sketch] |= bit
        unions = self.hour.unions
        cached = unions[sketch]
        if cached is not None:
            unions[sketch] = cached | bit

    def distinct(self, sketch: int, bits: int = SKETCH_BITS) -> float:
        """Estimated distinct values marked in sketch `sketch` over the last hour."""
        return distinct_estimate(self.hour.union(sketch), bits)

    def totals(self) -> tuple[list[int], list[int], list[int]]:
        """Channel totals over (1 min, 5 min, 1 h) as of the last `advance`."""
        return self.minute.totals, self.five.totals, self.hour.totals
