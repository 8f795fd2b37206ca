"""`policy check`: problems in a parsed bundle that parsing alone does not catch."""

from __future__ import annotations

from gateway.policy.bundle import PolicyBundle
from gateway.policy.rules import CATALOG_ROW, CATALOG_SUBJECT, SHARING_CALL
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


def casbin_parity(bundle: PolicyBundle) -> list[str]:
    """What keeps plain Casbin (with gateway.policy.casbin_functions) from deciding as the
    gateway does: short rows, a model without sharing_match, no `catalog` row."""
    out: list[str] = []
    width = len(bundle.model.columns)
    for row in bundle.rows:
        if row.written < width:
            out.append(
                f"{row.rule.where}: {row.written} of {width} fields: standard Casbin tools refuse "
                "rows shorter than the model (invalid policy size); write '*' for the rest"
            )
    if not bundle.model.sharing:
        out.append(
            f"{bundle.model.file}:{bundle.model.matcher_line}: the matcher does not end with "
            f"'&& {SHARING_CALL}': standard Casbin tools will not apply the catalog's rules"
        )
    if bundle.rows and not any(r.sub == CATALOG_SUBJECT for r in bundle.rows):
        policy = bundle.rows[0].rule.file
        out.append(
            f"{policy}: no '{', '.join(('p', *CATALOG_ROW))}, *, *, *, *' row: standard Casbin "
            "tools will refuse what the catalog (owners, unconditional datasets) and grants allow"
        )
    return out
