"""Data-quality observations made while responses are masked (no parse of their own): per
dataset and field, empty or missing values and values failing their check, with sample ids
of failing records (never the values) for the owner; Prometheus counters at scrape time."""

from __future__ import annotations

import collections
import datetime as dt
import re
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from gateway.masking import scanner
from gateway.masking.identifiers import is_bank_card, is_resident_id, is_uscc
from gateway.masking.plan import MaskPlan
from gateway.masking.strategies import fold

_MOBILE = re.compile(r"(?:\+?86[- ]?)?1[3-9]\d{9}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_SAFE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def _date(value: str) -> bool:
    try:
        dt.date.fromisoformat(value[:10])
    except ValueError:
        return False
    return len(value) == 10 or value[10] in "T "


# strategy -> is the (folded, stripped) value well formed for it; identifiers by their
# checksum and date (GB 11643, GB 32100, Luhn), the rest by format.
CHECKS: dict[str, Callable[[str], bool]] = {
    "resident_id": is_resident_id,
    "uscc": lambda v: is_uscc(v.upper()),
    "bank_card": lambda v: is_bank_card(v.replace(" ", "").replace("-", "")),
    "mobile": lambda v: _MOBILE.fullmatch(v) is not None,
    "email": lambda v: _EMAIL.fullmatch(v) is not None,
    "date": _date,
}
OUTCOMES = ("seen", "empty", "missing", "invalid")


class _Field:
    __slots__ = ("counts", "samples", "strategy")

    def __init__(self, strategy: str, samples: int) -> None:
        self.strategy = strategy
        self.counts = dict.fromkeys(OUTCOMES, 0)
        self.samples: collections.deque[str] = collections.deque(maxlen=samples)


class Quality:
    """The counts of every process-local observation, keyed by dataset and field label."""

    def __init__(self, samples: int = 20) -> None:
        self._samples = samples
        self._fields: dict[tuple[str, str], _Field] = {}

    def observer(self, dataset_id: str, id_fields: frozenset[str]) -> Observer:
        """The walk's hook for one dataset; `id_fields` are the dataset's catalogued field
        names, never used as a sample id (they may be the identifiers themselves)."""
        return Observer(self, dataset_id, id_fields)

    def field(self, dataset: str, label: str, strategy: str) -> _Field:
        key = (dataset, label)
        found = self._fields.get(key)
        if found is None:
            found = self._fields[key] = _Field(strategy, self._samples)
        return found

    def snapshot(self, owned: Callable[[str], bool] = lambda _: False) -> dict[str, Any]:
        """Counts and shares per dataset and field; sample record ids only for datasets
        `owned` says the caller owns."""
        rows = []
        for (dataset, label), f in sorted(self._fields.items()):
            c = f.counts
            expected = c["seen"] + c["missing"]
            present = c["seen"] - c["empty"]
            checked = f.strategy in CHECKS
            row: dict[str, Any] = {
                "dataset": dataset,
                "field": label,
                "strategy": f.strategy,
                **c,
                "empty_or_missing_share": _share(c["empty"] + c["missing"], expected),
                "invalid_share": _share(c["invalid"], present) if checked else None,
            }
            if owned(dataset):
                row["sample_record_ids"] = list(f.samples)
            rows.append(row)
        return {"fields": rows}

    def collector(self) -> Collector:
        return _QualityCollector(self)


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


class Observer:
    """Called by the masking walk for each classified field value it visits and for each
    record it starts, with what it already holds: no second parse, no copy. The work per
    value is a few dict operations and the strategy's check; a record's sample id is only
    worked out when one of its values fails."""

    __slots__ = ("_dataset", "_fields", "_id_fields", "_missing", "_quality", "_record", "_records")

    def __init__(self, quality: Quality, dataset: str, id_fields: frozenset[str]) -> None:
        self._quality = quality
        self._dataset = dataset
        self._id_fields = id_fields
        self._fields: dict[str, _Field] = {}  # label -> its counts (this dataset's)
        # Records repeat their keys: key tuple -> the (label, strategy) pairs they lack.
        self._missing: dict[tuple[str, ...], tuple[tuple[str, str], ...]] = {}
        self._record: Any = None  # the record being walked (for its sample id)
        self._records: list[Any] | None = None

    def document(self, value: Any, plan: MaskPlan) -> None:
        """A whole document begins: it is the record (if it is one), and its records array
        (top level, or under the dataset's records_key) is remembered so the walk reports
        each of its records."""
        self._record = value
        rows = value
        if type(value) is dict:
            rows = value.get(plan.records_key) if plan.records_key else None
        self._records = rows if type(rows) is list else None

    def holds_records(self, items: list[Any]) -> bool:
        return items is self._records

    def record(self, record: dict[str, Any], plan: MaskPlan) -> None:
        """A record begins: the plan's fields absent from it are missing."""
        self._record = record
        shape = tuple(record)
        lacking = self._missing.get(shape)
        if lacking is None:
            present = {rule.label for key in shape if (rule := plan.rule_for(key)) is not None}
            lacking = tuple(
                (rule.label, rule.strategy)
                for rule in plan.by_name.values()
                if rule.label not in present
            )
            if len(self._missing) < 1000:
                self._missing[shape] = lacking
        for label, strategy in lacking:
            self._field(label, strategy).counts["missing"] += 1

    def _field(self, label: str, strategy: str) -> _Field:
        found = self._fields.get(label)
        if found is None:
            found = self._fields[label] = self._quality.field(self._dataset, label, strategy)
        return found

    def _sample_id(self) -> str | None:
        """The record's `id`, unless it is a catalogued field or holds an identifier."""
        record = self._record
        rid = record.get("id") if type(record) is dict else None
        if "id" in self._id_fields or type(rid) not in (int, str):
            return None
        text = str(rid)
        if not _SAFE_ID.fullmatch(text) or scanner.kinds_in(text):
            return None
        return text

    def value(self, label: str, strategy: str, value: Any) -> None:
        f = self._fields.get(label) or self._field(label, strategy)
        counts = f.counts
        counts["seen"] += 1
        t = type(value)
        if t is not str:
            if value is None or value == [] or value == {}:
                counts["empty"] += 1
                return
            if t is not int and t is not float:
                return
            value = str(value)
        text = (value if value.isascii() else fold(value)).strip()
        if not text:
            counts["empty"] += 1
            return
        check = CHECKS.get(strategy)
        if check is not None and not check(text):
            counts["invalid"] += 1
            sample = self._sample_id()
            if sample is not None:
                f.samples.append(sample)


class _QualityCollector(Collector):
    def __init__(self, quality: Quality) -> None:
        self._quality = quality

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "datagate_quality_values",
            "Classified field values seen while masking, by outcome: seen, empty, missing "
            "(absent from a record), invalid (failing the strategy's checksum, date or format)",
            labels=["dataset", "field", "strategy", "outcome"],
        )
        for (dataset, label), f in list(self._quality._fields.items()):
            for outcome, n in f.counts.items():
                family.add_metric([dataset, label, f.strategy, outcome], n)
        yield family
