"""Masking benchmark: MB/s per body format, scanner MB/s, and the cost of one masked 1 KB record.

    .venv/bin/python loadtests/bench_masking.py            # 1 MB bodies
    .venv/bin/python loadtests/bench_masking.py --big      # also 100 MB bodies (streamed)

Each figure is printed next to a baseline measured in the same run (orjson loads+dumps of
the same bytes, or the csv module's read+write), so ratios survive a change of machine.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import time
from collections.abc import Callable, Iterator

import orjson

from gateway.configtree import build
from gateway.masking import scanner
from gateway.masking.codecs import open_transform
from gateway.masking.config import MaskingConfig
from gateway.masking.identifiers import make_bank_card, make_mobile, make_resident_id
from gateway.masking.plan import MaskPlan, compile_plan
from gateway.policy.catalog import Dataset

MB = 1_000_000
CHUNK = 64 * 1024
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚"
DISTRICTS = ("北京市朝阳区", "上海市黄浦区", "广东省深圳市南山区", "四川省成都市武侯区")
STREETS = ("建国路88号院3号楼2单元501", "人民路12号", "科技园南区深南大道9988号", "武侯祠大街231号")
FILLER = "客户于营业厅办理社保关系转移业务，资料齐全，已按流程审核通过并归档。"

DATASET = {
    "id": "citizens",
    "route": "/api/citizens/",
    "upstream": "http://upstream",
    "owner": "population",
    "level": 3,
    "fields": [
        {"name": "name", "level": 3, "strategy": "name"},
        {"name": "id_card", "level": 3, "strategy": "resident_id"},
        {"name": "mobile", "level": 3, "strategy": "mobile"},
        {"name": "email", "level": 3, "strategy": "email"},
        {"name": "address", "level": 3, "strategy": "address"},
        {"name": "birth_date", "level": 3, "strategy": "date"},
        {"name": "bank_card", "level": 3, "strategy": "bank_card"},
        {"name": "income", "level": 3, "strategy": "bucket", "params": {"size": 5000}},
        {"name": "diagnosis", "level": 4, "strategy": "redact"},
    ],
}


def record(rng: random.Random, i: int) -> dict[str, object]:
    """About 1 KB: classified fields, plain fields, and free text (one in four with an ID)."""
    remarks = FILLER * 4
    if i % 4 == 0:
        remarks += f"联系电话{make_mobile(rng)}，证件号{make_resident_id(rng)}。"
    return {
        "id": i,
        "name": rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN),
        "id_card": make_resident_id(rng),
        "mobile": make_mobile(rng),
        "email": f"user{i}@example.com",
        "address": rng.choice(DISTRICTS) + rng.choice(STREETS),
        "birth_date": f"19{rng.randrange(40, 99)}-0{rng.randrange(1, 9)}-1{rng.randrange(0, 9)}",
        "bank_card": make_bank_card(rng),
        "income": rng.randrange(2000, 60000),
        "diagnosis": "无",
        "status": "active",
        "department": "social-security",
        "updated_at": "2026-11-20T09:30:00+08:00",
        "score": round(rng.random() * 100, 2),
        "tags": ["resident", "insured"],
        "remarks": remarks,
    }


def records(n: int, seed: int = 7) -> list[dict[str, object]]:
    rng = random.Random(seed)
    return [record(rng, i) for i in range(n)]


def csv_bytes(rows: list[dict[str, object]]) -> bytes:
    sink = io.StringIO()
    writer = csv.DictWriter(sink, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows({**r, "tags": ";".join(r["tags"])} for r in rows)  # type: ignore[arg-type]
    return sink.getvalue().encode()


Body = Callable[[], Iterator[bytes]]


def chunks(head: bytes, middle: bytes, tail: bytes, repeat: int, sep: bytes) -> Iterator[bytes]:
    """head, middle (sep) middle ... tail, in CHUNK-sized pieces, never all in memory."""
    pending = head
    for i in range(repeat):
        pending += (sep if i else b"") + middle
        while len(pending) >= CHUNK:
            yield pending[:CHUNK]
            pending = pending[CHUNK:]
    yield pending + tail


def run(plan: MaskPlan, config: MaskingConfig, ctype: str, body: Body) -> tuple[float, int]:
    """Mask one streamed body; MB/s of upstream bytes and the records sent."""
    total = 0
    start = time.perf_counter()
    transform = open_transform(
        plan, config, content_type=ctype, content_encoding=None, content_length=None, key=b"k"
    )
    for chunk in body():
        total += len(chunk)
        transform.feed(chunk)
    transform.finish()
    return total / (time.perf_counter() - start) / MB, transform.report.records_out


def baseline_json(data: bytes) -> float:
    start = time.perf_counter()
    orjson.dumps(orjson.loads(data))
    return len(data) / (time.perf_counter() - start) / MB


def baseline_csv(data: bytes) -> float:
    start = time.perf_counter()
    sink = io.StringIO()
    csv.writer(sink).writerows(csv.reader(io.StringIO(data.decode(), newline="")))
    return len(data) / (time.perf_counter() - start) / MB


def formats(rows: list[dict[str, object]]) -> dict[str, tuple[str, Callable[[int], Body], bytes]]:
    """Format name -> (content type, body of N copies of about 1 MB, 1 MB baseline sample)."""
    items = orjson.dumps(rows)
    lines = b"\n".join(orjson.dumps(r) for r in rows) + b"\n"
    table = csv_bytes(rows)
    header, _, body_rows = table.partition(b"\r\n")
    return {
        "JSON array": (
            "application/json",
            lambda n: lambda: chunks(b"[", items[1:-1], b"]", n, b","),
            items,
        ),
        "NDJSON": (
            "application/x-ndjson",
            lambda n: lambda: chunks(b"", lines, b"", n, b""),
            items,
        ),
        "CSV": (
            "text/csv",
            lambda n: lambda: chunks(header + b"\r\n", body_rows, b"", n, b""),
            table,
        ),
    }


def record_cost(plan: MaskPlan, config: MaskingConfig, one: bytes, n: int = 5000) -> float:
    start = time.perf_counter()
    for _ in range(n):
        transform = open_transform(
            plan,
            config,
            content_type="application/json",
            content_encoding=None,
            content_length=len(one),
            key=b"k",
        )
        transform.feed(one)
        transform.finish()
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--big", action="store_true", help="also stream 100 MB bodies")
    parser.add_argument("--clearance", type=int, default=2, help="the caller's clearance")
    args = parser.parse_args()
    config = build(MaskingConfig, {})
    plan = compile_plan(build(Dataset, DATASET), args.clearance, config)
    sample = records(200)
    rows = records(max(1, round(200 * MB / len(orjson.dumps(sample)))))
    print(f"record ~{len(orjson.dumps(rows)) // len(rows)} B; clearance {args.clearance}")
    print(f"{'body':<20}{'MB/s':>8}{'baseline MB/s':>15}{'ratio':>7}{'records':>10}")
    for size in (1, 100) if args.big else (1,):
        for name, (ctype, body, sample_bytes) in formats(rows).items():
            rate, count = max(
                run(plan, config, ctype, body(size)) for _ in range(5 if size == 1 else 1)
            )
            base = max(
                (baseline_csv if name == "CSV" else baseline_json)(sample_bytes) for _ in range(5)
            )
            label = f"{name} {size} MB"
            print(f"{label:<20}{rate:>8.1f}{base:>15.1f}{rate / base:>7.2f}{count:>10}")
    text = "".join(str(r["remarks"]) for r in rows).encode()
    start = time.perf_counter()
    for _ in range(5):
        scanner.scan_bytes(text, {})
    print(f"{'scanner, free text':<20}{5 * len(text) / (time.perf_counter() - start) / MB:>8.1f}")
    one = orjson.dumps(rows[0])
    masked_us = min(record_cost(plan, config, one) for _ in range(3))
    start = time.perf_counter()
    for _ in range(5000):
        orjson.dumps(orjson.loads(one))
    base_us = (time.perf_counter() - start) / 5000 * 1e6
    print(f"masked {len(one)} B record: {masked_us:.1f} µs (orjson loads+dumps: {base_us:.1f} µs)")


if __name__ == "__main__":
    main()
