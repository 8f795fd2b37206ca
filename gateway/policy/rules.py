"""The security officers' Casbin files: model.conf and policy.csv parsed, checked and located."""

from __future__ import annotations

import ast
import csv
import dataclasses
import re
from functools import lru_cache

from cryptography import x509

from gateway.errors import ConfigError
from gateway.policy.decision import Rule

ACTIONS = ("read", "list", "export", "write")
REQUEST_TOKENS = ("sub", "dataset", "act", "env")
REQUIRED_COLUMNS = ("sub", "dataset", "act", "eft")
OPTIONAL_COLUMNS = ("purpose", "hours", "days", "clearance")
DENY_OVERRIDES = "some(where (p.eft == allow)) && !some(where (p.eft == deny))"
MATCHER_FUNCTIONS = frozenset(
    {
        "subject_match",
        "dataset_match",
        "action_match",
        "purpose_match",
        "time_match",
        "clearance_match",
    }
)
# The last conjunct of the matcher: the catalog's sharing rules (owner, sharing type, level,
# grants) as plain Casbin applies them (gateway.policy.casbin_functions). The gateway
# evaluates the rest of the matcher per row and applies the same rules in decide.py.
SHARING_CALL = "sharing_match(r.sub, r.dataset, r.act, r.env, p.sub, p.eft)"
_SHARING_TAIL = re.compile(
    r"\s*&&\s*sharing_match\(\s*r\.sub\s*,\s*r\.dataset\s*,\s*r\.act\s*,\s*r\.env\s*,"
    r"\s*p\.sub\s*,\s*p\.eft\s*\)\s*$"
)
# The row standing for what the catalog and the grants allow, so Casbin has a row to fire.
CATALOG_SUBJECT = "catalog"
CATALOG_ROW = (CATALOG_SUBJECT, "*", "*", "allow")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SECTIONS = {
    "request_definition": "r",
    "policy_definition": "p",
    "policy_effect": "e",
    "matchers": "m",
}
# Attributes of the request values a matcher may read (enforcer.Subject and enforcer.Env).
_REQUEST_ATTRIBUTES = {"sub": ("clearance",), "env": ("purpose", "hour", "weekday")}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")
_SUBJECT = re.compile(r"^(user|dept|role):([A-Za-z0-9][A-Za-z0-9_.@-]*)$")
CERT_PREFIX = "cert:"  # cert:<RFC 4514 subject of a verified client certificate>
_HOURS = re.compile(r"^(\d{1,2})-(\d{1,2})$")


@dataclasses.dataclass(frozen=True, slots=True)
class ModelSpec:
    """A parsed model.conf: the policy columns and the matcher, with where they were written."""

    file: str
    columns: tuple[str, ...]
    matcher: str  # the per-row part, without the sharing_match conjunct
    matcher_line: int
    # Whether the matcher ends with `&& sharing_match(...)`, which plain Casbin needs to
    # decide as the gateway does (the gateway applies the catalog's rules either way).
    sharing: bool = True

    def casbin_text(self, effect: str) -> str:
        """The model as Casbin reads it, with `effect` as its policy effect."""
        return (
            "[request_definition]\n"
            f"r = {', '.join(REQUEST_TOKENS)}\n"
            "[policy_definition]\n"
            f"p = {', '.join(self.columns)}\n"
            "[policy_effect]\n"
            f"e = {effect}\n"
            "[matchers]\n"
            f"m = {self.matcher}\n"
        )


@dataclasses.dataclass(frozen=True, slots=True)
class PolicyRow:
    """One row of policy.csv, normalised: `values` are in the model's column order."""

    rule: Rule
    values: tuple[str, ...]
    sub: str
    dataset: str
    actions: frozenset[str]
    eft: str
    purpose: str
    hours: str
    days: str
    clearance: str
    written: int = 0  # fields written in the file (fewer than the model: padded with '*')


