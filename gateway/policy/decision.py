"""The decision: one object that feeds the 403 response, the access event and `explain`."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

Effect = Literal["allow", "deny"]


@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    """A policy row as written by the security officers, with where it was written."""

    file: str
    line: int
    text: str

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of authorising one request.

    `allowed` is what is enforced; `effect` is what the policy said. They differ only in
    monitor mode, where a deny is logged (`monitor` True) but the request goes through.
    `mask_clearance` is the clearance the mask stage uses: the principal's, or the one a
    grant raised it to for its purpose.
    """

    allowed: bool
    effect: Effect
    reason: str
    dataset: str
    action: str
    policy_version: str
    mask_clearance: int
    rule: Rule | None = None
    grant_id: str | None = None
    monitor: bool = False

    def message(self) -> str:
        """A one-line explanation for the consumer's 403 body."""
        text = _MESSAGES.get(self.reason, self.reason)
        return f"{self.action} on dataset {self.dataset!r} refused: {text}"

    def as_dict(self) -> dict[str, Any]:
        """The decision as access events and the admin API show it."""
        return {
            "allowed": self.allowed,
            "effect": self.effect,
            "reason": self.reason,
            "dataset": self.dataset,
            "action": self.action,
            "policy_version": self.policy_version,
            "mask_clearance": self.mask_clearance,
            "rule": self.rule.where if self.rule else None,
            "grant_id": self.grant_id,
            "monitor": self.monitor,
        }


_MESSAGES = {
    "default_deny": "no policy row or grant allows it",
    "explicit_deny": "a policy row denies it",
    "clearance_below_level": "your clearance is below the dataset's level",
    "no_purpose": "conditional sharing needs a declared purpose",
    "sharing_none": "this dataset is shared with its owner department only",
}
