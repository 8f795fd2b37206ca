"""Route stage: refuse ambiguous paths, then match a dataset route from the catalog."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable

from gateway.context import RequestContext
from gateway.errors import GatewayError
from gateway.policy.catalog import EXPORT_MEDIA_TYPES, Catalog

_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_RECORD_ID = re.compile(r"^[A-Za-z0-9_-]*[0-9][A-Za-z0-9_-]*$")
READ_METHODS = frozenset({"GET", "HEAD"})
_PLAIN_ACCEPT = frozenset({"*/*", "application/json", "application/json, */*"})
# Paths the checks below would return unchanged: segments of unreserved characters, dots
# only between them (no `.`, `..`, trailing dot), no `//` (a trailing `/` is allowed).
_PLAIN = re.compile(r"(?:/[A-Za-z0-9_~-]+(?:\.+[A-Za-z0-9_~-]+)*)+/?|/")
# Bytes refused when percent-encoded: / \ % ; ? #
_ENCODED_REFUSED = frozenset({0x2F, 0x5C, 0x25, 0x3B, 0x3F, 0x23})
# Query parameters (compared lower-case, without `_ - $ . [ ]`) with which frameworks let a
# caller choose the response's format: `format`, `_format` (FHIR), `$format` (OData), ...
FORMAT_KEYS = frozenset(
    {
        "format",
        "fmt",
        "output",
        "outputformat",
        "responseformat",
        "alt",
        "accept",
        "mimetype",
        "contenttype",
        "responsecontenttype",
        "ext",
        "extension",
        "export",
        "download",
    }
)
_KEY_NOISE = re.compile(r"[^a-z0-9]")
# Format words that name a bulk export whatever the route's suffixes are.
EXPORT_WORDS = frozenset(
    {"csv", "tsv", "ndjson", "jsonl", "jsonlines", "json-seq", "xls", "xlsx", "excel", "parquet"}
)
# Values of `export`/`download` that do not ask for one.
_NO = frozenset({"", "0", "false", "no", "off", "none"})


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
        if seg[-1:].isspace():
            # Windows and IIS drop it (persons.csv%20 is persons.csv there).
            raise PathError("path has a segment ending in whitespace")
    return path


def classify_action(
    method: str, rest: str, export_endings: tuple[str, ...], fmt: str | None = None
) -> str:
    """read, list, export or write, from the method, the path under the route prefix and the
    format the query or `Accept` asks for (`fmt`: `csv`, `text/csv`, or `export` for a bare
    download flag); `export_endings` are the export suffixes, lower-cased."""
    if method not in READ_METHODS:
        return "write"
    if fmt is not None and names_export(fmt, export_endings):
        return "export"
    # persons.CSV, persons.csv/ and persons.csv~ are exports too: any segment whose name,
    # without what follows its last letter or digit, ends in an export suffix.
    if "." in rest:
        for segment in rest.lower().split("/"):
            if segment and _TRAILING.sub("", segment).endswith(export_endings):
                return "export"
    segments = [s for s in rest.split("/") if s]
    if len(segments) >= 2 and _RECORD_ID.match(segments[-1]):
        return "read"
    return "list"


_TRAILING = re.compile(r"[^a-z0-9]+$")


def names_export(fmt: str, export_endings: tuple[str, ...]) -> bool:
    """Whether a format value (`csv`, `.CSV`, `text/csv; charset=utf-8`) names a bulk export."""
    word = fmt.split(";", 1)[0].strip().lower()
    if word == "export" or word in EXPORT_MEDIA_TYPES:
        return True
    word = word.lstrip(".")
    return word in EXPORT_WORDS or "." + word in export_endings


def accepted_export(accept: str) -> str | None:
    """The first bulk media type an `Accept` header asks for (with a q above 0), if any."""
    for part in accept.split(","):
        media, _, params = part.partition(";")
        media = media.strip().lower()
        if media not in EXPORT_MEDIA_TYPES:
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 1.0  # an unreadable weight still names the type: fail towards export
        if q > 0:
            return media
    return None


def format_asked(query: Iterable[tuple[str, str]]) -> str | None:
    """The format the query's format parameters choose (`export` for a download flag);
    more than one of them is ambiguous (an upstream may read either) and refused."""
    chosen: list[tuple[str, str]] = []
    for key, value in query:
        norm = _KEY_NOISE.sub("", key.lower())
        if norm in FORMAT_KEYS:
            chosen.append((key, value))
    if not chosen:
        return None
    if len(chosen) > 1:
        names = ", ".join(sorted({k for k, _ in chosen}))
        raise GatewayError(
            "bad_request",
            f"the query chooses the response format more than once ({names}); give it once",
            reason="duplicate_format",
        )
    key, value = chosen[0]
    if _KEY_NOISE.sub("", key.lower()) in ("export", "download"):
        return None if value.strip().lower() in _NO else "export"
    return value


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
            items = ctx.request.query.items()
            if any(k.lower() == "_method" for k, _ in items):
                raise GatewayError(
                    "bad_request", "method overrides are not accepted", reason="method_override"
                )
            fmt = format_asked(items)
        if fmt is None:
            accept = ctx.request.headers.get("Accept")
            # The common Accept values name no bulk type: skip the parse for them.
            if accept is not None and accept not in _PLAIN_ACCEPT:
                fmt = accepted_export(accept)
        ctx.action = classify_action(ctx.method, rest, dataset.export_endings, fmt)  # type: ignore[assignment]
        if ctx.action == "read":
            ctx.record_id = rest.rstrip("/").rsplit("/", 1)[-1]
