"""Policy decision latency, cached and uncached, at 10,000 policy rows over 200 datasets.

Run: .venv/bin/python loadtests/bench_policy.py [--rows 10000] [--datasets 200] [--requests 20000]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.identity.principal import Principal
from gateway.policy.bundle import load_bundle
from gateway.policy.catalog import Dataset
from gateway.policy.decider import Decider, NoGrants

ACTIONS = ["read", "list", "export", "write"]
PURPOSES = [f"purpose-{i}" for i in range(20)]
DEPARTMENTS = [f"dept-{i}" for i in range(40)]
ROLES = [f"role-{i}" for i in range(30)]


def write_policy(directory: Path, rows: int, datasets: int, rng: random.Random) -> None:
    lines = ["version: 1", "datasets:"]
    for i in range(datasets):
        sharing = ("conditional", "conditional", "unconditional", "none")[i % 4]
        level = 1 + i % 4
        masked = (
            f"\n    masked_from_clearance: {max(1, level - 1)}" if sharing == "conditional" else ""
        )
        lines.append(
            f"  - id: ds-{i}\n    route: /api/ds-{i}/\n    upstream: demo\n"
            f"    owner: {DEPARTMENTS[i % len(DEPARTMENTS)]}\n    level: {level}\n"
            f"    sharing: {sharing}{masked}"
        )
    (directory / "catalog.yaml").write_text("\n".join(lines) + "\n")
    shutil.copy(Path(__file__).resolve().parents[1] / "policies" / "model.conf", directory)
    out = []
    for n in range(rows):
        dataset = f"ds-{n % datasets}"
        kind = rng.random()
        if kind < 0.4:
            sub = f"dept:{rng.choice(DEPARTMENTS)}"
        elif kind < 0.8:
            sub = f"role:{rng.choice(ROLES)}"
        else:
            sub = f"user:u{rng.randrange(2000)}"
        acts = "|".join(sorted(rng.sample(ACTIONS, rng.randint(1, 2))))
        eft = "deny" if rng.random() < 0.05 else "allow"
        purpose = "|".join(rng.sample(PURPOSES, 2)) if rng.random() < 0.7 else "*"
        hours = "08-18" if rng.random() < 0.3 else "*"
        days = "mon-fri" if rng.random() < 0.3 else "*"
        clearance = str(rng.randint(1, 4)) if rng.random() < 0.3 else "*"
        # Row n + a unique user keeps every row distinct.
        out.append(f"p, {sub}, {dataset}, {acts}, {eft}, {purpose}, {hours}, {days}, {clearance}")
    (directory / "policy.csv").write_text("\n".join(out) + "\n")


def principals(rng: random.Random, count: int) -> list[Principal]:
    return [
        Principal(
            f"u{rng.randrange(2000)}",
            rng.choice(DEPARTMENTS),
            rng.randint(1, 4),
            frozenset(rng.sample(ROLES, rng.randint(0, 3))),
        )
        for _ in range(count)
    ]


def measure(fn: Callable[[], object], count: int, cpu: bool = False) -> list[float]:
    """Microseconds per call: wall-clock, or with `cpu` this thread's CPU time, which leaves
    out the time spent waiting for a core (on a busy machine, most of the wall-clock tail)."""
    clock = time.thread_time_ns if cpu else time.perf_counter_ns
    samples = []
    for _ in range(count):
        start = clock()
        fn()
        samples.append((clock() - start) / 1000)
    return samples


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--datasets", type=int, default=200)
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args()
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        write_policy(directory, args.rows, args.datasets, rng)
        started = time.perf_counter()
        bundle = load_bundle(directory, time.time())
        load_s = time.perf_counter() - started
    ts = datetime(2026, 1, 5, 10, tzinfo=UTC).timestamp()
    datasets: list[Dataset] = list(bundle.catalog.datasets.values())
    callers = principals(rng, 500)
    requests = [
        (
            rng.choice(callers),
            rng.choice([*PURPOSES, None]),
            rng.choice(datasets),
            rng.choice(ACTIONS),
        )
        for _ in range(args.requests)
    ]

    uncached = Decider(lambda: bundle, NoGrants(), UTC, cache_size=0)
    it = iter(requests)
    un = measure(lambda: uncached.decide(*next(it), ts), len(requests))
    it_cpu = iter(requests)
    un_cpu = measure(lambda: uncached.decide(*next(it_cpu), ts), len(requests), cpu=True)

    cached = Decider(lambda: bundle, NoGrants(), UTC, cache_size=len(requests) * 2)
    hot = requests[:2000]
    for r in hot:
        cached.decide(*r, ts)
    it2 = iter(hot * (len(requests) // len(hot)))
    ca = measure(lambda: cached.decide(*next(it2), ts), len(hot) * (len(requests) // len(hot)))

    # Baseline from the same run: the cost of a bare dict lookup through a Python call.
    table = {i: i for i in range(1000)}
    base = measure(lambda: table.get(5), len(ca))

    allowed = sum(uncached.decide(*r, ts).allowed for r in requests[:2000])
    print(
        f"policy: {len(bundle.rows)} rows over {len(datasets)} datasets, "
        f"loaded in {load_s * 1000:.0f} ms"
    )
    print(f"requests: {len(requests)} uncached, {len(ca)} cached; {allowed / 20:.0f}% allowed")
    print(f"{'':10}{'p50 µs':>10}{'p99 µs':>10}{'mean µs':>10}{'target p99':>12}")
    for name, samples, target in (
        ("uncached", un, "<= 2000"),
        ("  cpu", un_cpu, "<= 2000"),
        ("cached", ca, "<= 20"),
        ("baseline", base, "-"),
    ):
        print(
            f"{name:10}{pct(samples, 0.5):10.1f}{pct(samples, 0.99):10.1f}"
            f"{statistics.fmean(samples):10.1f}{target:>12}"
        )
    print(
        f"ratios: uncached p99 / target {pct(un, 0.99) / 2000:.2f} (cpu "
        f"{pct(un_cpu, 0.99) / 2000:.2f}), cached p99 / target {pct(ca, 0.99) / 20:.2f}, "
        f"cached p50 / baseline p50 {pct(ca, 0.5) / pct(base, 0.5):.1f}"
    )
    print(f"load average during the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
