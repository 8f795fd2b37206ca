"""Decisions through a cache keyed by every attribute read, the policy and the grants version."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import tzinfo
from typing import Protocol

from gateway.identity.principal import Principal
from gateway.policy.bundle import PolicyBundle
from gateway.policy.catalog import Dataset
from gateway.policy.decide import Evaluation, evaluate
from gateway.policy.decision import Decision
from gateway.policy.grants import Grant

# subject, department, clearance, roles, client certificate subject, purpose, dataset, action,
# policy and grants versions
CacheKey = tuple[str, str, int, frozenset[str], str | None, str | None, str, str, str, int]


class GrantView(Protocol):
    version: int

    def for_dataset(self, dataset: str) -> Sequence[Grant]: ...


class NoGrants:
    """A grant view with no grants (policy tools run without a state backend)."""

    version = 0

    def for_dataset(self, dataset: str) -> Sequence[Grant]:
        return ()


class Decider:
    """Decides requests against the current bundle and grants, caching each decision.

    A cached decision is reused only for the same attributes, the same policy version and
    grants version, and a time inside the span it was computed for (the local hour, cut
    short by any grant starting or expiring), so no entry outlives a change.
    """

    def __init__(
        self,
        bundle: Callable[[], PolicyBundle],
        grants: GrantView,
        tz: tzinfo,
        *,
        monitor: bool = False,
        cache_size: int = 100_000,
    ) -> None:
        self._bundle = bundle
        self._grants = grants
        self._tz = tz
        self._monitor = monitor
        self._size = cache_size
        self._cache: OrderedDict[CacheKey, Evaluation] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        """Drop every cached decision (called on policy reload and grant changes)."""
        self._cache.clear()

    def decide(
        self, principal: Principal, purpose: str | None, dataset: Dataset, action: str, ts: float
    ) -> Decision:
        bundle = self._bundle()
        key: CacheKey = (
            principal.subject,
            principal.department,
            principal.clearance,
            principal.roles,
            principal.cert_subject,
            purpose,
            dataset.id,
            action,
            bundle.version,
            self._grants.version,
        )
        cache = self._cache
        hit = cache.get(key)
        if hit is not None and hit.valid_from <= ts < hit.valid_until:
            self.hits += 1
            cache.move_to_end(key)
            return hit.decision
        self.misses += 1
        current = bundle.catalog.datasets.get(dataset.id, dataset)
        found = evaluate(
            bundle,
            principal,
            purpose,
            current,
            action,
            ts,
            self._grants.for_dataset(dataset.id),
            self._tz,
            self._monitor,
        )
        if self._size:
            cache[key] = found
            if len(cache) > self._size:
                cache.popitem(last=False)
        return found.decision
