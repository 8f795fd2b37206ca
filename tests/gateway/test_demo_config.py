"""`datagate demo --print-config` prints the whole effective config; `demo --config` runs it as
written, the sample data API included."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import yaml

from gateway.cli.serve import sample_api_address
from gateway.config import Config, parse_config
from tests.gateway.conftest import identity_section

DATAGATE = str(Path(sys.executable).with_name("datagate"))
# Every section of the typed config tree, so a new section is printed too.
SECTIONS = {f.name for f in dataclasses.fields(Config)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def printed(tmp_path: Path, *args: str, **env: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DATAGATE_")}
    result = subprocess.run(
        [DATAGATE, "demo", "--print-config", "--data-dir", str(tmp_path / "data"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**environ, **env},
    )
    return yaml.safe_load(result.stdout)


def test_print_config_prints_every_section_with_overrides(tmp_path: Path) -> None:
    data = printed(tmp_path, DATAGATE_LIMITS__PER_PRINCIPAL__REQUESTS="7")
    assert set(data) == SECTIONS
    assert data["limits"]["per_principal"] == {"requests": 7, "window": 60.0}
    assert data["detection"]["working_hours"]["timezone"]
    assert data["breaker"]["trip_scope"] == "principal"
    # The demo's keys are public (the bundled file says so) and printed as they are, so the
    # printed config runs as it is.
    assert data["identity"]["signing_key"]["key"].endswith("--public--not-for-production")
    parse_config(data, base_dir=tmp_path, environ={})


def test_print_config_redacts_a_secret_set_from_the_environment(tmp_path: Path) -> None:
    data = printed(tmp_path, DATAGATE_MASKING__PSEUDONYM_SECRET="a-real-secret-" + "x" * 32)
    assert data["masking"]["pseudonym_secret"] == "<redacted>"


def test_the_sample_api_follows_the_upstream_url(tmp_path: Path) -> None:
    def config(url: str) -> object:
        data = {"upstreams": {"demo": {"url": url}}, "identity": identity_section()}
        return parse_config(data, base_dir=tmp_path, environ={})

    assert sample_api_address(config("http://127.0.0.1:8181")) == ("127.0.0.1", 8181)
    assert sample_api_address(config("http://localhost:8182/base")) == ("localhost", 8182)
    assert sample_api_address(config("http://10.1.2.3:8000")) is None
    assert sample_api_address(config("https://127.0.0.1:8443")) is None


def test_demo_config_serves_the_upstream_named_in_the_file(tmp_path: Path) -> None:
    port, admin, sample = free_port(), free_port(), free_port()
    data = printed(tmp_path, "--port", str(port), "--admin-port", str(admin))
    data["upstreams"]["demo"]["url"] = f"http://127.0.0.1:{sample}"
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(data))
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DATAGATE_")}
    proc = subprocess.Popen(
        [DATAGATE, "demo", "--config", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=environ,
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert banner.startswith("DataGate demo is running."), banner
        lines = [proc.stdout.readline() for _ in range(3)]
        assert f"sample upstream (direct, for comparison): http://127.0.0.1:{sample}" in lines[2]
        mint = ["token", "--config", str(path), "--sub", "alice", "--dept", "d", "--clearance", "1"]
        token = subprocess.run(
            [DATAGATE, *mint],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/enterprise/companies/1",
            headers={"Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            through = resp.read()
            assert resp.status == 200 and b'"id"' in through
        # The record came from the sample API on the port the file names.
        direct = f"http://127.0.0.1:{sample}/api/enterprise/companies/1"
        with urllib.request.urlopen(direct, timeout=10) as resp:
            assert resp.status == 200 and b'"id"' in resp.read()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
