"""deploy/datagate.service: hardened below 3.0 by `systemd-analyze security`, and runs what
the package installs."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "deploy" / "datagate.service"
# systemd-analyze's exposure runs 0.0 (sealed) .. 10.0 (exposed); --threshold is in tenths.
MAX_EXPOSURE = 3.0


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed here (apt-get install systemd); README: Operators",
)
def test_the_unit_is_hardened() -> None:
    result = subprocess.run(
        [
            "systemd-analyze",
            "security",
            "--offline=yes",
            f"--threshold={int(MAX_EXPOSURE * 10) - 1}",
            str(UNIT),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = re.search(r"Overall exposure level for datagate\.service: (\d+\.\d)", result.stdout)
    assert found is not None, result.stdout + result.stderr
    assert float(found.group(1)) < MAX_EXPOSURE, result.stdout
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_unit_runs_the_installed_command() -> None:
    lines = dict(
        line.split("=", 1)
        for line in UNIT.read_text().splitlines()
        if "=" in line and line[0] != "#"
    )
    run = lines["ExecStart"].split()
    check = lines["ExecStartPre"].split()
    assert run[1:3] == ["run", "--config"] and check[1:4] == ["config", "check", "--config"]
    assert run[0] == check[0] and run[3] == check[4]
    # The state dir it may write is the data_dir of deploy/datagate.yaml.
    assert lines["ReadWritePaths"] == "/var/lib/datagate"
    assert "data_dir: /var/lib/datagate" in (REPO / "deploy" / "datagate.yaml").read_text()
