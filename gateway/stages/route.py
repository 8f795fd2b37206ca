"""Route stage: refuse ambiguous paths, then match a dataset route from the catalog."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from gateway.context import RequestContext
from gateway.errors import GatewayError
from gateway.policy.catalog import Catalog

_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_RECORD_ID = re.compile(r"^[A-Za-z0-9_-]*[0-9][A-Za-z0-9_-]*$")
READ_METHODS = frozenset({"GET", "HEAD"})
# Paths the checks below would return unchanged: segments of unreserved characters, dots
# only between them (no `.`, `..`, trailing dot), no `//` (a trailing `/` is allowed).
_PLAIN = re.compile(r"(?:/[A-Za-z0-9_~-]+(?:\.+[A-Za-z0-9_~-]+)*)+/?|/")
# Bytes refused when percent-encoded: / \ % ; ? #
_ENCODED_REFUSED = frozenset({0x2F, 0x5C, 0x25, 0x3B, 0x3F, 0x23})


class PathError(ValueError):
    """The path is malformed or ambiguous; the message says why."""


def normalise_path(raw: str, max_length: int) -> str:
    """Decode a raw request path once, refusing anything two servers could read differently.

    Refused: over-long paths, bad or double percent-encoding, encoded slashes or backslashes,
    control characters and NUL, backslashes, empty segments (`//`), dot-segments (`.`, `..`,
    also when encoded), segments ending in a dot, matrix parameters (`;`), `#` and `?` (raw or
    encoded: a fragment is never sent on, so the upstream would read a shorter path), and
    characters that Unicode compatibility normalisation would change (look-alikes such as
    full-width `／`).
    """
    if len(raw) > max_length:
        raise PathError(f"path is longer than {max_length} characters")
    if _PLAIN.fullmatch(raw):
        return raw  # the common case: nothing to decode, nothing ambiguous
    return checked_path(raw)


def checked_path(raw: str) -> str:
    """`normalise_path` without its fast path for plain paths (which this returns unchanged)."""
    if not raw.startswith("/"):
        raise PathError("path must start with '/'")
    if _BAD_PERCENT.search(raw):
        raise PathError("path has a malformed percent-encoding")
    if "\\" in raw or ";" in raw:
        raise PathError("path has a backslash or a ';' parameter")
    if "#" in raw or "?" in raw:
        raise PathError("path has a '#' or '?': the upstream would read a shorter path")
    for m in _PERCENT.finditer(raw):
        byte = int(m.group(1), 16)
        if byte in _ENCODED_REFUSED or byte < 0x20 or byte == 0x7F:
            raise PathError(
                "path has an encoded '/', '\\', '%', ';', '?', '#' or control character"
            )
    path = raw
    if "%" in raw:
        if not raw.isascii():
            raise PathError("path mixes raw non-ASCII characters and percent-encoding")
        try:
            path = _PERCENT.sub(lambda m: chr(int(m.group(1), 16)), raw).encode("latin-1")
            path = path.decode("utf-8")
        except UnicodeDecodeError:
            raise PathError("path is not valid UTF-8 after decoding") from None
    if _CONTROL.search(path):
        raise PathError("path has a control character")
    if not path.isascii() and unicodedata.normalize("NFKC", path) != path:
        raise PathError("path has characters that normalise differently (look-alikes)")
    segments = path.split("/")[1:]
    for i, seg in enumerate(segments):
        if seg in (".", ".."):
            raise PathError("path has a dot-segment")
        if seg.endswith("."):
            raise PathError("path has a segment ending in '.'")
        if seg == "" and i != len(segments) - 1:
            raise PathError("path has an empty segment ('//')")
    return path


def classify_action(
    method: str, rest: str, export_endings: tuple[str, ...], fmt: str | None = None
) -> str:
    """read, list, export or write, from the method, the path under the route prefix and the
    `format` query parameter; `export_endings` are the export suffixes, lower-cased."""
    if method not in READ_METHODS:
        return "write"
    tail = rest.rstrip("/").lower()  # persons.CSV and persons.csv/ are exports too
    if tail.endswith(export_endings) or (fmt is not None and "." + fmt.lower() in export_endings):
        return "export"
    segments = [s for s in rest.split("/") if s]
    if len(segments) >= 2 and _RECORD_ID.match(segments[-1]):
        return "read"
    return "list"


class RouteStage:
    name = "route"

    def __init__(self, catalog: Callable[[], Catalog], max_path_length: int) -> None:
        self._catalog = catalog
        self._max = max_path_length

    async def __call__(self, ctx: RequestContext) -> None:
        raw = ctx.request.raw_path
        raw_path, _, query = raw.partition("?")
        try:
            if "#" in query:
                raise PathError("query has a '#': a fragment is never forwarded")
            path = normalise_path(raw_path, self._max)
        except PathError as exc:
            raise GatewayError("bad_request", str(exc), reason="bad_path") from None
        dataset = self._catalog().match(path)
        if dataset is None:
            raise GatewayError("not_found", "no route for this path")
        ctx.path = path
        ctx.query = query
        ctx.dataset = dataset
        rest = path[len(dataset.route) - 1 :]
        fmt = None
        if query:
            params = {k.lower(): v for k, v in ctx.request.query.items()}
            if "_method" in params:
                raise GatewayError(
                    "bad_request", "method overrides are not accepted", reason="method_override"
                )
            fmt = params.get("format")
        ctx.action = classify_action(ctx.method, rest, dataset.export_endings, fmt)  # type: ignore[assignment]
        if ctx.action == "read":
            ctx.record_id = rest.rstrip("/").rsplit("/", 1)[-1]