def parse_model(text: str, source: str) -> ModelSpec:
    """Parse model.conf; every error names the file and line."""
    section: str | None = None
    seen: dict[str, tuple[int, str]] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        where = f"{source}:{number}"
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise ConfigError(f"{where}: section header must end with ']': {line!r}")
            name = line[1:-1].strip()
            if name not in _SECTIONS:
                known = ", ".join(_SECTIONS)
                raise ConfigError(f"{where}: unknown section [{name}] (known: {known})")
            section = name
            continue
        key, eq, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key or not value:
            raise ConfigError(f"{where}: expected 'key = value', got {line!r}")
        if section is None:
            raise ConfigError(f"{where}: {key!r} is outside any [section]")
        if key != _SECTIONS[section]:
            raise ConfigError(f"{where}: [{section}] defines {_SECTIONS[section]!r}, not {key!r}")
        if key in seen:
            raise ConfigError(f"{where}: {key!r} is defined twice (first at line {seen[key][0]})")
        seen[key] = (number, value)
    for name, key in _SECTIONS.items():
        if key not in seen:
            raise ConfigError(f"{source}: missing [{name}] with '{key} = ...'")
    r_line, r_value = seen["r"]
    tokens = tuple(t.strip() for t in r_value.split(","))
    if tokens != REQUEST_TOKENS:
        raise ConfigError(
            f"{source}:{r_line}: request definition must be "
            f"'r = {', '.join(REQUEST_TOKENS)}' (the gateway supplies these)"
        )
    p_line, p_value = seen["p"]
    columns = tuple(t.strip() for t in p_value.split(","))
    for column in columns:
        if column not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS:
            known = ", ".join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)
            raise ConfigError(
                f"{source}:{p_line}: unknown policy column {column!r} (known: {known})"
            )
        if columns.count(column) > 1:
            raise ConfigError(f"{source}:{p_line}: policy column {column!r} is listed twice")
    if columns[: len(REQUIRED_COLUMNS)] != REQUIRED_COLUMNS:
        raise ConfigError(
            f"{source}:{p_line}: the policy definition must start with "
            f"'p = {', '.join(REQUIRED_COLUMNS)}'"
        )
    e_line, e_value = seen["e"]
    if " ".join(e_value.split()) != DENY_OVERRIDES:
        raise ConfigError(
            f"{source}:{e_line}: policy effect must be deny-overrides: 'e = {DENY_OVERRIDES}'"
        )
    m_line, m_value = seen["m"]
    rows_part = _SHARING_TAIL.sub("", m_value)
    sharing = rows_part != m_value
    _check_matcher(rows_part, columns, f"{source}:{m_line}")
    body = _python_tree(rows_part, "").body
    if sharing and isinstance(body, ast.BoolOp) and isinstance(body.op, ast.Or):
        raise ConfigError(
                f"{source}:{m_line}: put the row conditions in parentheses before "
                f"'&& {SHARING_CALL}' (it must apply to the whole row match)"
            )
    return ModelSpec(source, columns, rows_part, m_line, sharing)


def _python_tree(expr: str, where: str) -> ast.Expression:
    python = re.sub(r"!(?!=)", " not ", expr.replace("&&", " and ").replace("||", " or "))
    try:
        return ast.parse(python.strip(), mode="eval")
    except SyntaxError as exc:
        raise ConfigError(f"{where}: matcher is not a valid expression: {exc.msg}") from None


