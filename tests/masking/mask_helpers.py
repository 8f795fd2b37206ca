"""Helpers for the masking tests: a classified dataset, a config, and a body runner."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.configtree import build
from gateway.masking.codecs import MaskReport, open_transform
from gateway.masking.config import MaskingConfig
from gateway.masking.plan import MaskPlan
from gateway.policy.catalog import Dataset

FIELDS: list[dict[str, Any]] = [
    {"name": "name", "level": 3, "strategy": "name"},
    {"name": "id_card", "level": 3, "strategy": "resident_id"},
    {"name": "mobile", "level": 3, "strategy": "mobile"},
    {"name": "email", "level": 2, "strategy": "email"},
    {"name": "income", "level": 3, "strategy": "bucket", "params": {"size": 5000}},
    {"name": "diagnosis", "level": 4, "strategy": "redact"},
    {"name": "member_id", "level": 3, "strategy": "pseudonym"},
    {"name": "guardian_id", "level": 3, "strategy": "resident_id", "paths": ["family[*].id"]},
]


def make_dataset(**overrides: Any) -> Dataset:
    data: dict[str, Any] = {
        "id": "citizens",
        "route": "/api/citizens/",
        "upstream": "http://upstream",
        "owner": "population",
        "level": 3,
        "fields": FIELDS,
        "records_key": "items",
        "query_aliases": {"idno": "id_card"},
    }
    data.update(overrides)
    return build(Dataset, data)


def make_config(**overrides: Any) -> MaskingConfig:
    return build(MaskingConfig, {"pseudonym_secret": "test-secret", **overrides})


Runner = Callable[..., tuple[bytes, MaskReport]]


def run_body(
    plan: MaskPlan,
    config: MaskingConfig,
    body: bytes,
    content_type: str = "application/json",
    *,
    encoding: str | None = None,
    length: int | None = None,
    chunk: int = 7,
    key: bytes = b"consumer-key",
) -> tuple[bytes, MaskReport]:
    """Feed `body` in `chunk`-byte pieces; return the output and the report."""
    transform = open_transform(
        plan,
        config,
        content_type=content_type,
        content_encoding=encoding,
        content_length=length,
        key=key,
    )
    out = [transform.feed(body[i : i + chunk]) for i in range(0, len(body), chunk)]
    out.append(transform.finish())
    return b"".join(out), transform.report
