"""Fuzzing the masking codecs for leaks: no valid identifier (resident ID, bank card, mobile,
USCC) reaches a caller below its level, whatever the nesting, placement, spelling, format,
compression or chunking. The oracle is the adversarial suite's (tests/security/helpers.py).

A body the codecs cannot mask is refused (MaskingError): that is safe, and counted.
"""

from __future__ import annotations

import csv
from typing import Any

import orjson
from hypothesis import event, given
from hypothesis import strategies as st

from gateway.masking.codecs import open_transform
from gateway.masking.config import MaskingConfig
from gateway.masking.errors import MaskingError
from gateway.masking.plan import MaskPlan, compile_plan
from tests.fuzz.bodies import (
    ENCODINGS,
    chunks,
    compress,
    csv_body,
    documents,
    escape_some,
    header_of,
    json_text,
)
from tests.fuzz.budget import fuzz
from tests.masking.mask_helpers import make_config, make_dataset
from tests.security.helpers import leaked_identifiers

FIELDS: list[dict[str, Any]] = [
    {"name": "id_card", "level": 3, "strategy": "resident_id"},
    {"name": "phone", "level": 3, "strategy": "mobile"},
    {"name": "bank_card", "level": 3, "strategy": "bank_card"},
    {"name": "name", "level": 3, "strategy": "name"},
    {"name": "diagnosis", "level": 4, "strategy": "remove"},
]
CONFIG = make_config(batch_bytes=1024)
PLANS = {
    clearance: compile_plan(make_dataset(fields=FIELDS, records_key="items"), clearance, CONFIG)
    for clearance in (1, 2)
}


def masked(
    plan: MaskPlan,
    config: MaskingConfig,
    body: bytes,
    content_type: str,
    encoding: str | None,
    cuts: list[int],
) -> bytes | MaskingError:
    transform = open_transform(
        plan,
        config,
        content_type=content_type,
        content_encoding=encoding,
        content_length=None,
        key=b"consumer-key",
    )
    try:
        out = [transform.feed(piece) for piece in chunks(body, cuts)]
        out.append(transform.finish())
    except MaskingError as exc:
        return exc
    return b"".join(out)


def check(body: bytes, content_type: str, encoding: str | None, cuts: list[int], clearance: int):
    out = masked(
        PLANS[clearance], CONFIG, compress(body, encoding), content_type, header_of(encoding), cuts
    )
    if isinstance(out, MaskingError):
        event(f"refused: {out.reason}")
        return
    event("masked")
    leaked = leaked_identifiers(out)
    assert not leaked, f"unmasked identifiers reached the client: {leaked}\n{out[:2000]!r}"


common = {
    "encoding": st.sampled_from(ENCODINGS),
    "cuts": st.lists(st.integers(0, 1 << 20), max_size=12),
    "clearance": st.sampled_from([1, 2]),
}


@fuzz(300)
@given(
    document=documents(),
    shape=st.sampled_from(["array", "keyed", "document"]),
    escapes=st.lists(st.booleans(), max_size=16),
    **common,
)
def test_no_identifier_leaks_from_json(
    document: tuple[Any, list[tuple[str, str]]],
    shape: str,
    escapes: list[bool],
    encoding: str | None,
    cuts: list[int],
    clearance: int,
) -> None:
    value, _ = document
    if shape == "array":
        value = value if isinstance(value, list) else [value]
    elif shape == "keyed":
        value = {"items": value if isinstance(value, list) else [value], "total": 1}
    text = escape_some(json_text(value), escapes)
    check(text.encode(), "application/json", encoding, cuts, clearance)


@fuzz(200)
@given(
    records=st.lists(documents(), min_size=1, max_size=5),
    escapes=st.lists(st.booleans(), max_size=16),
    **common,
)
def test_no_identifier_leaks_from_ndjson(
    records: list[tuple[Any, list[tuple[str, str]]]],
    escapes: list[bool],
    encoding: str | None,
    cuts: list[int],
    clearance: int,
) -> None:
    lines = [escape_some(json_text(value), escapes) for value, _ in records]
    body = ("\n".join(lines) + "\n").encode()
    check(body, "application/x-ndjson", encoding, cuts, clearance)


def cell(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


@fuzz(200)
@given(
    records=st.lists(documents(), min_size=1, max_size=5),
    tsv=st.booleans(),
    quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]),
    **common,
)
def test_no_identifier_leaks_from_csv(
    records: list[tuple[Any, list[tuple[str, str]]]],
    tsv: bool,
    quoting: int,
    encoding: str | None,
    cuts: list[int],
    clearance: int,
) -> None:
    rows = []
    for value, _ in records:
        flat = value if isinstance(value, dict) else {"value": value}
        rows.append({str(k): cell(v) for k, v in flat.items()})
    body = csv_body(rows, "\t" if tsv else ",", quoting)
    content_type = "text/tab-separated-values" if tsv else "text/csv; charset=utf-8"
    check(body, content_type, encoding, cuts, clearance)
