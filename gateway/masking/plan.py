"""The mask plan: a dataset's field rules compiled for one clearance, and the walk applying it."""

from __future__ import annotations

import dataclasses
import re
import threading
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import orjson

from gateway.errors import ConfigError
from gateway.masking import scanner
from gateway.masking.config import MaskingConfig
from gateway.masking.strategies import MaskFn, compile_strategy
from gateway.policy.catalog import Dataset, FieldSpec

STAR_INDEX = "[*]"
_UNSEEN = object()
_WALK = frozenset({dict, list})
_WALK_SCAN = frozenset({dict, list, int, float})
# Integers below this have at most ten digits: no identifier fits. Floats need a check of
# their digits too (0.13812345678), which _number makes.
_PLAIN = 10_000_000_000
_SEGMENT_RE = re.compile(r"([^.\[\]]+)|\[\*\]|(\.)")
_SORT_PARAMS = frozenset({"sort", "sortby", "orderby", "order", "sortfield", "orderfield"})
_PARAM_PARTS_RE = re.compile(r"\[|\]|\.|:|__")
# Strategies whose values are identifiers the scanner also knows; used by the query guard.
_KIND_OF_STRATEGY = {
    "resident_id": "resident_id",
    "mobile": "mobile",
    "bank_card": "bank_card",
    "email": "email",
    "uscc": "uscc",
}


def norm_name(name: str) -> str:
    """Field/column/parameter names compare case- and separator-insensitively (idCard ~ ID_CARD)."""
    return name.lower().replace("_", "").replace("-", "").replace(" ", "")


@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    """What happens to one hidden field: `fn` masks its values; `fn is None` removes it."""

    label: str  # reported in masked_fields: the field name or the configured path
    level: int
    strategy: str
    fn: MaskFn | None

    def stricter(self, other: Rule | None) -> Rule:
        if other is None:
            return self
        mine, theirs = (self.level, self.fn is None), (other.level, other.fn is None)
        return self if mine >= theirs else other


@dataclasses.dataclass(slots=True)
class PathNode:
    """A node of the trie of configured JSON paths."""

    children: dict[str, PathNode] = dataclasses.field(default_factory=dict)
    rule: Rule | None = None

    def child(self, segment: str) -> PathNode:
        node = self.children.get(segment)
        if node is None:
            node = self.children[segment] = PathNode()
        return node


def parse_path(path: str) -> list[str]:
    """`items[*].id_card` -> ["items", "[*]", "id_card"]; `$.` prefix allowed."""
    text = path[2:] if path.startswith("$.") else path[1:] if path.startswith("$[") else path
    segments: list[str] = []
    pos = 0
    expect_name = True
    while pos < len(text):
        m = _SEGMENT_RE.match(text, pos)
        if m is None or (m.group(2) and expect_name):
            raise ValueError(f"bad JSON path {path!r} at character {pos + 1}")
        if m.group(1):
            if not expect_name:
                raise ValueError(f"bad JSON path {path!r}: missing '.' before {m.group(1)!r}")
            segments.append(m.group(1))
            expect_name = False
        elif m.group(2):
            expect_name = True
        else:
            segments.append(STAR_INDEX)
            expect_name = False
        pos = m.end()
    if not segments or expect_name:
        raise ValueError(f"bad JSON path {path!r}")
    return segments


class WalkObserver(Protocol):
    """What the walk tells about the values it already visits (gateway/reports/quality.py)."""

    def record(self, record: dict[str, Any], plan: MaskPlan) -> None: ...

    def value(self, label: str, strategy: str, value: Any) -> None: ...

    def document(self, value: Any, plan: MaskPlan) -> None: ...

    def holds_records(self, items: list[Any]) -> bool: ...


