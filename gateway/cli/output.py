"""The CLI's shared conventions: exit codes, errors that carry one, and `-o/--output json|table`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TextIO

# Exit codes, the same for every command (README: Operators/CLI).
EXIT_OK = 0
# A negative answer: a deny, tampering found, failing policy cases, problems found, the admin
# API refusing the action (forbidden, not found, conflict).
EXIT_NEGATIVE = 1
# The command line or the config is wrong: an unknown flag, a bad value, an unreadable file.
EXIT_USAGE = 2
# Something the command needs did not answer: the admin API, Redis, a JWKS URL.
EXIT_UNREACHABLE = 3

OUTPUT_FORMATS = ("table", "json")


class CLIError(Exception):
    """A user-facing failure: printed as one line on stderr, exit `code` (usage by default)."""

    code = EXIT_USAGE

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class Refused(CLIError):
    """The answer is no (deny, forbidden, not found, conflict): exit 1."""

    code = EXIT_NEGATIVE


class Unreachable(CLIError):
    """A service the command needs did not answer: exit 3."""

    code = EXIT_UNREACHABLE


def add_output_arg(parser: argparse.ArgumentParser) -> None:
    """`-o/--output table|json` (table by default) on a list, show or explain command."""
    parser.add_argument(
        "-o",
        "--output",
        choices=OUTPUT_FORMATS,
        default="table",
        help="table (for people, the default) or json (for scripts: one JSON document)",
    )


def emit(
    args: argparse.Namespace,
    data: Any,
    lines: Callable[[], Iterable[str]],
    *,
    out: TextIO | None = None,
) -> None:
    """Print `data` as JSON with `-o json`, else the text `lines()` gives, one per line."""
    out = out or sys.stdout
    if getattr(args, "output", "table") == "json":
        out.write(to_json(data) + "\n")
        return
    for line in lines():
        out.write(line + "\n")


def to_json(data: Any) -> str:
    """Indented JSON with non-ASCII text kept, in the order the fields were given."""
    return json.dumps(data, indent=2, ensure_ascii=False, default=str)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> list[str]:
    """Rows as aligned columns under a header; `columns` is (key, header) pairs. A missing or
    None value shows as `-`."""
    cells = [[_cell(row.get(key)) for key, _ in columns] for row in rows]
    headers = [header for _, header in columns]
    widths = [max(len(c) for c in column) for column in zip(headers, *cells, strict=False)]
    return [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in (headers, *cells)
    ]


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) or "-"
    return str(value)
