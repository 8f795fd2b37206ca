"""Generators for the masking fuzz: valid identifiers, disguised and placed in nested
documents, written as JSON, NDJSON, CSV or TSV, compressed, and cut into chunks."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import itertools
import re
import zlib
from typing import Any

import brotli
import orjson
from hypothesis import strategies as st

from gateway.masking.identifiers import (
    AREA_CODES,
    USCC_ALPHABET,
    luhn_check_digit,
    resident_id_check,
    uscc_check,
)

DIGITS = "0123456789"
UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
FULL_WIDTH = {ord(c): ord(c) + 0xFEE0 for c in DIGITS + UPPER}


def digits(n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=DIGITS, min_size=n, max_size=n)


resident_ids = st.builds(
    lambda area, born, seq: (
        f"{area}{born:%Y%m%d}{seq}" + resident_id_check(f"{area}{born:%Y%m%d}{seq}")
    ),
    st.sampled_from(AREA_CODES) | digits(6),
    st.dates(dt.date(1900, 1, 1), dt.date(2024, 12, 31)),
    digits(3),
)
bank_cards = st.builds(
    lambda head, body: head + body + luhn_check_digit(head + body),
    st.sampled_from(["62", "4", "5", "3"]),
    st.integers(13, 17).flatmap(digits),
).filter(lambda card: 16 <= len(card) <= 19)
mobiles = st.builds(lambda second, rest: "1" + second + rest, st.sampled_from("3456789"), digits(9))
usccs = st.builds(
    lambda body: body + (uscc_check(body) or ""),
    st.text(alphabet=USCC_ALPHABET, min_size=17, max_size=17),
)
identifiers = st.one_of(
    resident_ids.map(lambda v: ("resident_id", v)),
    bank_cards.map(lambda v: ("bank_card", v)),
    mobiles.map(lambda v: ("mobile", v)),
    usccs.map(lambda v: ("uscc", v)),
)


def _disguised(kind: str, value: str, how: str) -> str:
    if how == "fullwidth":
        return value.translate(FULL_WIDTH)
    if how == "half_fullwidth":  # the first half full-width, the rest ASCII
        half = len(value) // 2
        return value[:half].translate(FULL_WIDTH) + value[half:]
    if how == "lower" and kind in ("resident_id", "uscc"):
        return value.lower()
    if how == "country" and kind == "mobile":
        return "86" + value
    if how == "plus_country" and kind == "mobile":
        return "+86 " + value
    return value


disguises = st.sampled_from(
    ["plain", "plain", "fullwidth", "half_fullwidth", "lower", "country", "plus_country"]
)
# Characters next to an identifier: Chinese text (no word boundary before digits), CJK and
# full-width punctuation, spaces and controls, and characters that JSON and CSV quote.
NEIGHBOURS = "号码身份证电话卡的是：，。、（）【】 \t\n\r\"',;|/\\-_.~#@\u3000\u200b\ufeff"
neighbours = st.text(alphabet=NEIGHBOURS, max_size=3)


@st.composite
def identifier_text(draw: st.DrawFn, planted: list[tuple[str, str]]) -> str:
    """Free text holding one or two identifiers among Chinese characters and punctuation."""
    out = draw(neighbours)
    for _ in range(draw(st.integers(1, 2))):
        kind, value = draw(identifiers)
        planted.append((kind, value))
        out += _disguised(kind, value, draw(disguises)) + draw(neighbours)
    return out


# Keys: the classified fields in their spellings, containers, and others.
CLASSIFIED_KEYS = ["id_card", "ID_CARD", "idCard", "id-card", "phone", "Phone", "bank_card"]
OTHER_KEYS = ["name", "diagnosis", "remarks", "items", "meta", "notes", "x", "值", "contact"]
keys = st.sampled_from(CLASSIFIED_KEYS + OTHER_KEYS) | st.text(max_size=5)


@st.composite
def documents(draw: st.DrawFn, depth: int = 0) -> tuple[Any, list[tuple[str, str]]]:
    """A JSON value with identifiers placed in classified fields, free text, numbers, keys
    and nested containers; and the identifiers planted in it."""
    planted: list[tuple[str, str]] = []

    def value(level: int) -> Any:
        choice = draw(st.integers(0, 9 if level < 3 else 4))
        if choice <= 2:
            return draw(identifier_text(planted))
        if choice == 3:
            kind, ident = draw(identifiers)
            if ident.isdigit() and int(ident) < 2**63:
                planted.append((kind, ident))
                return int(ident) if draw(st.booleans()) else -int(ident)
            planted.append((kind, ident))
            return ident
        if choice == 4:
            return draw(st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=4))
        if choice == 5:  # JSON inside a string, as APIs embed payloads, maybe \u-escaped
            return escape_some(json_text(value(level + 1)), draw(st.lists(st.booleans())))
        if choice <= 7:
            return [value(level + 1) for _ in range(draw(st.integers(0, 3)))]
        out: dict[str, Any] = {}
        for _ in range(draw(st.integers(0, 4))):
            if draw(st.integers(0, 9)) == 0:  # an identifier as a key
                kind, ident = draw(identifiers)
                planted.append((kind, ident))
                out[ident] = value(level + 1)
            else:
                out[draw(keys)] = value(level + 1)
        return out

    return value(depth), planted


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def escape_some(text: str, picks: list[bool]) -> str:
    """JSON text with some characters of its strings written as `\\uXXXX` escapes."""
    it = iter(picks * (len(text) // max(len(picks), 1) + 1) if picks else [])

    def one(m: re.Match[str]) -> str:
        inner = m.group(0)[1:-1]
        out, i = [], 0
        while i < len(inner):
            c = inner[i]
            if c == "\\":  # keep existing escapes whole: \n, \u0001
                size = 6 if inner[i + 1] == "u" else 2
                out.append(inner[i : i + size])
                i += size
                continue
            out.append(f"\\u{ord(c):04x}" if ord(c) < 0x10000 and next(it, False) else c)
            i += 1
        return '"' + "".join(out) + '"'

    return _STRING.sub(one, text)


def csv_body(rows: list[dict[str, Any]], delimiter: str, quoting: int) -> bytes:
    columns = list(dict.fromkeys(k for row in rows for k in row)) or ["x"]
    sink = io.StringIO()
    writer = csv.writer(sink, delimiter=delimiter, quoting=quoting, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])
    return sink.getvalue().encode("utf-8")


def compress(body: bytes, encoding: str | None) -> bytes:
    if encoding == "gzip":
        return gzip.compress(body)
    if encoding == "deflate":
        return zlib.compress(body)
    if encoding == "raw-deflate":
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        return c.compress(body) + c.flush()
    if encoding == "br":
        return brotli.compress(body)
    return body


ENCODINGS = [None, None, "gzip", "deflate", "raw-deflate", "br"]


def header_of(encoding: str | None) -> str | None:
    return "deflate" if encoding == "raw-deflate" else encoding


def chunks(body: bytes, cuts: list[int]) -> list[bytes]:
    """`body` cut at the given offsets (taken modulo its length)."""
    points = sorted({c % (len(body) + 1) for c in cuts} | {0, len(body)})
    return [body[a:b] for a, b in itertools.pairwise(points) if b > a]


def json_text(value: Any) -> str:
    return orjson.dumps(value).decode()
