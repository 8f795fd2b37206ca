"""Incident settings (gateway config key `incidents`): dedup, deadline, and the sinks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from gateway.configtree import Secret, field
from gateway.errors import ConfigError


@dataclasses.dataclass(frozen=True, slots=True)
class FileSinkConfig:
    """JSON lines; rotated to `<path>.<n>` before a line would pass `max_bytes`."""

    path: Path = Path("var/incidents/incidents.jsonl")
    max_bytes: int = field(64 * 1024 * 1024, min=1024)
    keep: int = field(0, min=0, doc="rotated files kept (0: all)")


@dataclasses.dataclass(frozen=True, slots=True)
class StreamSinkConfig:
    """A Redis stream; `url` null means the gateway's state backend."""

    stream: str = field("incidents", nonempty=True)
    maxlen: int = field(100_000, min=100)
    url: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class WebhookSinkConfig:
    """POST each incident as JSON; spooled on disk while the receiver is down."""

    url: str = field(nonempty=True)
    spool: Path = Path("var/incidents/webhook-spool")
    spool_max_bytes: int = field(256 * 1024 * 1024, min=4096)
    timeout: float = field(5.0, min=0.1)
    backoff_base: float = field(0.5, min=0.01)
    backoff_cap: float = field(60.0, min=0.1)
    # Sent as `Authorization: Bearer ...` when set.
    token: Secret | None = None

    def validate(self, path: str) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"{path}.url: must be an http:// or https:// URL, got {self.url!r}")
        if self.backoff_cap < self.backoff_base:
            raise ConfigError(f"{path}.backoff_cap: must be >= backoff_base")


@dataclasses.dataclass(frozen=True, slots=True)
class IncidentsConfig:
    # Repeats with the same dedup_key (rule, principal, dataset) within this long of the
    # last one update that incident instead of raising a new one.
    dedup_window: float = field(3600.0, min=1.0)
    # The handling deadline: sla.due_at = created + this.
    sla_seconds: float = field(7200.0, min=60.0)
    escalation_interval: float = field(30.0, min=0.05)
    # Sample request ids kept per incident.
    max_samples: int = field(20, min=1, max=1000)
    file: FileSinkConfig | None = field(FileSinkConfig())
    stream: StreamSinkConfig | None = None
    webhook: WebhookSinkConfig | None = None
