"""The hash chain, as pure functions: seal records into lines, verify lines and checkpoints."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from gateway.lines import escape_separators

GENESIS = "0" * 64
CHAIN_FIELDS = ("seq", "prev", "hash")
# Keys whose values never reach the audit log, at any depth (compared lower-cased).
SECRET_KEYS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "token",
        "access_token",
        "id_token",
        "refresh_token",
        "bearer",
        "cookie",
        "set-cookie",
        "password",
        "passwd",
        "secret",
        "client_secret",
        "api_key",
        "apikey",
        "x-api-key",
        "signing_key",
        "private_key",
    }
)
_DUMP = orjson.OPT_SORT_KEYS
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


def scrub(value: Any) -> Any:
    """A copy with secret keys dropped at every depth, keys as strings, unknown types as str."""
    kind = type(value)
    # Exact-type checks, scalars handled inline: this runs for every audit record.
    if kind is dict or isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            key = k if type(k) is str else str(k)
            if key.lower() in SECRET_KEYS:
                continue
            vk = type(v)
            if (
                vk is str
                or vk is bool
                or vk is float
                or v is None
                or (vk is int and _INT_MIN <= v <= _INT_MAX)
            ):
                out[key] = v
            else:
                out[key] = scrub(v)
        return out
    if kind is str or kind is float or kind is bool or value is None:
        return value
    if kind is int:
        return value if _INT_MIN <= value <= _INT_MAX else str(value)  # 64-bit JSON readers
    if kind is list or isinstance(value, (tuple, set, frozenset)):
        return [scrub(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return scrub(int(value))
    if isinstance(value, (str, float)):
        return value
    return str(value)


def _clean_text(value: Any) -> Any:
    """Strings that are not valid UTF-8 (lone surrogates) made printable, at any depth."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_clean_text(k): _clean_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean_text(v) for v in value]
    return value


def canonical(record: Mapping[str, Any]) -> bytes:
    """Sorted-key compact JSON: the bytes the hash is computed over."""
    return orjson.dumps(record, option=_DUMP)


def seal(
    record: Mapping[str, Any], seq: int, prev: str, *, trusted: bool = False
) -> tuple[bytes, str]:
    """The log line (with newline) for `record` as number `seq` after hash `prev`, and its hash.

    Chain fields in `record` itself are overwritten. A `trusted` record was built by the
    gateway from typed fields (an access event): it holds only JSON types and no secret keys,
    so it skips the scrub, which costs more than the hash."""
    if trusted:
        body = dict(record)
        body.pop("hash", None)
    else:
        body = {k: v for k, v in scrub(record).items() if k not in CHAIN_FIELDS}
    body["seq"] = seq
    body["prev"] = prev
    try:
        data = canonical(body)
    except orjson.JSONEncodeError:
        data = canonical(_clean_text(body))
    digest = hashlib.sha256(data).hexdigest()
    # The hash is over the canonical bytes; the line escapes line separators, which parse
    # back to the same record (so `verify` recomputes the same hash).
    line = escape_separators(data[:-1]) + b',"hash":"' + digest.encode() + b'"}\n'
    return line, digest


@dataclasses.dataclass(frozen=True, slots=True)
class Checkpoint:
    line: int  # line number in the checkpoints file
    count: int
    head: str


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of a verification; `line` is the first bad line of the log (1-based)."""

    ok: bool
    records: int
    head: str
    line: int | None = None
    problem: str = ""


def verify(lines: Iterable[bytes], checkpoints: Iterable[Checkpoint] = ()) -> Verdict:
    """Recompute the chain; the first edited, deleted, inserted or reordered record fails it,
    and so does a checkpoint that covers more records than the log holds."""
    due: dict[int, Checkpoint] = {}
    for cp in checkpoints:
        due.setdefault(cp.count, cp)
    prev, count = GENESIS, 0
    for number, raw in enumerate(lines, start=1):
        digest, problem = _check_line(raw, count + 1, prev)
        if digest is None:
            return Verdict(False, count, prev, number, problem)
        prev, count = digest, count + 1
        cp = due.get(count)
        if cp is not None and cp.head != prev:
            return Verdict(
                False,
                count,
                prev,
                number,
                f"record {count} differs from signed checkpoint (checkpoints line {cp.line}): "
                "the log was rewritten",
            )
    beyond = [cp for cp in due.values() if cp.count > count]
    if beyond:
        cp = min(beyond, key=lambda c: c.count)
        return Verdict(
            False,
            count,
            prev,
            count + 1,
            f"log ends after record {count} but checkpoints line {cp.line} covers {cp.count} "
            "records: the tail was truncated",
        )
    return Verdict(True, count, prev)


def _check_line(raw: bytes, expected: int, prev: str) -> tuple[str | None, str]:
    """(the line's hash, "") if it is the right next record, else (None, what is wrong)."""
    if not raw.endswith(b"\n"):
        return None, "the line is cut short (no newline): truncated or edited"
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, "not valid JSON: edited or truncated"
    if not isinstance(record, dict) or not all(f in record for f in CHAIN_FIELDS):
        return None, "missing the chain fields seq, prev, hash: edited or inserted"
    seq, digest = record.pop("seq"), record.pop("hash")
    if not isinstance(seq, int) or isinstance(seq, bool):
        return None, "seq is not an integer: edited"
    if seq > expected:
        return (
            None,
            f"seq {seq} where {expected} was expected: records before it were deleted or moved",
        )
    if seq < expected:
        return None, f"seq {seq} where {expected} was expected: inserted or reordered"
    record["seq"] = seq
    actual = hashlib.sha256(canonical(record)).hexdigest()
    if actual != digest:
        return None, "its hash does not match its content: the record was edited"
    if record["prev"] != prev:
        return None, "prev does not match the previous record's hash: inserted or reordered"
    return actual, ""
