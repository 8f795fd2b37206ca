"""The identifier scanner: finds and masks resident IDs, USCCs, mobiles, cards and e-mails."""

from __future__ import annotations

import re
from collections.abc import Callable

from gateway.masking.identifiers import is_bank_card, is_resident_id, is_uscc
from gateway.masking.strategies import (
    WIDTH_FOLD,
    keep_ends,
    mask_email,
    mask_mobile,
    mask_resident_id,
    mask_uscc,
)

KINDS = ("resident_id", "uscc", "mobile", "bank_card", "email")

# Byte classes: ASCII letters and digits -> "0", all else -> " ". Identifiers are maximal
# alphanumeric runs, so `(?<![0-9A-Za-z])` / `(?![0-9A-Za-z])` hold by construction, also
# next to Chinese text (UTF-8 bytes >= 0x80 are separators). Letters of either case count:
# 11010519491231002x and a lower-case USCC are the same identifiers.
_IDCHARS = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_CLASS = bytes(ord("0") if b in _IDCHARS else ord(" ") for b in range(256))
_RUN = b"0" * 11  # no identifier is shorter than a mobile number
_HEX = frozenset(b"0123456789abcdefABCDEF")
_ESCAPE_LETTERS = frozenset(b"bfnrt")  # JSON's one-letter escapes that are letters
_DOMAIN_RE = re.compile(
    rb"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    rb"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.[A-Za-z]{2,63}(?![A-Za-z0-9-])"
)
_LOCAL_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-")
_LOCAL_REVERSED_RE = re.compile(rb"[A-Za-z0-9._%+-]{1,64}")
# A digit or letter, ASCII or full-width, written as a JSON escape (\u0031, \uff11), also
# with more backslashes (\\u0031 is JSON inside a JSON string): whoever decodes reads it.
_ALNUM_ESCAPE = (
    r"\\+u(00(?:3[0-9]|[46][1-9a-fA-F]|[57][0-9aA])|[fF][fF](?:1[0-9]|[24][1-9a-fA-F]|[35][0-9aA]))"
)
_ESCAPED_ALNUM = re.compile(_ALNUM_ESCAPE)
_ESCAPED_ALNUM_BYTES = re.compile(_ALNUM_ESCAPE.encode())
# UTF-8 of the full-width forms that fold to identifier characters (digits, letters, @+-._%).
_FOLD_PROBE = re.compile(rb"\xef\xbc[\x85\x8b\x8d\x8e\x90-\x99\xa0-\xbf]|\xef\xbd[\x81-\x9a]")

Span = tuple[int, int, str]


def _mask_bank_card(value: str) -> str:
    return keep_ends(value, 6, 4, str.isdigit)


MASKERS: dict[str, Callable[[str], str]] = {
    "resident_id": mask_resident_id,
    "uscc": mask_uscc,
    "mobile": mask_mobile,
    "bank_card": _mask_bank_card,
    "email": mask_email,
}


def classify(token: str) -> str | None:
    """The identifier kind of a whole ASCII token, checksums and birth date included."""
    n = len(token)
    if token.isdigit():
        if n == 11:
            return "mobile" if token[0] == "1" and token[1] in "3456789" else None
        if n == 13 and token[:3] == "861" and token[3] in "3456789":
            return "mobile"
        if n == 18 and is_resident_id(token):
            return "resident_id"
        if n == 18 and is_uscc(token):
            return "uscc"
        return "bank_card" if 16 <= n <= 19 and is_bank_card(token) else None
    if n == 18:
        if is_resident_id(token):
            return "resident_id"
        if is_uscc(token):
            return "uscc"
    return None


def _after_escape(view: bytes, start: int, end: int) -> int:
    """Skip a JSON escape's letters (`\\n`, `\\u0001`) glued to the front of a run. Only
    JSON's escape letters: a backslash before a digit (`\\110105...` in a CSV cell) is text,
    and skipping the digit would hide the identifier."""
    slashes = 0
    while start - slashes > 0 and view[start - slashes - 1] == 0x5C:
        slashes += 1
    if slashes % 2 == 0:
        return start
    if view[start] == 0x75 and end - start >= 5 and _HEX.issuperset(view[start + 1 : start + 5]):
        return start + 5
    return start + 1 if view[start] in _ESCAPE_LETTERS else start


