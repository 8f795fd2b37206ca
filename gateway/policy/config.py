"""The `policy` section of the gateway config: where the policy lives and how it is enforced."""

from __future__ import annotations

import dataclasses
import zoneinfo
from pathlib import Path

from gateway.configtree import field
from gateway.errors import ConfigError

HOUR = 3600
DAY = 24 * HOUR


@dataclasses.dataclass(frozen=True, slots=True)
class GrantLifetimes:
    """Longest temporary grant, in seconds, per dataset level (named as in the catalog)."""

    public: int = field(30 * DAY, min=60)
    internal: int = field(7 * DAY, min=60)
    sensitive: int = field(72 * HOUR, min=60)
    core: int = field(24 * HOUR, min=60)

    def for_level(self, level: int) -> int:
        return (self.public, self.internal, self.sensitive, self.core)[level - 1]


@dataclasses.dataclass(frozen=True, slots=True)
class PolicyConfig:
    """`policy:` in the config file."""

    dir: Path = field(Path("policies"), doc="directory with catalog.yaml, model.conf, policy.csv")
    watch: bool = field(True, doc="reload when the files change")
    watch_interval: float = field(1.0, min=0.1, max=60.0, doc="seconds between file checks")
    monitor: bool = field(False, doc="log denials without enforcing them (all datasets)")
    timezone: str = field("UTC", nonempty=True, doc="time zone of policy time windows")
    grant_max_lifetime: GrantLifetimes = field(GrantLifetimes())
    cache_size: int = field(100_000, min=0, max=10_000_000, doc="cached decisions (0: none)")
    reload_channel: str = field("policy-reload", nonempty=True)
    source: str = field(
        "files",
        choices=("files", "store"),
        doc="files: policy.dir, watched; store: signed bundles pushed to the state backend",
    )
    signing_key: Path | None = field(
        None, doc="Ed25519 private key (PEM) that `datagate policy push` signs bundles with"
    )
    public_keys: tuple[Path, ...] = field(
        (), doc="Ed25519 public keys (PEM) a gateway accepts bundle signatures from"
    )
    store_interval: float = field(
        0.5, min=0.1, max=60.0, doc="seconds between checks of the store's active bundle"
    )

    def validate(self, path: str) -> None:
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            where = f"{path}.timezone" if path else "timezone"
            raise ConfigError(f"{where}: unknown time zone {self.timezone!r}") from None
        if self.source == "store" and not self.public_keys:
            where = f"{path}.public_keys" if path else "public_keys"
            raise ConfigError(f"{where}: is required when source is store")

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)
