"""Audit log settings (gateway config key `audit`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from gateway.configtree import field
from gateway.errors import ConfigError


@dataclasses.dataclass(frozen=True, slots=True)
class AuditConfig:
    enabled: bool = True
    # The hash-chained log, one JSON object per line; appended to across restarts.
    path: Path = Path("var/audit/audit.jsonl")
    # Signed checkpoints (record count + head hash); keep a copy elsewhere to detect a
    # truncated tail. null: no checkpoints.
    checkpoints: Path | None = Path("var/audit/checkpoints.jsonl")
    # Ed25519 private key (PEM, PKCS#8) that signs checkpoints. If the file is missing and
    # `generate_key` is true, a key is generated there (mode 0600) and its public key is
    # written next to it as `<signing_key>.pub` for `datagate audit verify --public-key`.
    signing_key: Path | None = Path("var/audit/checkpoint-key.pem")
    generate_key: bool = True
    checkpoint_interval: float = field(60.0, min=1.0)
    flush_interval: float = field(0.2, min=0.01, max=60.0)
    # Records held in memory while the disk refuses writes; beyond this, append refuses.
    max_buffer: int = field(100_000, min=100)
    fsync: bool = True

    def validate(self, path: str) -> None:
        where = f"{path}." if path else ""
        if self.checkpoints is not None and self.signing_key is None:
            raise ConfigError(f"{where}signing_key: is required when checkpoints is set")
        if self.checkpoints is not None and self.checkpoints == self.path:
            raise ConfigError(f"{where}checkpoints: must be a different file from path")