def find(view: bytes) -> list[Span]:
    """Identifier spans in `view` (ASCII-compatible bytes), without overlaps, in order."""
    spans: list[Span] = []
    classes = view.translate(_CLASS)
    n = len(view)
    pos = 0
    while True:
        hit = classes.find(_RUN, pos)
        if hit < 0:
            break
        start = classes.rfind(b" ", 0, hit) + 1
        end = classes.find(b" ", hit)
        if end < 0:
            end = n
        pos = end
        begins: tuple[int, ...] = (start,)
        if start and view[start - 1] == 0x5C:
            # After a backslash the run may begin with an escape's letters (JSON \n138...)
            # or be text (\b0000... in a CSV cell is a lower-case USCC): read it both ways.
            begins = (_after_escape(view, start, end), start)
        for begin in begins:
            kind = classify(view[begin:end].decode("ascii")) if 11 <= end - begin <= 19 else None
            if kind is not None:
                spans.append((begin, end, kind))
                break
    if b"@" in view:
        spans.extend(_emails(view))
        spans.sort()
        spans = _without_overlaps(spans)
    return spans


def _emails(view: bytes) -> list[Span]:
    found: list[Span] = []
    for m in _DOMAIN_RE.finditer(view):
        at = m.start()
        if at == 0 or view[at - 1] not in _LOCAL_CHARS:
            continue
        local = _LOCAL_REVERSED_RE.match(view[at - 1 : at - 65 if at > 64 else None : -1])
        if local is None:
            continue
        start = at - local.end()
        if start and view[start - 1] == 0x5C:
            start = _after_escape(view, start, at)
        if start < at:
            found.append((start, m.end(), "email"))
    return found


def _without_overlaps(spans: list[Span]) -> list[Span]:
    kept: list[Span] = []
    for span in spans:
        if kept and span[0] < kept[-1][1]:
            if span[1] - span[0] > kept[-1][1] - kept[-1][0]:
                kept[-1] = span
            continue
        kept.append(span)
    return kept


def scan_bytes(data: bytes, counts: dict[str, int], mask: bool = True) -> bytes:
    """Count the identifiers in UTF-8 `data` by kind into `counts`; mask them if `mask`."""
    if (not data.isascii() and _FOLD_PROBE.search(data)) or (
        b"\\u" in data and _ESCAPED_ALNUM_BYTES.search(data)
    ):
        return scan_text(data.decode("utf-8", "surrogatepass"), counts, mask).encode(
            "utf-8", "surrogatepass"
        )
    spans = find(data)
    if not spans:
        return data
    for _, _, kind in spans:
        counts[kind] = counts.get(kind, 0) + 1
    if not mask:
        return data
    out: list[bytes] = []
    last = 0
    for start, end, kind in spans:
        out.append(data[last:start])
        out.append(MASKERS[kind](data[start:end].decode("ascii")).encode("ascii"))
        last = end
    out.append(data[last:])
    return b"".join(out)


def scan_text(text: str, counts: dict[str, int], mask: bool = True) -> str:
    """`scan_bytes` for text, folding full-width digits and letters (NFKC width forms) and
    reading digits and letters written as JSON escapes."""
    starts: list[int] | None = None  # where each character of `decoded` starts in `text`
    decoded = text
    if "\\u" in text and _ESCAPED_ALNUM.search(text):
        decoded, starts = _unescaped(text)
    view = decoded.translate(WIDTH_FOLD).encode("ascii", "replace")  # one byte per character
    spans = find(view)
    if not spans:
        return text
    for _, _, kind in spans:
        counts[kind] = counts.get(kind, 0) + 1
    if not mask:
        return text
    out: list[str] = []
    last = 0
    for start, end, kind in spans:
        begin, stop = (start, end) if starts is None else (starts[start], starts[end])
        out.append(text[last:begin])
        out.append(MASKERS[kind](view[start:end].decode("ascii")))
        last = stop
    out.append(text[last:])
    return "".join(out)


def _unescaped(text: str) -> tuple[str, list[int]]:
    """`text` with its escaped digits and letters decoded, and where each character of the
    result starts in `text` (plus the end).

    n backslashes before the `u`: an odd n ends in an escape (n - 1 are escaped backslashes);
    n = 2, 6, 10 ... is an escape written inside a JSON string once more (JSON in JSON);
    n = 4, 8 ... is backslashes and text. The backslashes before the escape stay: they are
    text (a separator), and keeping an even number of them keeps the JSON valid."""
    parts: list[str] = []
    starts: list[int] = []
    pos = 0
    for m in _ESCAPED_ALNUM.finditer(text):
        slashes = text.index("u", m.start()) - m.start()
        if slashes % 4 == 0:
            continue
        kept = slashes - 1 if slashes % 2 else slashes - 2
        parts.append(text[pos : m.start()])
        starts.extend(range(pos, m.start()))
        if kept:
            parts.append("\\")
            starts.append(m.start())
        parts.append(chr(int(m.group(1), 16)))
        starts.append(m.start() + kept)
        pos = m.end()
    parts.append(text[pos:])
    starts.extend(range(pos, len(text) + 1))
    return "".join(parts), starts


def kinds_in(text: str) -> set[str]:
    """The identifier kinds present in `text`."""
    counts: dict[str, int] = {}
    scan_text(text, counts, mask=False)
    return set(counts)
