"""How many examples each fuzz target runs: bounded for the normal suite, more on request.

`DATAGATE_FUZZ_EXAMPLES=N` gives every target N examples (the long run, see docs/security.md);
without it each target runs its own small budget so the suite stays fast.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

EXAMPLES_ENV = "DATAGATE_FUZZ_EXAMPLES"


def examples(normal: int) -> int:
    """`normal`, or the long run's count from DATAGATE_FUZZ_EXAMPLES."""
    raw = os.environ.get(EXAMPLES_ENV, "").strip()
    if not raw:
        return normal
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{EXAMPLES_ENV} must be a positive integer, got {raw!r}")
    return int(raw)


def fuzz(normal: int) -> settings:
    """Hypothesis settings for one fuzz target: its budget, no deadline (the machine is
    shared), and no complaints about fixtures reused across examples (they hold no state
    that one example could leave for the next)."""
    return settings(
        max_examples=examples(normal),
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
