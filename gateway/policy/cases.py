"""Policy test cases: YAML files of principal, request and expected decision, run on a bundle."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

import yaml

from gateway.errors import ConfigError
from gateway.identity.principal import Principal
from gateway.policy.bundle import PolicyBundle
from gateway.policy.catalog import Catalog, Dataset
from gateway.policy.decide import evaluate
from gateway.policy.decision import Decision
from gateway.policy.grants import Grant, parse_time
from gateway.policy.rules import ACTIONS
from gateway.stages.route import classify_action

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: reloads are fast
# A Monday, mid-morning: cases without a `time` are decided at this local time.
DEFAULT_TIME = (2026, 1, 5, 10, 0)
_CASE_KEYS = frozenset({"name", "principal", "request", "grants", "expect"})
_PRINCIPAL_KEYS = frozenset({"sub", "dept", "clearance", "roles", "cert_subject"})
_REQUEST_KEYS = frozenset({"method", "path", "purpose", "time"})
_EXPECT_KEYS = frozenset({"decision", "reason", "rule_line", "mask_clearance"})
_GRANT_KEYS = frozenset(
    {"principal", "department", "actions", "purpose", "not_before", "expires_at", "clearance"}
)


@dataclasses.dataclass(frozen=True, slots=True)
class Case:
    name: str
    where: str  # file:line of the case
    principal: Principal
    method: str
    path: str
    purpose: str | None
    time: str | None
    grants: tuple[dict[str, Any], ...]
    expect: dict[str, Any]


def resolve(catalog: Catalog, method: str, path: str) -> tuple[Dataset, str]:
    """The dataset and action a request would be routed to; ValueError when unrouted."""
    raw_path, _, query = path.partition("?")
    dataset = catalog.match(raw_path)
    if dataset is None:
        raise ValueError(f"no dataset route matches {raw_path!r}")
    rest = raw_path[len(dataset.route) - 1 :]
    return dataset, classify_action(method.upper(), rest, dataset.export_endings, query)


def load_cases(path: Path) -> list[Case]:
    """Read one YAML file of cases; errors name the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        root = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
        raise ConfigError(f"{path}:1: expected a mapping with a 'cases' list")
    lines = _item_lines(root)
    return [
        _case(item, f"{path}:{lines[i] if i < len(lines) else 1}")
        for i, item in enumerate(data["cases"])
    ]


def _item_lines(root: yaml.Node | None) -> list[int]:
    if not isinstance(root, yaml.MappingNode):
        return []
    for key, value in root.value:
        if getattr(key, "value", None) == "cases" and isinstance(value, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value.value]
    return []


def _mapping(value: Any, keys: frozenset[str], what: str, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {what}: expected a mapping")
    unknown = sorted(set(value) - keys)
    if unknown:
        raise ConfigError(
            f"{where}: {what}.{unknown[0]}: unknown key (known: {', '.join(sorted(keys))})"
        )
    return value


def _case(item: Any, where: str) -> Case:
    item = _mapping(item, _CASE_KEYS, "case", where)
    for key in ("name", "principal", "request", "expect"):
        if key not in item:
            raise ConfigError(f"{where}: case.{key}: is required")
    p = _mapping(item["principal"], _PRINCIPAL_KEYS, "principal", where)
    r = _mapping(item["request"], _REQUEST_KEYS, "request", where)
    expect = item["expect"]
    if isinstance(expect, str):
        expect = {"decision": expect}
    expect = _mapping(expect, _EXPECT_KEYS, "expect", where)
    if expect.get("decision") not in ("allow", "deny"):
        raise ConfigError(f"{where}: expect.decision: must be allow or deny")
    clearance = p.get("clearance")
    if not isinstance(clearance, int) or isinstance(clearance, bool) or not 1 <= clearance <= 4:
        raise ConfigError(f"{where}: principal.clearance: expected an integer 1..4")
    if not isinstance(p.get("sub"), str) or not isinstance(p.get("dept"), str):
        raise ConfigError(f"{where}: principal: sub and dept are required strings")
    roles = p.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(x, str) for x in roles):
        raise ConfigError(f"{where}: principal.roles: expected a list of names")
    cert_subject = p.get("cert_subject")
    if cert_subject is not None and not isinstance(cert_subject, str):
        raise ConfigError(f"{where}: principal.cert_subject: expected a string")
    if not isinstance(r.get("path"), str):
        raise ConfigError(f"{where}: request.path: is required")
    grants = item.get("grants", [])
    if not isinstance(grants, list):
        raise ConfigError(f"{where}: grants: expected a list")
    for g in grants:
        _mapping(g, _GRANT_KEYS, "grants[]", where)
    when = r.get("time")
    return Case(
        name=str(item["name"]),
        where=where,
        principal=Principal(
            p["sub"], p["dept"], clearance, frozenset(roles), cert_subject=cert_subject
        ),
        method=str(r.get("method", "GET")),
        path=r["path"],
        purpose=r.get("purpose"),
        time=when.isoformat() if isinstance(when, datetime) else when,
        grants=tuple(grants),
        expect=expect,
    )


def case_time(case: Case, tz: tzinfo) -> float:
    if case.time is None:
        return datetime(*DEFAULT_TIME, tzinfo=tz).timestamp()
    return parse_time(case.time, "request.time")


def _grants(case: Case, dataset: Dataset, ts: float) -> list[Grant]:
    out = []
    for i, g in enumerate(case.grants):
        out.append(
            Grant(
                id=f"case-grant-{i}",
                dataset=dataset.id,
                actions=frozenset(g.get("actions", list(ACTIONS))),
                purpose=str(g.get("purpose", case.purpose)),
                not_before=parse_time(g.get("not_before", ts - 3600), "not_before"),
                expires_at=parse_time(g.get("expires_at", ts + 3600), "expires_at"),
                reason="policy test case",
                granted_by="policy-test",
                created_at=ts,
                principal=g.get("principal"),
                department=g.get("department"),
                clearance=g.get("clearance"),
            )
        )
    return out


def decide_case(bundle: PolicyBundle, case: Case, tz: tzinfo) -> Decision:
    dataset, action = resolve(bundle.catalog, case.method, case.path)
    ts = case_time(case, tz)
    return evaluate(
        bundle, case.principal, case.purpose, dataset, action, ts, _grants(case, dataset, ts), tz
    ).decision


def failure(bundle: PolicyBundle, case: Case, tz: tzinfo) -> str | None:
    """Why `case` fails on `bundle` (one line naming the case's file:line), or None."""
    try:
        decision = decide_case(bundle, case, tz)
    except (ValueError, ConfigError) as exc:
        return f"{case.where}: case {case.name!r}: {exc}"
    got = {
        "decision": decision.effect,
        "reason": decision.reason,
        "rule_line": decision.rule.line if decision.rule else None,
        "mask_clearance": decision.mask_clearance,
    }
    wrong = [k for k in case.expect if case.expect[k] != got[k]]
    if not wrong:
        return None
    detail = ", ".join(f"{k} {case.expect[k]!r} but got {got[k]!r}" for k in wrong)
    return f"{case.where}: case {case.name!r}: expected {detail}"


def case_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml"))


def run_cases(bundle: PolicyBundle, cases: Iterable[Case], tz: tzinfo) -> list[str]:
    return [f for f in (failure(bundle, c, tz) for c in cases) if f is not None]
