"""The hash chain: every kind of tampering is found and the first bad line is named."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.audit.chain import GENESIS, Checkpoint, scrub, seal, verify


def build(n: int) -> tuple[list[bytes], list[str]]:
    lines, hashes, prev = [], [], GENESIS
    for i in range(1, n + 1):
        line, prev = seal(
            {"request_id": f"r{i}", "status": 200, "ts": "2026-01-01T00:00:00Z"}, i, prev
        )
        lines.append(line)
        hashes.append(prev)
    return lines, hashes


def test_an_intact_log_verifies() -> None:
    lines, hashes = build(5)
    v = verify(lines, [Checkpoint(1, 3, hashes[2]), Checkpoint(2, 5, hashes[4])])
    assert (v.ok, v.records, v.head, v.line) == (True, 5, hashes[4], None)


def test_an_empty_log_verifies() -> None:
    assert verify([]).ok


def test_an_edited_record_is_named() -> None:
    lines, _ = build(5)
    lines[2] = lines[2].replace(b'"status":200', b'"status":403')
    v = verify(lines)
    assert (v.ok, v.line) == (False, 3)
    assert "edited" in v.problem


def test_a_deleted_record_is_named_at_the_next_line() -> None:
    lines, _ = build(5)
    del lines[1]
    v = verify(lines)
    assert (v.line, v.problem) == (
        2,
        "seq 3 where 2 was expected: records before it were deleted or moved",
    )


def test_an_inserted_record_is_named() -> None:
    lines, hashes = build(5)
    forged, _ = seal({"request_id": "evil"}, 3, hashes[1])
    lines.insert(2, forged)
    v = verify(lines)
    assert v.line == 4 and "inserted or reordered" in v.problem


def test_reordered_records_are_named() -> None:
    lines, _ = build(5)
    lines[1], lines[2] = lines[2], lines[1]
    v = verify(lines)
    assert v.line == 2 and "deleted or moved" in v.problem


def test_a_rechained_rewrite_is_caught_by_a_checkpoint() -> None:
    lines, hashes = build(5)
    rewritten, prev = [], GENESIS
    for i, raw in enumerate(lines, start=1):
        record = orjson.loads(raw)
        if i == 2:
            record["status"] = 403
        line, prev = seal(record, i, prev)
        rewritten.append(line)
    assert verify(rewritten).ok  # the chain alone cannot tell
    v = verify(rewritten, [Checkpoint(7, 4, hashes[3])])
    assert v.line == 4 and "checkpoints line 7" in v.problem


def test_a_truncated_tail_behind_a_checkpoint_is_named() -> None:
    lines, hashes = build(5)
    v = verify(lines[:3], [Checkpoint(1, 5, hashes[4])])
    assert (v.ok, v.line) == (False, 4)
    assert v.problem == (
        "log ends after record 3 but checkpoints line 1 covers 5 records: the tail was truncated"
    )


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (b'{"seq": 1', "the line is cut short (no newline): truncated or edited"),
        (b"garbage\n", "not valid JSON: edited or truncated"),
        (b'{"a": 1}\n', "missing the chain fields seq, prev, hash: edited or inserted"),
        (b'{"seq": "1", "prev": "", "hash": ""}\n', "seq is not an integer: edited"),
    ],
)
def test_malformed_lines_are_named(line: bytes, problem: str) -> None:
    lines, _ = build(2)
    v = verify([lines[0], line, lines[1]])
    assert (v.line, v.problem) == (2, problem)


def test_secrets_are_dropped_at_any_depth_and_chain_fields_overwritten() -> None:
    record = {
        "Authorization": "Bearer eyJ-secret-token",
        "headers": {"cookie": "s=1", "accept": "x"},
        "items": [{"token": "t", "ok": 1}],
        "seq": 99,
        "hash": "forged",
        3: object(),
    }
    line, _ = seal(record, 1, GENESIS)
    assert b"eyJ-secret-token" not in line and b"s=1" not in line and b'"t"' not in line
    data = orjson.loads(line)
    assert data["headers"] == {"accept": "x"} and data["items"] == [{"ok": 1}]
    assert data["seq"] == 1 and data["hash"] != "forged" and "3" in data
    assert scrub({"TOKEN": 1, "token_id": "jti-1"}) == {"token_id": "jti-1"}


@settings(deadline=None)  # no timing in unit tests; the machine may be busy
@given(
    st.dictionaries(
        st.text(max_size=8),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(-(2**53), 2**53),
            st.floats(allow_nan=False),
            st.text(max_size=20),
        ),
        max_size=6,
    )
)
def test_any_json_record_seals_into_a_verifiable_line(record: dict[str, object]) -> None:
    line, _ = seal(record, 1, GENESIS)
    assert verify([line]).ok


def test_values_json_cannot_carry_are_made_safe() -> None:
    line, _ = seal({"big": 2**70, "bad": "caf\udce9"}, 1, GENESIS)
    data = orjson.loads(line)
    assert data["big"] == str(2**70) and data["bad"] == "caf\\udce9"
    assert verify([line]).ok


@settings(deadline=None)  # no timing in unit tests; the machine may be busy
@given(
    st.dictionaries(
        st.sampled_from(["ts", "principal", "path", "status", "score", "hash", "seq", "prev"]),
        st.one_of(st.none(), st.integers(-(2**53), 2**53), st.text(max_size=20)),
        max_size=8,
    )
)
def test_a_trusted_record_seals_to_the_same_line_without_the_scrub(
    record: dict[str, object],
) -> None:
    """Access events skip the scrub: for records like them (the gateway's own keys and JSON
    types) the sealed line is byte for byte the scrubbed one, and the record is not changed."""
    before = dict(record)
    assert seal(record, 7, GENESIS, trusted=True) == seal(record, 7, GENESIS)
    assert record == before
    line, _ = seal({**record, "bad": "caf\udce9"}, 1, GENESIS, trusted=True)
    assert verify([line]).ok
