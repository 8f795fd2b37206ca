"""The demo's config: the bundled YAML with the ports, data folder and state filled in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

# The packaged copy of the repository's policies/ (tests/policy keeps the two identical), so
# an installed wheel runs the demo too.
POLICIES_DIR = Path(__file__).resolve().parent / "policies"


def demo_config_path() -> Path:
    return Path(__file__).with_name("config.yaml")


def demo_config_data(
    *, port: int, admin_port: int, upstream_port: int, data_dir: Path, state: str
) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(demo_config_path().read_text(encoding="utf-8"))
    data["upstreams"]["demo"]["url"] = f"http://127.0.0.1:{upstream_port}"
    data["server"]["port"] = port
    data["admin"]["port"] = admin_port
    data["state"]["url"] = state
    data["data_dir"] = str(data_dir)
    data.setdefault("policy", {})["dir"] = str(POLICIES_DIR)
    return data
