"""Fuzzing the body codecs: fed in any chunks, a body masks to the same bytes (and the same
report) as when it is masked whole; a body that cannot be masked gives a MaskingError,
whole or streamed, and never another exception.

Extends tests/masking/test_mask_codecs.py (formats and failures by name).
"""

from __future__ import annotations

import csv
from typing import Any

from hypothesis import event, given
from hypothesis import strategies as st

from gateway.masking.codecs import MaskReport, open_transform
from gateway.masking.errors import MaskingError
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
from tests.fuzz.test_fuzz_masking import CONFIG, PLANS

CONTENT_TYPES = [
    "application/json",
    "application/x-ndjson",
    "text/csv; charset=utf-8",
    "text/tab-separated-values",
]
Result = tuple[bytes, MaskReport] | MaskingError


def transform(content_type: str, encoding: str | None, clearance: int) -> Any:
    return open_transform(
        PLANS[clearance],
        CONFIG,
        content_type=content_type,
        content_encoding=header_of(encoding),
        content_length=None,
        key=b"consumer-key",
    )


def whole(body: bytes, content_type: str, encoding: str | None, clearance: int) -> Result:
    t = transform(content_type, encoding, clearance)
    try:
        return t.whole(body), t.report
    except MaskingError as exc:
        return exc


def streamed(
    body: bytes, content_type: str, encoding: str | None, clearance: int, cuts: list[int]
) -> Result:
    t = transform(content_type, encoding, clearance)
    try:
        out = [t.feed(piece) for piece in chunks(body, cuts)]
        out.append(t.finish())
    except MaskingError as exc:
        return exc
    return b"".join(out), t.report


def assert_same(a: Result, b: Result) -> None:
    if isinstance(a, MaskingError) or isinstance(b, MaskingError):
        assert isinstance(a, MaskingError) and isinstance(b, MaskingError), (a, b)
        event("refused both ways")
        return
    event("masked both ways")
    (out_a, report_a), (out_b, report_b) = a, b
    assert out_a == out_b
    assert report_a.records_out == report_b.records_out
    assert report_a.masked_fields == report_b.masked_fields
    assert report_a.findings == report_b.findings


@st.composite
def bodies(draw: st.DrawFn) -> tuple[bytes, str]:
    """A valid body of one of the four formats, built from a generated document."""
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    records = [value for value, _ in draw(st.lists(documents(), min_size=1, max_size=4))]
    escapes = draw(st.lists(st.booleans(), max_size=8))
    if content_type == "application/json":
        shape = draw(st.sampled_from(["array", "keyed", "document"]))
        value: Any = records if shape == "array" else records[0]
        if shape == "keyed":
            value = {"items": records, "total": len(records)}
        return escape_some(json_text(value), escapes).encode(), content_type
    if content_type == "application/x-ndjson":
        lines = [escape_some(json_text(v), escapes) for v in records]
        sep = draw(st.sampled_from(["\n", "\r\n"]))
        return (sep.join(lines) + sep).encode(), content_type
    rows = [
        {str(k): v if isinstance(v, str) else json_text(v) for k, v in r.items()}
        if isinstance(r, dict)
        else {"value": json_text(r)}
        for r in records
    ]
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
    delimiter = "\t" if content_type.startswith("text/tab") else ","
    return csv_body(rows, delimiter, quoting), content_type


common = {
    "encoding": st.sampled_from(ENCODINGS),
    "cuts": st.lists(st.integers(0, 1 << 20), max_size=16),
    "clearance": st.sampled_from([1, 2]),
}


@fuzz(300)
@given(body=bodies(), **common)
def test_streaming_masks_like_the_whole_body(
    body: tuple[bytes, str], encoding: str | None, cuts: list[int], clearance: int
) -> None:
    raw, content_type = body
    packed = compress(raw, encoding)
    expected = whole(packed, content_type, encoding, clearance)
    # Valid bodies mask, but a CSV whose header names no classified column is refused.
    assert not isinstance(expected, MaskingError) or expected.reason == "unmaskable_csv", expected
    assert_same(expected, streamed(packed, content_type, encoding, clearance, cuts))


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 16), st.integers(1, 255)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 16), st.integers(0, 255)),
    st.tuples(st.just("delete"), st.integers(0, 1 << 16), st.just(0)),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 16), st.just(0)),
)


def mutate(data: bytes, steps: list[tuple[str, int, int]]) -> bytes:
    buf = bytearray(data)
    for kind, at, byte in steps:
        i = at % (len(buf) + 1)
        if kind == "flip" and buf:
            buf[i % len(buf)] ^= byte
        elif kind == "insert":
            buf.insert(i, byte)
        elif kind == "delete" and buf:
            del buf[i % len(buf)]
        elif kind == "truncate":
            del buf[i:]
    return bytes(buf)


@fuzz(300)
@given(
    body=bodies(),
    steps=st.lists(mutation, min_size=1, max_size=4),
    after_compression=st.booleans(),
    content_type=st.sampled_from(CONTENT_TYPES) | st.none(),
    **common,
)
def test_a_broken_body_is_refused_with_a_masking_error_both_ways(
    body: tuple[bytes, str],
    steps: list[tuple[str, int, int]],
    after_compression: bool,
    content_type: str | None,
    encoding: str | None,
    cuts: list[int],
    clearance: int,
) -> None:
    raw, own_type = body
    packed = (
        mutate(compress(raw, encoding), steps)
        if after_compression
        else compress(mutate(raw, steps), encoding)
    )
    kind = content_type or own_type  # sometimes a body under another format's type
    assert_same(
        whole(packed, kind, encoding, clearance),
        streamed(packed, kind, encoding, clearance, cuts),
    )


@fuzz(300)
@given(
    data=st.binary(max_size=400),
    content_type=st.sampled_from(CONTENT_TYPES),
    **common,
)
def test_arbitrary_bytes_are_masked_or_refused_never_an_exception(
    data: bytes, content_type: str, encoding: str | None, cuts: list[int], clearance: int
) -> None:
    assert_same(
        whole(data, content_type, encoding, clearance),
        streamed(data, content_type, encoding, clearance, cuts),
    )