@dataclasses.dataclass(frozen=True, slots=True)
class MaskPlan:
    """A dataset's rules for one effective clearance; shared by all requests alike."""

    dataset_id: str
    clearance: int
    by_name: dict[str, Rule]  # normalised key name -> rule, at any depth
    paths: PathNode | None  # trie of explicit paths from the document root
    by_column: dict[str, Rule]  # normalised CSV/TSV column -> rule
    records_key: str | None
    scan: bool  # the identifier scanner runs (clearance below the scanner level)
    scanner_action: str  # mask | block | report
    needs_key: bool  # a pseudonym rule needs the consumer's key
    hidden_names: frozenset[str]  # normalised names and aliases the caller may not query
    hidden_kinds: frozenset[str]  # identifier kinds the caller may not search by value
    # Told of each record and classified value the walk visits (data-quality counts).
    observe: WalkObserver | None = None
    _memo: dict[str, Rule | None] = dataclasses.field(default_factory=dict)
    # Records repeat their keys: key tuple -> the (key, rule) pairs that apply to it.
    _shapes: dict[tuple[str, ...], tuple[tuple[tuple[str, Rule], ...], frozenset[str]]] = (
        dataclasses.field(default_factory=dict)
    )

    @property
    def active(self) -> bool:
        """Something to do: a hidden field or the scanner."""
        return bool(self.by_name or self.paths or self.by_column or self.scan)

    def rule_for(self, key: str) -> Rule | None:
        """The name rule for a JSON key (memoised: keys repeat across records)."""
        try:
            return self._memo[key]
        except KeyError:
            rule = self.by_name.get(norm_name(key))
            if len(self._memo) < 10_000:
                self._memo[key] = rule
            return rule

    def record_roots(self) -> tuple[PathNode, ...]:
        """Trie nodes a record (array element, NDJSON line) starts at: its place under the
        document root, and the root itself (paths also match relative to each record)."""
        if self.paths is None:
            return ()
        roots = [self.paths]
        star = self.paths.children.get(STAR_INDEX)
        if star is not None:
            roots.append(star)
        if self.records_key is not None:
            under = self.paths.children.get(self.records_key)
            if under is not None and STAR_INDEX in under.children:
                roots.append(under.children[STAR_INDEX])
        return tuple(roots)


def compile_plan(dataset: Dataset, clearance: int, config: MaskingConfig) -> MaskPlan:
    """Rules for the fields above `clearance`; level-4 fields are removed below 4."""
    by_name: dict[str, Rule] = {}
    by_column: dict[str, Rule] = {}
    root = PathNode()
    has_paths = False
    needs_key = False
    hidden: set[str] = set()
    kinds: set[str] = set()
    for spec in dataset.fields:
        rule = _compile_rule(dataset, spec, config)
        if spec.level <= clearance:
            continue
        if spec.level == 4 and clearance < 4:
            rule = dataclasses.replace(rule, strategy="remove", fn=None)
        needs_key = needs_key or rule.strategy == "pseudonym"
        hidden.add(norm_name(spec.name))
        if spec.strategy in _KIND_OF_STRATEGY:
            kinds.add(_KIND_OF_STRATEGY[spec.strategy])
        column = norm_name(spec.column or spec.name)
        by_column[column] = rule.stricter(by_column.get(column))
        if not spec.paths:
            key = norm_name(spec.name)
            by_name[key] = rule.stricter(by_name.get(key))
            continue
        for path in spec.paths:
            node = root
            for segment in parse_path(path):
                node = node.child(segment)
            node.rule = dataclasses.replace(rule, label=path).stricter(node.rule)
            has_paths = True
            hidden.add(norm_name(parse_path(path)[-1]))
    for alias, target in dataset.query_aliases.items():
        if norm_name(target) in hidden:
            hidden.add(norm_name(alias))
    scan = dataset.classified and clearance < config.scanner_level
    if scan:
        kinds.update(scanner.KINDS)
    return MaskPlan(
        dataset_id=dataset.id,
        clearance=clearance,
        by_name=by_name,
        paths=root if has_paths else None,
        by_column=by_column,
        records_key=dataset.records_key,
        scan=scan,
        scanner_action=dataset.scanner,
        needs_key=needs_key,
        hidden_names=frozenset(hidden),
        hidden_kinds=frozenset(kinds),
    )


def _compile_rule(dataset: Dataset, spec: FieldSpec, config: MaskingConfig) -> Rule:
    where = f"dataset {dataset.id!r} field {spec.name!r}"
    for path in spec.paths:
        try:
            parse_path(path)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    if spec.strategy == "pseudonym" and config.pseudonym_secret is None:
        raise ConfigError(f"{where}: strategy 'pseudonym' needs masking.pseudonym_secret")
    fn = compile_strategy(spec.strategy, spec.params, config.redact_token, where)
    return Rule(label=spec.name, level=spec.level, strategy=spec.strategy, fn=fn)


def check_dataset(dataset: Dataset, config: MaskingConfig) -> None:
    """Validate a dataset's masking rules at load time (raises ConfigError naming the field)."""
    for spec in dataset.fields:
        _compile_rule(dataset, spec, config)


