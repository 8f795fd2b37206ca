"""The `datagate` command: user mistakes are one line on stderr and a non-zero exit."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.gateway.conftest import REPO, SECRET

DATAGATE = str(Path(sys.executable).with_name("datagate"))


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DATAGATE, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def write_config(tmp_path: Path, **overrides: object) -> Path:
    data = {
        "upstreams": {"demo": {"url": "http://127.0.0.1:9"}},
        "server": {"host": "127.0.0.1", "port": 0},
        "admin": {"host": "127.0.0.1", "port": 0},
        "identity": {
            "issuers": [
                {"issuer": "t", "audience": "datagate", "algorithms": ["HS256"], "secret": SECRET}
            ]
        },
        "policy": {"dir": str(REPO / "policies"), "watch": False},
        "data_dir": str(tmp_path / "data"),
        **overrides,
    }
    path = tmp_path / "datagate.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def one_line_error(result: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert result.returncode == code, result.stderr
    # Log lines are JSON objects; the error is the one line that is not.
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("{")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("datagate") and text in lines[0], lines[0]
    assert "Traceback" not in result.stderr


def test_a_missing_config_file(tmp_path: Path) -> None:
    one_line_error(run("run", "--config", str(tmp_path / "nope.yaml")), 2, "cannot read config")


def test_a_malformed_config_names_the_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, server={"port": "eighty"})
    one_line_error(run("run", "--config", str(path)), 2, "server.port: expected an integer")
    path = write_config(tmp_path, sever={})
    one_line_error(run("run", "--config", str(path)), 2, "sever: unknown key")


def test_a_catalog_naming_an_unknown_upstream(tmp_path: Path) -> None:
    path = write_config(tmp_path, upstreams={"other": {"url": "http://127.0.0.1:9"}})
    one_line_error(run("run", "--config", str(path)), 2, "names upstream 'demo'")


def test_a_port_already_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = write_config(tmp_path, server={"host": "127.0.0.1", "port": port})
        one_line_error(run("run", "--config", str(path)), 2, f"cannot listen on 127.0.0.1:{port}")


def test_token_refuses_a_config_without_a_signing_key(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    result = run("token", "--sub", "a", "--dept", "d", "--clearance", "1", "--config", str(path))
    one_line_error(result, 2, "signing key")


def test_token_for_the_demo_verifies() -> None:
    result = run("token", "--sub", "alice", "--dept", "market-regulation", "--clearance", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(".") == 2


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["run"],
        ["demo"],
        ["token"],
        ["policy"],
        ["grants"],
        ["incidents"],
        ["breakers"],
        ["audit"],
        ["detect"],
    ],
)
def test_every_command_has_help(command: list[str]) -> None:
    result = run(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: datagate" in result.stdout


def test_workers_must_be_positive(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    one_line_error(run("run", "--config", str(path), "--workers", "0"), 2, "--workers")
