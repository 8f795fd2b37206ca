"""The comparison benchmark's own parts: wrk output, target selection, the chart."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests import bench

WRK = """Running 8s test @ http://127.0.0.1:1/api/enterprise/companies/1
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    10.86ms    2.10ms  40.11ms   90.00%
  Latency Distribution
     50%   10.10ms
     75%   11.00ms
     90%   12.50ms
     99%    1.20s
  23521 requests in 8.00s, 20.12MB read
  Non-2xx or 3xx responses: 3
  Socket errors: connect 0, read 1, write 0, timeout 2
Requests/sec:   2940.12
Transfer/sec:      2.51MB
"""


def test_wrk_output_is_read_with_its_units() -> None:
    result = bench.parse_wrk(WRK)
    assert (result.requests, result.seconds, result.rps) == (23521, 8.0, 2940.12)
    assert (result.p50_ms, result.p99_ms) == (10.10, 1200.0)
    assert result.failed == 3 + 1 + 2


def test_unexpected_wrk_output_is_a_bench_error() -> None:
    with pytest.raises(bench.BenchError, match="unexpected wrk output"):
        bench.parse_wrk("wrk: something else")


def test_targets_are_chosen_in_order_and_checked() -> None:
    args = bench.parse_args(["--targets", "memory,baseline,upstream", "--loadgen", "python"])
    assert args.targets == ["upstream", "baseline", "memory"]
    for bad in ("memory", "baseline,nginx"):
        with pytest.raises(SystemExit):
            bench.parse_args(["--targets", bad, "--loadgen", "python"])


def test_the_chart_is_a_png(tmp_path: Path) -> None:
    row = bench.LoadResult(requests=1000, seconds=1.0, rps=1000.0, p50_ms=5.0, p99_ms=9.0, failed=0)
    results = {"upstream": row, "baseline": row, "memory": row}
    half = {"memory": {"upstream": row, "baseline": row, "memory": row}}
    path = tmp_path / "bench.png"
    bench.write_chart(path, results, {name: 1.0 for name in results}, half)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