class PlanCache:
    """Compiled plans per (dataset, effective clearance); a reloaded dataset recompiles."""

    def __init__(
        self,
        config: MaskingConfig,
        observer: Callable[[Dataset], WalkObserver] | None = None,
    ) -> None:
        self._config = config
        self._observer = observer
        self._plans: dict[tuple[str, int], tuple[Dataset, MaskPlan]] = {}
        self._lock = threading.Lock()

    def get(self, dataset: Dataset, clearance: int) -> MaskPlan:
        key = (dataset.id, clearance)
        entry = self._plans.get(key)
        if entry is not None and entry[0] is dataset:
            return entry[1]
        plan = compile_plan(dataset, clearance, self._config)
        if self._observer is not None:
            plan = dataclasses.replace(plan, observe=self._observer(dataset))
        with self._lock:
            self._plans[key] = (dataset, plan)
        return plan


_LOSSY = 2.0**53  # from here on a float cannot hold every integer: checksums are lost


def number_text(value: float) -> str:
    """A JSON number as the digits a reader sees: a large float as its whole part in plain
    digits (1.10105194912310038e17 is 110105194912310032, not `1.1010519491231003e+17`), so
    the scanner and the strategies read identifiers sent as floats."""
    if type(value) is float and 1e10 <= abs(value) < 1e19:  # NaN and inf fail the test
        return str(int(value))
    return orjson.dumps(value).decode()


def guarded_query_field(
    plan: MaskPlan, query: Mapping[str, str] | Iterable[tuple[str, str]]
) -> str | None:
    """The first query parameter that filters, sorts or searches on a field the caller may
    only see masked or removed (by name, alias, `name[op]`/`filter[name]`/`name__op`, a
    sort value, or an identifier value of a hidden kind); None when the query is safe."""
    items = query.items() if isinstance(query, Mapping) else query
    for raw_name, value in items:
        for name in _param_names(raw_name):
            if name in plan.hidden_names:
                return raw_name
        if norm_name(raw_name) in _SORT_PARAMS:
            for part in re.split(r"[,\s]+", value):
                field = norm_name(part.strip("+-").split(":")[0].split(".")[-1])
                if field in plan.hidden_names:
                    return raw_name
        if plan.hidden_kinds and value and scanner.kinds_in(value) & plan.hidden_kinds:
            return raw_name
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class QueryRefusal:
    """Why the query guard refuses a request: the public error code, reason and message."""

    code: str
    reason: str
    message: str


_WORD = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_SORT_VALUE = re.compile(r"[A-Za-z0-9_.,:+\- ]{1,256}")
_DIGIT_RUN = re.compile(r"[0-9]{3}")


def _has_digit(value: str) -> bool:
    """Any decimal digit, in any script or compatibility form (full-width, circled, bold)."""
    if value.isascii():
        return any(c.isdigit() for c in value)
    folded = unicodedata.normalize("NFKC", value)
    return any(c.isdigit() or unicodedata.digit(c, None) is not None for c in value + folded)


def refused_query(
    plan: MaskPlan,
    rules: Mapping[str, str | frozenset[str]],
    query: Iterable[tuple[str, str]],
) -> QueryRefusal | None:
    """Default-deny for callers who see masked fields: only parameters the route declares
    (`rules`, from the catalog's `query_params`) pass, each once, with a value of its kind;
    a parameter that names a masked field, or whose value could hold (part of) a masked
    identifier, is refused as `masked_field_query`. None when the query may go upstream."""
    items = list(query)
    field = guarded_query_field(plan, items)
    if field is not None:
        return _masked(field, "filters on a field you may only see masked")
    seen: set[str] = set()
    for key, value in items:
        name = key.lower()
        rule = rules.get(name)
        if rule is None:
            norm = norm_name(key)
            if any(hidden in norm for hidden in plan.hidden_names):
                return _masked(key, "filters on a field you may only see masked")
            accepted = ", ".join(sorted(rules)) or "none"
            return QueryRefusal(
                "forbidden",
                "undeclared_query_param",
                f"query parameter {key!r} is not one this route accepts from callers who "
                f"see masked fields (it accepts: {accepted})",
            )
        if name in seen:
            return QueryRefusal(
                "bad_request",
                "duplicate_query_param",
                f"query parameter {key!r} is given more than once; give it once",
            )
        seen.add(name)
        refusal = _value_refusal(plan, key, value, rule)
        if refusal is not None:
            return refusal
    return None


