"""Fixtures for the fault-injection suite: real processes the tests start, break and stop.

The gateway runs as `datagate run --config FILE` (its own process, its own config), in front
of `tests/faults/upstream.py` (its own process), on its own `redis-server` where the test
kills Redis; the shared Redis on 6379 is never touched.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import redis
import yaml

from gateway.config import load_config
from gateway.identity.mint import mint_token
from tests.faults.upstream import SECRETS
from tests.gateway.conftest import identity_section
from tests.security.helpers import leaked_identifiers

REPO = Path(__file__).resolve().parents[2]
DATAGATE = Path(sys.executable).with_name("datagate")
REDIS_SERVER = shutil.which("redis-server")
SECRET = "fault-tests-signing-key-0123456789abcdef"
READY_TIMEOUT = 45.0  # a loaded 2-core machine imports slowly: a hang guard, not a timing
STOP_TIMEOUT = 15.0
PATIENCE = 15.0  # how long a test waits for an expected change before failing

CATALOG = """
datasets:
  - id: people
    route: /api/people/
    upstream: faulty
    owner: civil-affairs
    level: 3
    sharing: unconditional
    masked_from_clearance: 1
    records_key: items
    timeouts: {connect: 1, total: 1.0}
    fields:
      - {name: id_card, level: 3, strategy: resident_id}
      - {name: phone, level: 3, strategy: mobile}
      - {name: bank_card, level: 3, strategy: bank_card}
      - {name: name, level: 3, strategy: name}
  - {id: open, route: /api/open/, upstream: faulty, owner: ops, level: 1,
     sharing: unconditional, timeouts: {connect: 1, total: 1.0}}
  - {id: cases, route: /api/cases/, upstream: faulty, owner: civil-affairs, level: 2,
     sharing: conditional, records_key: items,
     fields: [{name: id_card, level: 3, strategy: resident_id}]}
"""
# A caller who may read `people` only masked and `open` in full.
CALLER = {"sub": "alice", "dept": "market-regulation", "clearance": 1}
SOC = {"sub": "soc1", "dept": "soc", "clearance": 4, "roles": ["soc"]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """A copy of `base` with `extra` merged in, nested mappings merged too."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def process_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without DATAGATE_* (the gateway reads those as config overrides)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAGATE_")}
    return {**env, "PYTHONUNBUFFERED": "1", **(extra or {})}


def no_leak(body: bytes) -> None:
    """No valid identifier and none of the upstream's planted values reached the client."""
    leaked = leaked_identifiers(body) + [s for s in SECRETS if s.encode() in body]
    assert not leaked, f"unmasked identifiers reached the client: {leaked}"


# --- processes ----------------------------------------------------------------------------


