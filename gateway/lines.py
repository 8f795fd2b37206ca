"""JSON lines: the Unicode line separators JSON leaves raw, escaped so every splitter agrees."""

from __future__ import annotations

# Line separators JSON leaves raw (U+0085 NEL, U+2028, U+2029, in UTF-8): str.splitlines, some
# log shippers and JavaScript split a line at them. JSON itself escapes the ASCII ones
# (\x0b, \x0c, \x1c-\x1e) as \u escapes already.
_RAW_SEPARATORS = (
    (b"\xc2\x85", b"\\u0085"),
    (b"\xe2\x80\xa8", b"\\u2028"),
    (b"\xe2\x80\xa9", b"\\u2029"),
)


def escape_separators(line: bytes) -> bytes:
    """A JSON line with the Unicode line separators escaped, so every splitter sees one line
    (the JSON value is the same: they can only occur inside strings)."""
    if line.isascii():
        return line
    for raw, escaped in _RAW_SEPARATORS:
        if raw in line:
            line = line.replace(raw, escaped)
    return line