def _value_refusal(
    plan: MaskPlan, key: str, value: str, rule: str | frozenset[str]
) -> QueryRefusal | None:
    if isinstance(rule, frozenset):
        if value in rule:
            return None
        return _bad(key, f"must be one of {', '.join(sorted(rule))}")
    if rule == "exact":
        return None  # the name and identifier checks of guarded_query_field cover it
    if rule == "integer":
        if value.isascii() and value.isdigit() and len(value) <= 9:
            return None
        return _bad(key, "must be an integer of at most 9 digits")
    if rule == "word":
        if not _WORD.fullmatch(value):
            return _bad(key, "must be one word of letters, digits, '_', '.' or '-' (64 at most)")
        if _DIGIT_RUN.search(value):
            return _masked(key, "holds a run of digits, which could be part of an identifier")
        return None
    if rule == "text":
        if _has_digit(value):
            return _masked(key, "holds digits, which could be part of an identifier")
        return None
    # sort: field names, none of them masked.
    if not _SORT_VALUE.fullmatch(value):
        return _bad(key, "must be field names separated by ',', each optionally '+' or '-'")
    for part in re.split(r"[,\s]+", value):
        if norm_name(part.strip("+-").split(":")[0].split(".")[-1]) in plan.hidden_names:
            return _masked(key, "sorts on a field you may only see masked")
    return None


def _masked(key: str, why: str) -> QueryRefusal:
    return QueryRefusal("forbidden", "masked_field_query", f"query parameter {key!r} {why}")


def _bad(key: str, why: str) -> QueryRefusal:
    return QueryRefusal("bad_request", "bad_query_value", f"query parameter {key!r} {why}")


def _param_names(raw: str) -> list[str]:
    """`id_card`, `filter[id_card]`, `id_card[eq]`, `id_card__in`, `id_card.like`."""
    return [norm_name(raw), *(norm_name(p) for p in _PARAM_PARTS_RE.split(raw) if p)]