class RedisServer:
    """This test's own redis-server on a free port, persisted to an append-only file with
    fsync on every write, so a killed and restarted server still has what it had."""

    def __init__(self, directory: Path) -> None:
        if REDIS_SERVER is None:
            pytest.fail("redis-server is not installed; the fault suite needs it", pytrace=False)
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert REDIS_SERVER is not None
        self.proc = subprocess.Popen(
            [
                *(REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--dir", str(self.dir), "--save", ""),
                *("--appendonly", "yes", "--appendfsync", "always"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        deadline = time.monotonic() + PATIENCE
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.RedisError:
                    if time.monotonic() > deadline:
                        pytest.fail("own redis-server did not answer", pytrace=False)
                    time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=2)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.kill()


class UpstreamProcess:
    """`tests/faults/upstream.py` in its own process, on a fixed port so it can come back."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("upstream.py")), str(self.port)],
            stdout=subprocess.PIPE,
            env=process_env({"PYTHONPATH": str(REPO)}),
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            pytest.fail(f"fault upstream did not start: {line!r}", pytrace=False)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture(scope="module")
def upstream() -> Iterator[UpstreamProcess]:
    up = UpstreamProcess()
    up.start()
    yield up
    up.kill()


def policies_dir(directory: Path, catalog: str = CATALOG, rows: str = "") -> Path:
    """A policies folder of the suite's catalog, the shipped model and `rows`."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "catalog.yaml").write_text(catalog)
    shutil.copy(REPO / "policies" / "model.conf", directory / "model.conf")
    (directory / "policy.csv").write_text(rows)
    return directory


def base_config(tmp: Path, upstream_url: str, **sections: Any) -> dict[str, Any]:
    config = {
        "upstreams": {"faulty": {"url": upstream_url}},
        "server": {"host": "127.0.0.1", "port": free_port(), "access_log": False},
        "admin": {"host": "127.0.0.1", "port": free_port()},
        "identity": identity_section(SECRET),
        "policy": {"dir": str(policies_dir(tmp / "policies")), "watch": False},
        "masking": {"pseudonym_secret": "p" * 32},
        # The load in these tests is a script's: rules on its rate would only add noise.
        "detection": {
            "off_hours": {"enabled": False},
            "high_frequency": {"enabled": False},
            "above_baseline": {"enabled": False},
            "bulk_export": {"enabled": False},
        },
        "logging": {"level": "info"},
        "data_dir": str(tmp / "data"),
    }
    return merge(config, sections)


@dataclasses.dataclass
class GatewayProcess:
    """One `datagate run` process: its config, URLs and captured output (JSON log lines)."""

    config_path: Path
    config: dict[str, Any]
    log_path: Path
    env: dict[str, str]
    args: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None
    _log_file: Any = None
    _identity: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.config['server']['port']}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.config['admin']['port']}"

    @property
    def data_dir(self) -> Path:
        return Path(self.config["data_dir"])

    def start(self) -> None:
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115  closed by stop()
        self.proc = subprocess.Popen(
            [str(DATAGATE), "run", "--config", str(self.config_path), *self.args],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=self.config_path.parent,
            env=process_env(self.env),
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        assert self.proc is not None
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"datagate exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.admin_url + "/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"datagate not ready after {READY_TIMEOUT:.0f} s:\n{self.output()}")
            time.sleep(0.05)

    def stop(self) -> int:
        """SIGTERM, then wait; kill only if it does not stop in time. The exit code."""
        assert self.proc is not None
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT)
                return -9
        finally:
            self._log_file.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def log_events(self, event: str) -> list[dict[str, Any]]:
        """The JSON log lines of `event`, in order."""
        found = []
        for line in self.log_path.read_bytes().splitlines():
            try:
                data = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(data, dict) and data.get("event") == event:
                found.append(data)
        return found

    def token(self, **claims: Any) -> str:
        if self._identity is None:
            self._identity = load_config(self.config_path, environ={}).identity
        return mint_token(self._identity, **{**CALLER, **claims})

    def auth(self, **claims: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(**claims)}"}

    def soc(self) -> dict[str, str]:
        return self.auth(**SOC)

    def incidents(self) -> list[dict[str, Any]]:
        """Every line of the incidents file (each must be a whole JSON object)."""
        path = self.data_dir / "var" / "incidents" / "incidents.jsonl"
        if not path.exists():
            return []
        return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def write_gateway(
    tmp: Path, config: dict[str, Any], env: dict[str, str] | None = None, name: str = "gw"
) -> GatewayProcess:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return GatewayProcess(path, config, tmp / f"{name}.log", env or {})


async def get(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """Status and body of one GET (the session's timeout is the hang guard)."""
    async with session.get(url, headers=headers) as resp:
        return resp.status, await resp.read()


async def readyz(session: aiohttp.ClientSession, gw: GatewayProcess) -> tuple[int, Any]:
    async with session.get(gw.admin_url + "/readyz") as resp:
        return resp.status, orjson.loads(await resp.read())


async def until(check: Any, what: str, patience: float = PATIENCE) -> Any:
    """Poll the coroutine function `check` until it returns something truthy (bounded)."""
    deadline = time.monotonic() + patience
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not seen within {patience:.0f} s", pytrace=False)
        await asyncio.sleep(0.05)


def error_of(body: bytes) -> tuple[str, str | None]:
    data = orjson.loads(body)
    return data["error"], data.get("reason")
