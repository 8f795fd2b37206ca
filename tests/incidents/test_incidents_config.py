"""The `incidents` config section: every bad value names its key."""

from __future__ import annotations

import pytest

from gateway.configtree import build
from gateway.errors import ConfigError
from gateway.incidents.config import IncidentsConfig


def test_defaults_write_to_a_file_only() -> None:
    cfg = build(IncidentsConfig, {}, "incidents")
    assert cfg.file is not None and cfg.stream is None and cfg.webhook is None
    assert cfg.sla_seconds == 7200


def test_all_sinks_at_once() -> None:
    cfg = build(
        IncidentsConfig,
        {
            "file": {"path": "x.jsonl", "keep": 5},
            "stream": {"stream": "soc", "maxlen": 1000},
            "webhook": {"url": "https://soar.example/hook", "token": "s3cret"},
        },
        "incidents",
    )
    assert cfg.webhook is not None and cfg.webhook.token is not None
    assert "s3cret" not in repr(cfg)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"webhook": {"url": "ftp://x"}}, "incidents.webhook.url: must be an http"),
        ({"webhook": {}}, "incidents.webhook.url: is required"),
        (
            {"webhook": {"url": "http://x", "backoff_base": 5, "backoff_cap": 1}},
            "incidents.webhook.backoff_cap: must be >= backoff_base",
        ),
        ({"file": {"max_bytes": 10}}, "incidents.file.max_bytes: must be >= 1024"),
        ({"stream": {"stream": ""}}, "incidents.stream.stream: must not be empty"),
        ({"sla_seconds": 1}, "incidents.sla_seconds: must be >= 60"),
        ({"dedup": 5}, "incidents.dedup: unknown key"),
    ],
)
def test_config_errors_name_the_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build(IncidentsConfig, data, "incidents")