class Walker:
    """Applies a plan to decoded JSON values in place, counting what it masks."""

    __slots__ = ("counts", "findings", "key", "observe", "plan", "redact_token")

    def __init__(
        self,
        plan: MaskPlan,
        key: bytes,
        redact_token: str,
        counts: dict[str, int] | None = None,
        findings: dict[str, int] | None = None,
    ) -> None:
        self.plan = plan
        self.key = key
        self.redact_token = redact_token
        # Field label -> values masked or removed; identifier kind -> scanner findings.
        self.counts: dict[str, int] = {} if counts is None else counts
        self.findings: dict[str, int] = {} if findings is None else findings
        self.observe = plan.observe

    def document(self, value: Any) -> Any:
        """Mask a whole JSON document."""
        roots = (self.plan.paths,) if self.plan.paths is not None else ()
        if self.observe is not None:
            self.observe.document(value, self.plan)
        return self._value(value, roots)

    def records(self, values: list[Any]) -> None:
        """Mask record values (array elements, NDJSON lines) in place."""
        roots = self.plan.record_roots()
        observe = self.observe
        for i, value in enumerate(values):
            t = type(value)
            if t is dict:
                if observe is not None:
                    observe.record(value, self.plan)
                self._dict(value, roots)
            elif t is list:
                self._list(value, roots)
            else:
                values[i] = self._value(value, roots)

    def _value(self, value: Any, nodes: tuple[PathNode, ...]) -> Any:
        t = type(value)
        if t is dict:
            self._dict(value, nodes)
        elif t is list:
            self._list(value, nodes)
        elif self.plan.scan and (t is float or (t is int and not -_PLAIN < value < _PLAIN)):
            return self._number(value)
        return value

    def _dict(self, obj: dict[str, Any], nodes: tuple[PathNode, ...]) -> None:
        if nodes:
            self._dict_paths(obj, nodes)
            return
        # Set operations and one comprehension keep the per-key work in C: only keys with a
        # rule, containers and (when scanning) numbers are visited in Python.
        plan = self.plan
        hits: tuple[tuple[str, Rule], ...] = ()
        hit_keys: frozenset[str] = frozenset()
        if plan.by_name:
            shape = tuple(obj)
            found = plan._shapes.get(shape)
            if found is None:
                pairs = tuple((k, r) for k in shape if (r := plan.rule_for(k)) is not None)
                found = (pairs, frozenset(k for k, _ in pairs))
                if len(plan._shapes) < 1000:
                    plan._shapes[shape] = found
            hits, hit_keys = found
        walk = _WALK_SCAN if plan.scan else _WALK
        for k in [k for k, v in obj.items() if type(v) in walk]:
            if k in hit_keys:
                continue
            v = obj[k]
            t = type(v)
            if t is dict:
                self._dict(v, ())
            elif t is list:
                self._list(v, ())
            elif t is float or not -_PLAIN < v < _PLAIN:
                obj[k] = self._number(v)
        counts = self.counts
        observe = self.observe
        for k, rule in hits:
            counts[rule.label] = counts.get(rule.label, 0) + 1
            if observe is not None:
                observe.value(rule.label, rule.strategy, obj[k])
            if rule.fn is None:
                del obj[k]
            else:
                v = obj[k]
                obj[k] = rule.fn(v, self.key) if type(v) is str else self._mask(rule, v)

    def _dict_paths(self, obj: dict[str, Any], nodes: tuple[PathNode, ...]) -> None:
        """`_dict` when explicit paths are in play: each key also moves along the path trie."""
        removed: list[str] | None = None
        plan = self.plan
        memo = plan._memo if plan.by_name else None
        counts = self.counts
        key = self.key
        scan = plan.scan
        for k, v in obj.items():
            rule = None
            if memo is not None:
                rule = memo.get(k, _UNSEEN)
                if rule is _UNSEEN:
                    rule = plan.rule_for(k)
            child: tuple[PathNode, ...] = ()
            if nodes:
                child = tuple(n.children[k] for n in nodes if k in n.children)
                for n in child:
                    if n.rule is not None:
                        rule = n.rule.stricter(rule)
            if rule is not None:
                counts[rule.label] = counts.get(rule.label, 0) + 1
                if self.observe is not None:
                    self.observe.value(rule.label, rule.strategy, v)
                if rule.fn is None:
                    if removed is None:
                        removed = []
                    removed.append(k)
                elif type(v) is str:
                    obj[k] = rule.fn(v, key)
                else:
                    obj[k] = self._mask(rule, v)
                continue
            t = type(v)
            if t is dict:
                self._dict(v, child)
            elif t is list:
                self._list(v, child)
            elif scan and (t is float or (t is int and not -_PLAIN < v < _PLAIN)):
                obj[k] = self._number(v)
        if removed:
            for k in removed:
                del obj[k]

    def _list(self, items: list[Any], nodes: tuple[PathNode, ...]) -> None:
        child: tuple[PathNode, ...] = ()
        if nodes:
            child = tuple(n.children[STAR_INDEX] for n in nodes if STAR_INDEX in n.children)
            rule: Rule | None = None
            for n in child:
                if n.rule is not None:
                    rule = n.rule.stricter(rule)
            if rule is not None:
                self.counts[rule.label] = self.counts.get(rule.label, 0) + len(items)
                if self.observe is not None:
                    for v in items:
                        self.observe.value(rule.label, rule.strategy, v)
                if rule.fn is None:
                    items.clear()
                else:
                    items[:] = [self._mask(rule, v) for v in items]
                return
        observe = self.observe
        records = observe is not None and observe.holds_records(items)
        for i, v in enumerate(items):
            t = type(v)
            if t is dict:
                if records:
                    observe.record(v, self.plan)  # type: ignore[union-attr]
                self._dict(v, child)
            elif t is list:
                self._list(v, child)
            elif self.plan.scan and (t is float or (t is int and not -_PLAIN < v < _PLAIN)):
                items[i] = self._number(v)

    def _mask(self, rule: Rule, value: Any) -> Any:
        """A field's strategy on any JSON value: containers leaf by leaf, fail closed."""
        fn = rule.fn
        assert fn is not None
        t = type(value)
        if t is str:
            return fn(value, self.key)
        if value is None:
            return None
        if t is int or t is float:
            numeric = rule.strategy == "bucket"
            return fn(value if numeric else number_text(value), self.key)
        if t is list:
            return [self._mask(rule, v) for v in value]
        if t is dict:
            return {k: self._mask(rule, v) for k, v in value.items()}
        return self.redact_token  # true/false under a hidden field reveal as much as a value

    def _number(self, value: float) -> Any:
        """An unquoted number can hold an identifier (a mobile as an integer); the scanner
        must see it as text, and a masked one becomes a string so the JSON stays valid."""
        if self.plan.scanner_action != "mask":
            return value
        text = number_text(value).encode()
        if len(text) < 11:
            return value
        counts: dict[str, int] = {}
        masked = scanner.scan_bytes(text, counts)
        if not counts and type(value) is float and _LOSSY <= abs(value) < 1e19:
            # 110105194912310038.0 arrives as the nearest float, whose 17 significant digits
            # still give the ID away (the check digit restores the last): unverifiable, so
            # masked as the identifier its size says it could be.
            counts["resident_id" if len(text) == 18 else "bank_card"] = 1
            masked = scanner.keep_ends(text.decode(), 6, 4, str.isdigit).encode()
        if not counts:
            return value
        for kind, n in counts.items():
            self.findings[kind] = self.findings.get(kind, 0) + n
        return masked.decode()
