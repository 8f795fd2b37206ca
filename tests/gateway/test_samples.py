"""The shipped configs are valid: `datagate demo --print-config` and deploy/datagate.yaml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from gateway.config import Config, parse_config
from gateway.configtree import build
from tests.gateway.conftest import REPO

DATAGATE = str(Path(sys.executable).with_name("datagate"))


def test_the_demo_prints_a_complete_config_that_loads(tmp_path: Path) -> None:
    printed = subprocess.run(
        [DATAGATE, "demo", "--print-config", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    data = yaml.safe_load(printed)
    config = parse_config(data, base_dir=tmp_path, environ={})
    assert config.server.port == 8080 and config.server.shutdown_timeout == 10
    assert config.server.tls is None and config.admin.tls is None


def _without_file_secrets(node: Any) -> Any:
    """The sample with `{file: ...}` secrets (on the production host only) made literals."""
    if isinstance(node, dict):
        if set(node) == {"file"}:
            return "a-secret-that-only-the-production-host-has-0123456789"
        return {k: _without_file_secrets(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_without_file_secrets(v) for v in node]
    return node


def test_the_production_sample_uses_only_known_keys_and_valid_values() -> None:
    # Its certificate and key files are on the production host: the keys and values are
    # checked here, the files by the gateway when it starts there.
    data = _without_file_secrets(yaml.safe_load((REPO / "deploy/datagate.yaml").read_text()))
    config = build(Config, data)
    assert config.server.tls is not None and config.server.tls.client_auth == "optional"
    assert config.admin.tls is not None and config.admin.tls.client_auth == "required"
    assert all(u.tls is not None for u in config.upstreams.values())
