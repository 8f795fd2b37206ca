"""The catalog's sharing rules as predicates, shared by the gateway's decision and plain Casbin."""

from __future__ import annotations

from gateway.policy.catalog import Dataset

# Without a policy row or grant, owners may read and list their own datasets and anyone
# may read and list an unconditional one; export and write always need their own row/grant.
IMPLICIT_ACTIONS = frozenset({"read", "list"})


def shared_with(department: str, dataset: Dataset) -> bool:
    """Sharing `none` admits the owner department only; every other type admits anyone."""
    return dataset.sharing != "none" or department == dataset.owner


def implicit_basis(department: str, dataset: Dataset, action: str) -> str | None:
    """`owner` or `unconditional` when the catalog alone allows `action`, else None."""
    if action not in IMPLICIT_ACTIONS:
        return None
    if department == dataset.owner:
        return "owner"
    if dataset.sharing == "unconditional":
        return "unconditional"
    return None


def purpose_ok(dataset: Dataset, purpose: str | None) -> bool:
    """A conditional dataset needs a declared purpose before a row or grant can allow it."""
    return dataset.sharing != "conditional" or bool(purpose)


def clearance_ok(clearance: int, dataset: Dataset, action: str) -> bool:
    """Clearance >= level, or down to `masked_from_clearance` for reads (masked sharing)."""
    if clearance >= dataset.level:
        return True
    floor = dataset.masked_from_clearance
    return action != "write" and floor is not None and clearance >= floor


def raised_clearance(clearance: int, grant_clearance: int | None) -> int:
    """The clearance a request has under a grant that may carry one for its purpose."""
    return clearance if grant_clearance is None else max(clearance, grant_clearance)