def _check_matcher(expr: str, columns: tuple[str, ...], where: str) -> None:
    tree = _python_tree(expr, where)
    tokens = {"r": set(REQUEST_TOKENS), "p": set(columns)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            scope = node.value.id
            if scope in tokens and node.attr not in tokens[scope]:
                raise ConfigError(f"{where}: matcher uses unknown {scope}.{node.attr}")
        elif isinstance(node, ast.Attribute):
            inner = node.value
            owner = inner.attr if isinstance(inner, ast.Attribute) else None
            if not (
                isinstance(inner, ast.Attribute)
                and isinstance(inner.value, ast.Name)
                and inner.value.id == "r"
                and node.attr in _REQUEST_ATTRIBUTES.get(owner or "", ())
            ):
                known = "r.sub.clearance, r.env.purpose, r.env.hour, r.env.weekday"
                raise ConfigError(
                    f"{where}: matcher uses unknown attribute .{node.attr} (known: {known})"
                )
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in MATCHER_FUNCTIONS:
                known = ", ".join(sorted(MATCHER_FUNCTIONS))
                if isinstance(node.func, ast.Name) and node.func.id == "sharing_match":
                    raise ConfigError(
                        f"{where}: sharing_match may only end the matcher, as "
                        f"'&& {SHARING_CALL}'"
                    )
                name = node.func.id if isinstance(node.func, ast.Name) else "?"
                raise ConfigError(
                    f"{where}: matcher calls an unknown function {name!r} (known: {known}, "
                    "and sharing_match last)"
                )
        elif (
            isinstance(node, ast.Name)
            and node.id not in tokens
            and node.id not in (MATCHER_FUNCTIONS)
        ):
            raise ConfigError(f"{where}: matcher uses unknown name {node.id!r}")
        elif isinstance(node, ast.Lambda | ast.ListComp | ast.GeneratorExp | ast.Subscript):
            raise ConfigError(f"{where}: matcher may only compare attributes and call functions")


def parse_policy(text: str, source: str, model: ModelSpec) -> list[PolicyRow]:
    """Parse policy.csv against the model's columns; every error names the file and line."""
    rows: list[PolicyRow] = []
    width = len(model.columns)
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}:{number}"
        try:
            (fields,) = list(csv.reader([line], skipinitialspace=True, strict=True))
        except (csv.Error, ValueError) as exc:
            raise ConfigError(f"{where}: not a CSV row: {exc}") from None
        fields = [f.strip() for f in fields]
        if fields[0] != "p":
            raise ConfigError(f"{where}: a row must start with 'p', got {fields[0]!r}")
        values = fields[1:]
        if len(values) < len(REQUIRED_COLUMNS):
            raise ConfigError(
                f"{where}: a row needs at least {', '.join(REQUIRED_COLUMNS)}, "
                f"got {len(values)} field(s)"
            )
        if len(values) > width:
            raise ConfigError(
                f"{where}: too many fields ({len(values)}; "
                f"the model has {', '.join(model.columns)})"
            )
        written = len(values)
        values += ["*"] * (width - len(values))
        named = dict(zip(model.columns, values, strict=True))
        for column in OPTIONAL_COLUMNS:
            named.setdefault(column, "*")
        row = _check_row(named, Rule(source, number, line), tuple(values), where)
        rows.append(dataclasses.replace(row, written=written))
    return rows


