"""Casbin evaluation, indexed by dataset and action, so no decision scans every policy row."""

from __future__ import annotations

from collections.abc import Iterable

import casbin
from casbin.model import Model

from gateway.errors import ConfigError
from gateway.policy.catalog import Dataset
from gateway.policy.decision import Rule
from gateway.policy.rules import (
    ACTIONS,
    CATALOG_SUBJECT,
    ModelSpec,
    PolicyRow,
    days,
    hours,
    min_clearance,
    purposes,
)

# Each enforcer holds rows of one effect only, so its first match is the rule to explain:
# deny rows are checked first (deny overrides), then allow rows.
_FIRST_DENY = "!some(where (p.eft == deny))"
_FIRST_ALLOW = "some(where (p.eft == allow))"


class Subject:
    """The principal as the matcher sees it: its subject names, clearance and department."""

    __slots__ = ("clearance", "department", "ids")

    def __init__(self, ids: frozenset[str], clearance: int, department: str = "") -> None:
        self.ids = ids
        self.clearance = clearance
        self.department = department

    def __repr__(self) -> str:
        return f"Subject({sorted(self.ids)}, clearance={self.clearance})"


class Env:
    """The request's context as the matcher sees it: declared purpose, local hour and weekday,
    and the clearances of the grants in force for this caller, action and purpose (None: a
    grant that carries no clearance of its own)."""

    __slots__ = ("grants", "hour", "purpose", "weekday")

    def __init__(
        self,
        purpose: str | None,
        hour: int,
        weekday: int,
        grants: tuple[int | None, ...] = (),
    ) -> None:
        self.purpose = purpose
        self.hour = hour
        self.weekday = weekday
        self.grants = grants

    def __repr__(self) -> str:
        return f"Env(purpose={self.purpose!r}, hour={self.hour}, weekday={self.weekday})"


def subject_names(
    subject: str, department: str, roles: Iterable[str], cert_subject: str | None = None
) -> frozenset[str]:
    """The names a policy row's subject can match; `cert:` only from a verified certificate."""
    names = [f"user:{subject}", f"dept:{department}", *(f"role:{r}" for r in roles)]
    if cert_subject is not None:
        names.append(f"cert:{cert_subject}")
    return frozenset(names)


def subject_match(sub: Subject, spec: str) -> bool:
    # The `catalog` row stands for everyone the catalog's rules and grants admit; the
    # model's sharing_match decides who that is.
    return spec == "*" or spec == CATALOG_SUBJECT or spec in sub.ids


def dataset_match(dataset: Dataset, spec: str) -> bool:
    return spec == "*" or spec == dataset.id


def action_match(action: str, spec: str) -> bool:
    return spec == "*" or action in spec.split("|")


def purpose_match(env: Env, spec: str) -> bool:
    allowed = purposes(spec)
    return allowed is None or env.purpose in allowed


def time_match(env: Env, hours_spec: str, days_spec: str) -> bool:
    h, d = hours(hours_spec), days(days_spec)
    return (h is None or env.hour in h) and (d is None or env.weekday in d)


def clearance_match(sub: Subject, spec: str) -> bool:
    return sub.clearance >= min_clearance(spec)


FUNCTIONS = {
    "subject_match": subject_match,
    "dataset_match": dataset_match,
    "action_match": action_match,
    "purpose_match": purpose_match,
    "time_match": time_match,
    "clearance_match": clearance_match,
}


class _Rows:
    """One Casbin enforcer over the rows of one effect, and where each row was written."""

    __slots__ = ("_enforcer", "_rules", "_where")

    def __init__(self, model: ModelSpec, effect: str, rows: list[PolicyRow]) -> None:
        self._where = f"{model.file}:{model.matcher_line}"
        casbin_model = Model()
        casbin_model.load_model_from_text(model.casbin_text(effect))
        self._enforcer = casbin.Enforcer(casbin_model)
        for name, fn in FUNCTIONS.items():
            self._enforcer.add_function(name, fn)
        self._rules: dict[tuple[str, ...], Rule] = {}
        for row in rows:
            self._rules.setdefault(row.values, row.rule)
        casbin_model.add_policies("p", "p", [list(v) for v in self._rules])

    def first(self, subject: Subject, dataset: Dataset, action: str, env: Env) -> Rule | None:
        try:
            _, row = self._enforcer.enforce_ex(subject, dataset, action, env)
        except Exception as exc:  # a matcher the officers wrote can fail at evaluation
            raise ConfigError(
                f"{self._where}: matcher failed: {type(exc).__name__}: {exc}"
            ) from None
        return self._rules[tuple(row)] if row else None


class RuleIndex:
    """The policy rows indexed by dataset and action; `match` finds the first deny and allow row.

    Each (dataset, action) has its own enforcers holding only the rows that can apply to it
    (rows for that dataset or `*`, naming that action), so a decision evaluates tens of rows
    however large the policy grows.
    """

    def __init__(
        self, model: ModelSpec, rows: list[PolicyRow], datasets: Iterable[Dataset]
    ) -> None:
        self._index: dict[tuple[str, str], tuple[_Rows | None, _Rows | None]] = {}
        # The catalog row is the catalog's rules, which decide.py applies itself.
        rows = [r for r in rows if r.sub != CATALOG_SUBJECT]
        for dataset in datasets:
            mine = [r for r in rows if r.dataset in ("*", dataset.id)]
            for action in ACTIONS:
                deny = [r for r in mine if r.eft == "deny" and action in r.actions]
                allow = [r for r in mine if r.eft == "allow" and action in r.actions]
                self._index[dataset.id, action] = (
                    _Rows(model, _FIRST_DENY, deny) if deny else None,
                    _Rows(model, _FIRST_ALLOW, allow) if allow else None,
                )
                # Evaluate every row once now, so a matcher that fails at evaluation is a
                # load error (file:line) rather than a failing request.
                self.match(Subject(frozenset(), 1), dataset, action, Env(None, 0, 0))

    def match(
        self, subject: Subject, dataset: Dataset, action: str, env: Env
    ) -> tuple[Rule | None, Rule | None]:
        deny, allow = self._index.get((dataset.id, action), (None, None))
        denied = deny.first(subject, dataset, action, env) if deny else None
        if denied is not None:
            return denied, None
        return None, allow.first(subject, dataset, action, env) if allow else None
