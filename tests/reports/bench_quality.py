"""What the report counters cost on the request path: the masking walk of 1,000 population
records with and without the data-quality observer, and the usage sink per access event.

    .venv/bin/python -m tests.reports.bench_quality

Best of 20 rounds; the walk without the observer is the baseline measured in the same run.
"""

from __future__ import annotations

import copy
import random
import time
from pathlib import Path

from gateway.masking.config import MaskingConfig
from gateway.masking.identifiers import make_mobile, make_resident_id
from gateway.masking.plan import MaskPlan, PlanCache, Walker
from gateway.policy.catalog import load_catalog
from gateway.reports.quality import Quality
from gateway.reports.usage import Usage

REPO = Path(__file__).resolve().parents[2]


def walk(plan: MaskPlan, records: list[dict], rounds: int = 20) -> float:
    best = float("inf")
    for _ in range(rounds):
        data = copy.deepcopy(records)
        started = time.perf_counter()
        Walker(plan, b"", "***").records(data)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    dataset = load_catalog(REPO / "policies" / "catalog.yaml").datasets["population"]
    rng = random.Random(1)
    records = [
        {
            "id": i,
            "name": "张三",
            "id_card": make_resident_id(rng),
            "phone": make_mobile(rng),
            "address": "北京市朝阳区建国路88号",
            "birth_date": "1949-12-31",
            "gender": "M",
        }
        for i in range(1000)
    ]
    quality = Quality()
    plain = PlanCache(MaskingConfig()).get(dataset, 2)
    observed = PlanCache(
        MaskingConfig(), lambda d: quality.observer(d.id, frozenset(f.name for f in d.fields))
    ).get(dataset, 2)
    base, with_quality = walk(plain, records), walk(observed, records)
    values = len(records) * len(plain.by_name)
    print(
        f"walk of 1000 records at clearance 2: {base * 1e3:.2f} ms, with the quality observer "
        f"{with_quality * 1e3:.2f} ms ({with_quality / base:.2f}x; "
        f"{(with_quality - base) / values * 1e6:.2f} us per classified value)"
    )
    usage = Usage(keep_days=31)
    event = {
        "type": "access",
        "dataset": "population",
        "department": "civil-affairs",
        "principal": "p",
        "decision": "allow",
        "status": 200,
        "records_out": 1,
        "bytes_out": 100,
        "masked_fields": {"name": 1},
    }
    started = time.perf_counter()
    for i in range(100_000):
        usage.add(event, 1_796_000_000.0 + i)
    print(f"usage sink: {(time.perf_counter() - started) / 100_000 * 1e6:.2f} us per access event")


if __name__ == "__main__":
    main()
