"""The data catalog: datasets, their routes, owners, levels, sharing types and fields."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any, Literal

import yaml

from gateway.configtree import build, field
from gateway.errors import ConfigError
from gateway.request_headers import allowed_headers, refused_header

Level = int  # 1 public, 2 internal, 3 sensitive/important, 4 core
Sharing = Literal["unconditional", "conditional", "none"]
ScannerAction = Literal["mask", "block", "report"]
LEVEL_NAMES = {1: "public", 2: "internal", 3: "sensitive", 4: "core"}
# Media types of bulk exports: a request asking for one (Accept, ?format=) is decided as
# `export`, and a response of one to a request decided otherwise is refused.
EXPORT_MEDIA_TYPES = frozenset(
    {
        "text/csv",
        "application/csv",
        "text/x-csv",
        "application/x-csv",
        "text/comma-separated-values",
        "text/tab-separated-values",
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonl",
        "application/x-jsonlines",
        "application/jsonlines",
        "application/json-seq",
        "application/vnd.ms-excel",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.apache.parquet",
        "application/x-parquet",
        "application/zip",
        "application/gzip",
        "application/x-tar",
    }
)
# What a declared query parameter's value may be (see docs/security.md, the query guard):
# integer: up to 9 ASCII digits; word: one short token of letters, digits, `_.-`, no digit
# run; text: free text without digits; sort: comma-separated field names, `+`/`-` prefixed;
# exact: any value, for an exact-match filter on the field the parameter is named after
# (refused to callers who see that field masked, like every parameter naming one).
QUERY_KINDS = ("integer", "word", "text", "sort", "exact")
# The parameters of a route that declares none: paging.
DEFAULT_QUERY_PARAMS: dict[str, str | list[str]] = {
    "page": "integer",
    "size": "integer",
    "limit": "integer",
    "offset": "integer",
}


@dataclasses.dataclass(frozen=True, slots=True)
class FieldSpec:
    """One classified field: by key name anywhere, by explicit JSON paths, or by CSV column."""

    name: str = field(nonempty=True)
    level: int = field(min=1, max=4)
    strategy: str = field("redact", nonempty=True)
    paths: list[str] = field([])
    column: str | None = None
    params: dict[str, Any] = field({})


@dataclasses.dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = field(2.0, min=0.01)
    total: float = field(30.0, min=0.01)


@dataclasses.dataclass(frozen=True, slots=True)
class Dataset:
    id: str = field(nonempty=True)
    route: str = field(nonempty=True)
    upstream: str = field(nonempty=True)
    owner: str = field(nonempty=True)
    level: int = field(min=1, max=4)
    sharing: Sharing = "conditional"
    title: str = ""
    # Lowest clearance that may read this dataset in masked form; None: clearance >= level.
    masked_from_clearance: int | None = field(None, min=1, max=4)
    fields: list[FieldSpec] = field([])
    export_suffixes: list[str] = field([".csv", ".tsv", ".ndjson", ".jsonl"])
    records_key: str | None = None
    query_aliases: dict[str, str] = field({})
    scanner: ScannerAction = "mask"
    forward_authorization: bool = False
    # Client headers forwarded on top of the default allow-list (gateway/request_headers.py).
    forward_headers: list[str] = field([])
    # The query parameters callers who see masked fields may send (name -> kind, or the list
    # of allowed values); None: DEFAULT_QUERY_PARAMS.
    query_params: dict[str, str | list[str]] | None = None
    timeouts: Timeouts | None = None
    monitor: bool = False
    # Derived when the catalog loads; read on every request.
    classified: bool = dataclasses.field(init=False, repr=False, compare=False)
    export_endings: tuple[str, ...] = dataclasses.field(init=False, repr=False, compare=False)
    # Lower-case names of the client headers sent upstream.
    request_headers: frozenset[str] = dataclasses.field(init=False, repr=False, compare=False)
    # Lower-case parameter name -> its kind, or the frozenset of its allowed values.
    query_rules: dict[str, str | frozenset[str]] = dataclasses.field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        # Classified: level 2 or above, or a field that is.
        classified = self.level >= 2 or any(f.level >= 2 for f in self.fields)
        object.__setattr__(self, "classified", classified)
        endings = tuple(s.lower() for s in self.export_suffixes)
        object.__setattr__(self, "export_endings", endings)
        headers = allowed_headers(self.forward_headers, classified)
        object.__setattr__(self, "request_headers", headers)
        params = DEFAULT_QUERY_PARAMS if self.query_params is None else self.query_params
        rules = {k.lower(): v if isinstance(v, str) else frozenset(v) for k, v in params.items()}
        object.__setattr__(self, "query_rules", rules)

    def validate(self, path: str) -> None:
        if not self.route.startswith("/") or not self.route.endswith("/"):
            raise ConfigError(f"{path}.route: must start and end with '/', got {self.route!r}")
        if self.masked_from_clearance is not None and self.masked_from_clearance > self.level:
            raise ConfigError(f"{path}.masked_from_clearance: must be <= level {self.level}")
        names = [f.name for f in self.fields]
        for name in names:
            if names.count(name) > 1:
                raise ConfigError(f"{path}.fields: field {name!r} is listed twice")
        for i, header in enumerate(self.forward_headers):
            why = refused_header(header.lower(), self.classified)
            if why is not None:
                raise ConfigError(
                    f"{path}.forward_headers[{i}]: {header!r} cannot be forwarded: {why}"
                )
        seen: dict[str, str] = {}
        for name, kind in (self.query_params or {}).items():
            where = f"{path}.query_params.{name}"
            if not name or not name.isprintable() or name.strip() != name:
                raise ConfigError(f"{path}.query_params: {name!r} is not a parameter name")
            if name.lower() in seen:
                raise ConfigError(
                    f"{where}: {seen[name.lower()]!r} and {name!r} are the same parameter "
                    "(names compare case-insensitively)"
                )
            seen[name.lower()] = name
            if isinstance(kind, str) and kind not in QUERY_KINDS:
                raise ConfigError(
                    f"{where}: must be one of {', '.join(QUERY_KINDS)} or a list of the "
                    f"allowed values, got {kind!r}"
                )
            if isinstance(kind, list) and (not kind or not all(kind)):
                raise ConfigError(f"{where}: the list of allowed values must be non-empty")


@dataclasses.dataclass(frozen=True, slots=True)
class CatalogFile:
    version: int = 1
    # The departments that exist; when listed, `policy check` flags unknown owners/subjects.
    departments: list[str] = field([])
    datasets: list[Dataset] = field([], nonempty=True)


@dataclasses.dataclass(frozen=True, slots=True)
class Catalog:
    datasets: dict[str, Dataset]
    version: str  # content hash
    source: str
    # Longest prefix first, so /api/a/b/ wins over /api/a/.
    _by_prefix: tuple[tuple[str, Dataset], ...]
    departments: frozenset[str] = frozenset()

    def match(self, path: str) -> Dataset | None:
        """The dataset whose route prefix covers `path` (a normalised path)."""
        for prefix, dataset in self._by_prefix:
            if path.startswith(prefix) or path == prefix[:-1]:
                return dataset
        return None


def parse_catalog(text: str, source: str = "catalog.yaml") -> Catalog:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    try:
        parsed = build(CatalogFile, raw, "")
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    datasets: dict[str, Dataset] = {}
    prefixes: dict[str, str] = {}
    for i, ds in enumerate(parsed.datasets):
        if ds.id in datasets:
            raise ConfigError(f"{source}: datasets[{i}].id: duplicate dataset id {ds.id!r}")
        if ds.route in prefixes:
            raise ConfigError(
                f"{source}: datasets[{i}].route: {ds.route!r} is already the route of "
                f"{prefixes[ds.route]!r}"
            )
        datasets[ds.id] = ds
        prefixes[ds.route] = ds.id
    ordered = tuple(sorted(((d.route, d) for d in datasets.values()), key=lambda p: -len(p[0])))
    version = hashlib.sha256(text.encode()).hexdigest()[:16]
    return Catalog(datasets, version, source, ordered, frozenset(parsed.departments))


def load_catalog(path: Path) -> Catalog:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read catalog: {exc.strerror}") from None
    return parse_catalog(text, str(path))
