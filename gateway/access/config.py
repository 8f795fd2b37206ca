"""Access-request settings (gateway config key `access`)."""

from __future__ import annotations

import dataclasses

from gateway.configtree import field

DAY = 86400


@dataclasses.dataclass(frozen=True, slots=True)
class AccessConfig:
    # The token role a data officer holds; with it, an officer approves or rejects requests
    # on the datasets its own department owns (and no others).
    officer_role: str = field("data-officer", nonempty=True)
    # A pending request not decided within this long lapses (seconds).
    decision_deadline: float = field(3 * DAY, min=60.0)
    # Pending requests one requester may have at a time (a flood cannot fill the state store).
    max_pending: int = field(20, min=1, max=10_000)
    # How often lapsed requests and expired grants are swept (seconds).
    sweep_interval: float = field(30.0, min=0.05)
    # The stream of the incident sinks' backend that access-request events go to.
    stream: str = field("access-requests", nonempty=True)
