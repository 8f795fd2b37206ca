"""The identifier scanner: finds and masks resident IDs, USCCs, mobiles, cards and e-mails."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from gateway.masking.identifiers import (
    is_bank_card,
    is_first_generation_id,
    is_resident_id,
    is_uscc,
)
from gateway.masking.strategies import (
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


def _fold_table() -> tuple[dict[int, int], frozenset[str]]:
    """What a reader sees: every character that is a decimal digit (mathematical bold and
    sans-serif digits, circled and superscript digits, other scripts' digits) or folds by
    NFKC to one ASCII letter or digit, as that ASCII character; and the invisible format
    characters (U+200B and its kin, soft hyphens) that a reader does not see at all."""
    table: dict[int, int] = {}
    invisible: set[str] = set()
    for cp in (*range(0x80, 0xD800), *range(0xE000, 0x20000)):
        c = chr(cp)
        digit = unicodedata.digit(c, None)
        if digit is not None:
            table[cp] = 0x30 + digit
            continue
        if unicodedata.category(c) == "Cf":
            invisible.add(c)
            continue
        folded = unicodedata.normalize("NFKC", c)
        if len(folded) == 1 and folded.isascii() and (folded.isalnum() or folded in " -+@._%"):
            table[cp] = ord(folded)
    table[0x3000] = 0x20
    return table, frozenset(invisible)


FOLD, _INVISIBLE = _fold_table()
_FOLDABLE = re.compile("[" + "".join(re.escape(chr(cp)) for cp in sorted(FOLD)) + "]")
_INVISIBLE_RE = re.compile("[" + "".join(re.escape(c) for c in sorted(_INVISIBLE)) + "]")
# An identifier written in groups: 138-1234-5678, 110105 19491231 0038, 6222 0212 3456 7890.
_GROUPED_PROBE = re.compile(rb"[0-9][ -][0-9]")
_GROUPED = re.compile(
    rb"(?<![0-9A-Za-z])(?:"
    rb"(?:(?:\+|00)?86[ -]?)?1[3-9][0-9][ -]?[0-9]{4}[ -]?[0-9]{4}"
    rb"|[0-9]{6}[ -]?(?:[0-9]{8}|[0-9]{4}[ -]?[0-9]{4})[ -]?[0-9]{3}[0-9Xx]"
    rb"|[0-9]{4}(?:[ -]?[0-9]{4}){3}(?:[ -]?[0-9]{1,3})?"
    rb")(?![0-9A-Za-z])"
)

Span = tuple[int, int, str]
_INTL_MOBILE = frozenset(f"00861{d}" for d in "3456789")
# Digits inside a longer run of letters and digits (`ID110105...`, `tel138...`, `...0038a`):
# the digit part is tried as an identifier of its own; a resident ID may end in X.
# Only whole digit parts: a longer number is no identifier, and starring a slice of it would
# leave the rest beside the kept digits.
_DIGITS = re.compile(rb"(?<![0-9])[0-9]{11,19}[Xx]?(?![0-9])")


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
        if n == 15:
            if token[:6] in _INTL_MOBILE:
                return "mobile"  # 0086 and the number
            if is_first_generation_id(token):
                return "resident_id"
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
        else:
            if not view[start:end].isdigit():  # letters in the run: digits glued to them
                spans.extend(_glued(view, start, end))
    extra: list[Span] = []
    if b"@" in view:
        extra.extend(_emails(view))
    if _GROUPED_PROBE.search(view):
        extra.extend(_grouped(view))
    if extra:
        spans.extend(extra)
        spans.sort()
        spans = _without_overlaps(spans)
    return spans


def _grouped(view: bytes) -> list[Span]:
    """Identifiers written with spaces or dashes between their groups."""
    found: list[Span] = []
    for m in _GROUPED.finditer(view):
        token = m.group().translate(None, b" -+").decode("ascii")
        kind = classify(token)
        if kind is not None and token != m.group().decode("ascii"):
            found.append((m.start(), m.end(), kind))
    return found


def _glued(view: bytes, start: int, end: int) -> list[Span]:
    """Identifiers glued to letters inside one run of letters and digits: the digit parts,
    checked like whole tokens. A check digit, a date or Luhn makes a hit near-certain, so
    the letters around it (`sfz`, `tel`, `card`) do not make it safe."""
    found: list[Span] = []
    for m in _DIGITS.finditer(view, start, end):
        begin, stop = m.span()
        token = m.group().decode("ascii")
        kind = classify(token)
        if kind is None and token[-1] in "Xx":  # an X that is a letter, not a check digit
            stop -= 1
            kind = classify(token[:-1])
        if kind is not None and (begin, stop) != (start, end):
            found.append((begin, stop, kind))
    if not found:
        return found
    # Masking a part makes the pieces beside it tokens of their own: a USCC glued to an ID
    # (`<ID>A0000000000000001Q`) stands alone once the ID is starred, so check them too.
    pieces: list[Span] = []
    edge = start
    for begin, stop, _ in [*found, (end, end, "")]:
        if 11 <= begin - edge <= 19:
            kind = classify(view[edge:begin].decode("ascii"))
            if kind is not None:
                pieces.append((edge, begin, kind))
        edge = stop
    return sorted(found + pieces)


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


def _masked(kind: str, token: str) -> str:
    if kind != "email":
        token = token.replace(" ", "").replace("-", "")  # a grouped one, masked whole
    return MASKERS[kind](token)


def scan_bytes(data: bytes, counts: dict[str, int], mask: bool = True) -> bytes:
    """Count the identifiers in UTF-8 `data` by kind into `counts`; mask them if `mask`."""
    if not data.isascii():
        text = data.decode("utf-8", "surrogatepass")
        if _FOLDABLE.search(text) or _INVISIBLE_RE.search(text):
            return scan_text(text, counts, mask).encode("utf-8", "surrogatepass")
    if b"\\u" in data and _ESCAPED_ALNUM_BYTES.search(data):
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
        out.append(_masked(kind, data[start:end].decode("ascii")).encode("ascii"))
        last = end
    out.append(data[last:])
    return b"".join(out)


def scan_text(text: str, counts: dict[str, int], mask: bool = True) -> str:
    """`scan_bytes` for text, folding what reads as digits and letters (NFKC forms, other
    scripts' digits) and reading digits and letters written as JSON escapes. Invisible
    characters are read both ways: as separators (two identifiers side by side) and as
    nothing (one identifier with a U+200B inside)."""
    if not _INVISIBLE_RE.search(text):
        return _scan_text(text, counts, mask, visible_only=False)
    masked = _scan_text(text, counts, True, visible_only=False)
    masked = _scan_text(masked, counts, True, visible_only=True)
    return masked if mask else text


def _scan_text(text: str, counts: dict[str, int], mask: bool, *, visible_only: bool) -> str:
    starts: list[int] | None = None  # where each character of `decoded` starts in `text`
    decoded = text
    if "\\u" in text and _ESCAPED_ALNUM.search(text):
        decoded, starts = _unescaped(text)
    if visible_only:
        decoded, starts = _visible(decoded, starts)
    view = decoded.translate(FOLD).encode("ascii", "replace")  # one byte per character
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
        out.append(_masked(kind, view[start:end].decode("ascii")))
        last = stop
    out.append(text[last:])
    return "".join(out)


def _visible(text: str, starts: list[int] | None) -> tuple[str, list[int]]:
    """`text` without its invisible characters, and where each remaining character (plus
    the end) starts in the original text."""
    base = starts if starts is not None else list(range(len(text) + 1))
    kept = [i for i, c in enumerate(text) if c not in _INVISIBLE]
    return "".join(text[i] for i in kept), [base[i] for i in kept] + [base[len(text)]]


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
