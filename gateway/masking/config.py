"""The `masking` section of the gateway config: secrets, size limits and tokens."""

from __future__ import annotations

import dataclasses
from typing import Literal

from gateway.configtree import Secret, field

MIB = 1024 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class MaskingConfig:
    """How responses are desensitised.

    `pseudonym_secret` derives the per-consumer HMAC keys of the `pseudonym` strategy
    (required when a catalog field uses it). `max_json_document_bytes` bounds a JSON body
    that is not a record array (it is buffered whole); `max_decoded_bytes` and
    `max_inflate_ratio` stop compression bombs; bodies over a limit are refused with
    `oversize_status` (413 payload_too_large or 502 upstream_error), never passed unmasked.
    `scanner_level`: identifiers found by the scanner in unlabelled content count as this
    level, so callers whose clearance is >= it see them in clear (5: nobody).
    """

    pseudonym_secret: Secret | None = None
    max_json_document_bytes: int = field(8 * MIB, min=1024)
    max_record_bytes: int = field(8 * MIB, min=1024)
    max_decoded_bytes: int = field(1024 * MIB, min=1024)
    max_inflate_ratio: int = field(200, min=2)
    oversize_status: Literal[413, 502] = 413
    redact_token: str = field("***", nonempty=True)
    scanner_level: int = field(3, min=2, max=5)
    batch_bytes: int = field(64 * 1024, min=1024, max=16 * MIB)