def _check_row(named: dict[str, str], rule: Rule, values: tuple[str, ...], where: str) -> PolicyRow:
    sub, dataset, act, eft = (named[c] for c in REQUIRED_COLUMNS)
    if sub == CATALOG_SUBJECT:
        if (sub, dataset, act, eft) != CATALOG_ROW or any(
            named[c] != "*" for c in OPTIONAL_COLUMNS
        ):
            raise ConfigError(
                f"{where}: the '{CATALOG_SUBJECT}' row stands for the catalog's sharing rules "
                f"and grants; write it as 'p, {', '.join(CATALOG_ROW)}' with '*' in every "
                "other column"
            )
        actions = frozenset(ACTIONS)
        return PolicyRow(rule, values, sub, dataset, actions, eft, "*", "*", "*", "*")
    if sub.startswith(CERT_PREFIX):
        problem = cert_subject_problem(sub[len(CERT_PREFIX) :])
        if problem:
            raise ConfigError(f"{where}: {problem}")
    elif sub != "*" and not _SUBJECT.match(sub):
        raise ConfigError(
            f"{where}: subject must be user:ID, dept:NAME, role:NAME, cert:SUBJECT or '*', "
            f"got {sub!r}"
        )
    if dataset != "*" and not _NAME.match(dataset):
        raise ConfigError(f"{where}: dataset must be a dataset id or '*', got {dataset!r}")
    if eft not in ("allow", "deny"):
        raise ConfigError(f"{where}: effect must be allow or deny, got {eft!r}")
    if act == "*":
        if eft == "allow":
            raise ConfigError(
                f"{where}: an allow row must name its actions (read|list|export|write), not '*'"
            )
        actions = frozenset(ACTIONS)
    else:
        actions = frozenset(act.split("|"))
        unknown = sorted(actions - set(ACTIONS))
        if unknown:
            raise ConfigError(
                f"{where}: unknown action {unknown[0]!r} (known: {', '.join(ACTIONS)} or '*')"
            )
    try:
        purposes(named["purpose"])
        hours(named["hours"])
        days(named["days"])
        min_clearance(named["clearance"])
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return PolicyRow(
        rule,
        values,
        sub,
        dataset,
        actions,
        eft,
        named["purpose"],
        named["hours"],
        named["days"],
        named["clearance"],
    )


def cert_subject_problem(subject: str) -> str | None:
    """Why `subject` is not a certificate subject as the gateway writes it (RFC 4514, most
    specific first, no spaces after commas: `CN=etl-01,O=Tax Bureau,C=CN`), or None."""
    try:
        canonical = x509.Name.from_rfc4514_string(subject).rfc4514_string()
    except ValueError:
        canonical = None
    if canonical is None or not subject:
        return (
            "a certificate subject must be an RFC 4514 name like 'CN=etl-01,O=Tax Bureau' "
            f"(as `openssl x509 -noout -subject -nameopt RFC2253` prints it), got {subject!r}"
        )
    if canonical != subject:
        return f"the gateway writes the certificate subject {subject!r} as {canonical!r}; use that"
    return None


@lru_cache(maxsize=4096)
def purposes(spec: str) -> frozenset[str] | None:
    """`*` (any declared purpose: None) or `a|b`."""
    if spec == "*":
        return None
    items = frozenset(spec.split("|"))
    for item in items:
        if not _NAME.match(item):
            raise ValueError(f"purpose must be '*' or names joined by '|', got {spec!r}")
    return items


@lru_cache(maxsize=4096)
def hours(spec: str) -> frozenset[int] | None:
    """`*` or `HH-HH` local hours, start inclusive, end exclusive; `22-06` wraps midnight."""
    if spec == "*":
        return None
    m = _HOURS.match(spec)
    if not m:
        raise ValueError(f"hours must be '*' or 'HH-HH' (e.g. 08-18), got {spec!r}")
    start, end = int(m.group(1)), int(m.group(2))
    if start > 23 or end > 24 or start == end % 24:
        raise ValueError(f"hours must be two different hours between 00 and 24, got {spec!r}")
    if start < end:
        return frozenset(range(start, end))
    return frozenset(range(start, 24)) | frozenset(range(0, end))


@lru_cache(maxsize=4096)
def days(spec: str) -> frozenset[int] | None:
    """`*` or weekdays like `mon-fri` or `mon|wed|sat-sun` (Monday is 0)."""
    if spec == "*":
        return None
    out: set[int] = set()
    for part in spec.split("|"):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise ValueError(f"days must be '*' or weekdays like mon-fri or sat|sun, got {spec!r}")
        a, b = DAYS.index(first), DAYS.index(last or first)
        out.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return frozenset(out)


@lru_cache(maxsize=16)
def min_clearance(spec: str) -> int:
    """`*` (0: any) or a clearance 1..4."""
    if spec == "*":
        return 0
    if spec not in ("1", "2", "3", "4"):
        raise ValueError(f"clearance must be '*' or 1..4, got {spec!r}")
    return int(spec)
