"""`policy check`: problems in a parsed bundle that parsing alone does not catch."""

from __future__ import annotations

from gateway.policy.bundle import PolicyBundle
from gateway.policy.sharing import IMPLICIT_ACTIONS


def problems(bundle: PolicyBundle) -> list[str]:
    """One line per problem, each naming its file and line (or dataset)."""
    catalog = bundle.catalog
    out: list[str] = []
    departments = catalog.departments
    if departments:
        for d in catalog.datasets.values():
            if d.owner not in departments:
                out.append(
                    f"{catalog.source}: dataset {d.id!r}: owner {d.owner!r} is missing from "
                    "the catalog's departments"
                )
    seen: dict[tuple[str, ...], int] = {}
    for row in bundle.rows:
        where = row.rule.where
        first = seen.setdefault(row.values, row.rule.line)
        if first != row.rule.line:
            out.append(f"{where}: duplicates line {first}: this row never matters")
            continue
        kind, _, name = row.sub.partition(":")
        if departments and kind == "dept" and name not in departments:
            out.append(f"{where}: unknown department {name!r}: this row can never match")
        if row.dataset == "*":
            continue
        dataset = catalog.datasets.get(row.dataset)
        if dataset is None:
            out.append(f"{where}: unknown dataset {row.dataset!r}: this row can never match")
            continue
        if row.eft != "allow":
            continue
        if dataset.sharing == "none" and kind == "dept" and name != dataset.owner:
            out.append(
                f"{where}: dataset {dataset.id!r} is shared with its owner {dataset.owner!r} "
                "only: this row can never match"
            )
        elif dataset.sharing == "none" and row.actions <= IMPLICIT_ACTIONS:
            out.append(
                f"{where}: the owner of {dataset.id!r} may already read and list it: "
                "this row never matters"
            )
        elif dataset.sharing == "unconditional" and row.actions <= IMPLICIT_ACTIONS:
            out.append(
                f"{where}: anyone may read and list unconditional dataset {dataset.id!r}: "
                "this row never matters"
            )
    return out
