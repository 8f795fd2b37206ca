"""Benchmark of the detectors: online observe+record+model per event, replay rate, fast scorer.

Run: .venv/bin/python loadtests/bench_detectors.py [--principals 60] [--seed 0]
Prints each figure with its target; ratios are against scikit-learn measured in the same run.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from detectors.config import DetectionConfig
from detectors.events import event_from_dict
from detectors.model import fit_forest
from detectors.online import Detector
from detectors.replay import score_events
from detectors.scenarios import generate
from detectors.training import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--principals", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    scenario = generate(args.seed, principals=args.principals, history_days=6, test_days=2)
    history = [event_from_dict(e) for e in scenario.history]
    test = [event_from_dict(e) for e in scenario.test]
    config = DetectionConfig()
    model, _ = train(history, config, holdout_days=2, seed=args.seed)
    print(f"data: {len(history)} history events, {len(test)} test events")

    # Online: observe + record per event, model batches of batch_size scored inline.
    # Best of --repeats runs, each with a fresh detector: the machine may be shared.
    batch = config.model.batch_size
    for label, used in (("rules+features, no model", None), ("observe+record+model", model)):
        online = math.inf
        for _ in range(args.repeats):
            detector = Detector(config, used)
            start = time.perf_counter()
            for event in test:
                detector.observe(event)
                detector.record(event, observed=True)
                if detector.pending >= batch:
                    detector.score_pending()
            detector.score_pending()
            online = min(online, (time.perf_counter() - start) / len(test) * 1e6)
        print(f"online {label}: {online:.1f} us/event (target <= 50 with the model)")

    # Replay: time-ordered scoring of already parsed events, then parsing alone.
    rate = 0.0
    for _ in range(args.repeats):
        detector = Detector(config, model)
        start = time.perf_counter()
        score_events(detector, test)
        rate = max(rate, len(test) / (time.perf_counter() - start))
    print(f"replay (scoring): {rate:,.0f} events/s (target >= 20,000)")
    start = time.perf_counter()
    parsed = [event_from_dict(e) for e in scenario.test]
    parse_rate = len(parsed) / (time.perf_counter() - start)
    print(f"event parsing: {parse_rate:,.0f} events/s")

    # Fast scorer against scikit-learn on the same rows.
    rows = np.asarray(detector_vectors(config, model, test), dtype=np.float64)
    forest = fit_forest(rows[: min(len(rows), 20000)], seed=args.seed)
    from detectors.model import FastForest

    fast = FastForest.from_sklearn(forest)
    sample = rows[:batch]
    fast_us = math.inf
    for _ in range(40):
        start = time.perf_counter()
        fast.anomaly(sample)
        fast_us = min(fast_us, (time.perf_counter() - start) / len(sample) * 1e6)
    start = time.perf_counter()
    for _ in range(5):
        forest.score_samples(sample)
    sk_us = (time.perf_counter() - start) / 5 / len(sample) * 1e6
    start = time.perf_counter()
    for row in sample[:20]:
        forest.score_samples(row[None, :])
    sk_one = (time.perf_counter() - start) / 20 * 1e6
    diff = float(np.abs(fast.anomaly(sample) + forest.score_samples(sample)).max())
    print(
        f"fast scorer, batch {len(sample)}: {fast_us:.1f} us/row (target <= 20); "
        f"scikit-learn batch {sk_us:.1f} us/row ({sk_us / fast_us:.1f}x), "
        f"one row {sk_one:.0f} us ({sk_one / fast_us:.0f}x); max |diff| {diff:.1e}"
    )


def detector_vectors(config: DetectionConfig, model: object, events: list) -> list[list[float]]:
    """Feature rows for the events, as the online detector computes them."""
    detector = Detector(config, model)  # type: ignore[arg-type]
    for event in events:
        detector.record(event, observed=False)
    return detector.take_vectors()[0].tolist()


if __name__ == "__main__":
    main()
