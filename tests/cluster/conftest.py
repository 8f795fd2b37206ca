"""Fixtures for the cluster tests: real `datagate run` processes sharing one Redis prefix, in
front of the demo data API served from a thread of the test process."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from gateway.config import load_config
from gateway.demo.upstream import start_upstream
from gateway.identity.mint import mint_token
from tests.gateway.conftest import identity_section
from tests.support import delete_prefix

REPO = Path(__file__).resolve().parents[2]
DATAGATE = Path(sys.executable).with_name("datagate")
SECRET = "cluster-tests-signing-key-0123456789abcdef"
READY_TIMEOUT = 45.0  # a loaded 2-core machine imports slowly
STOP_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`base` with `extra` merged in, section by section (nested mappings merged too)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


class ThreadedUpstream:
    """The demo data API on its own event loop in a thread, so it answers the gateways
    whatever the test's own loop is doing."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runner = asyncio.run_coroutine_threadsafe(
            start_upstream("127.0.0.1", 0, seed=7, size=50), self.loop
        ).result(timeout=30)
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="session")
def upstream_url() -> Iterator[str]:
    upstream = ThreadedUpstream()
    yield upstream.url
    upstream.close()


@dataclasses.dataclass
class GatewayProcess:
    """One `datagate run` process: its config, URLs, data_dir and captured output."""

    name: str
    config_path: Path
    data_dir: Path
    data_url: str
    admin_url: str
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    log_file: Any = None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def process_env() -> dict[str, str]:
    """This environment without DATAGATE_* variables: the gateway reads those as config
    overrides, and the test suite's own (DATAGATE_REQUIRE_REDIS...) are not config keys."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAGATE_")}
    return {**env, "PYTHONUNBUFFERED": "1"}


def start_process(
    name: str, config_path: Path, log_path: Path, args: tuple[str, ...] = ()
) -> tuple[subprocess.Popen[bytes], Any]:
    log_file = open(log_path, "wb")  # noqa: SIM115  closed by stop_process
    proc = subprocess.Popen(
        [str(DATAGATE), "run", "--config", str(config_path), *args],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        cwd=config_path.parent,
        env=process_env(),
    )
    return proc, log_file


def wait_ready(gateways: list[GatewayProcess], timeout: float = READY_TIMEOUT) -> None:
    """Poll each gateway's /readyz until it answers 200; fail with its output otherwise."""
    deadline = time.monotonic() + timeout
    pending = list(gateways)
    while pending:
        gw = pending[0]
        assert gw.proc is not None
        if gw.proc.poll() is not None:
            pytest.fail(f"{gw.name} exited with {gw.proc.returncode}:\n{gw.output()}")
        try:
            with urllib.request.urlopen(gw.admin_url + "/readyz", timeout=2) as resp:
                if resp.status == 200:
                    pending.pop(0)
                    continue
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{gw.name} not ready after {timeout:.0f} s:\n{gw.output()}")
        time.sleep(0.1)


def listening_workers(pid: int, port: int) -> list[psutil.Process]:
    """The children of `pid` that listen on `port`."""
    found = []
    for child in psutil.Process(pid).children():
        try:
            conns = child.net_connections(kind="tcp")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in conns):
            found.append(child)
    return found


def wait_for_workers(
    proc: subprocess.Popen[bytes], ports: tuple[int, ...], log: Path, workers: int
) -> None:
    """Until `workers` children listen on every one of `ports` (each opens data, then admin)."""
    deadline = time.monotonic() + READY_TIMEOUT
    while any(len(listening_workers(proc.pid, port)) < workers for port in ports):
        if proc.poll() is not None:
            pytest.fail(f"datagate exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"{workers} workers not listening after {READY_TIMEOUT:.0f} s")
        time.sleep(0.1)


def stop_process(proc: subprocess.Popen[bytes], log_file: Any) -> int:
    """SIGTERM, then wait; kill only if it does not stop in time. Returns the exit code."""
    try:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)
            return -9
    finally:
        log_file.close()


def base_config(
    *, upstream_url: str, redis_url: str, prefix: str, policies: Path, data_dir: Path
) -> dict[str, Any]:
    return {
        "upstreams": {"demo": {"url": upstream_url}},
        "server": {"host": "127.0.0.1", "port": free_port(), "access_log": False},
        "admin": {"host": "127.0.0.1", "port": free_port()},
        "state": {"url": redis_url, "prefix": prefix},
        "identity": identity_section(SECRET),
        "policy": {"dir": str(policies), "watch": False},
        "masking": {"pseudonym_secret": "p" * 32},
        # The tests run at any hour: time-of-day rules would only add noise.
        "detection": {"off_hours": {"enabled": False}},
        "logging": {"level": "warning"},
        "data_dir": str(data_dir),
    }


@dataclasses.dataclass
class Cluster:
    """Gateway processes sharing one Redis prefix and one policies folder."""

    gateways: list[GatewayProcess]
    policies: Path
    identity: Any

    def token(self, sub: str, **claims: Any) -> str:
        args: dict[str, Any] = {"dept": "market-regulation", "clearance": 1, **claims}
        return mint_token(self.identity, sub=sub, **args)

    def auth(self, sub: str, **claims: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(sub, **claims)}"}

    def soc(self) -> dict[str, str]:
        return self.auth("soc1", dept="soc", clearance=4, roles=["security-officer"])


@contextlib.contextmanager
def run_cluster(
    tmp: Path,
    *,
    upstream_url: str,
    redis_url: str,
    prefix: str,
    overrides: list[dict[str, Any]],
) -> Iterator[Cluster]:
    """One gateway process per entry of `overrides` (merged into the base config), each with
    its own ports and data_dir, all on `prefix` and one copy of the shipped policies."""
    policies = tmp / "policies"
    shutil.copytree(REPO / "policies", policies)
    gateways = []
    for i, extra in enumerate(overrides):
        name = f"gw{i}"
        data_dir = tmp / name
        data_dir.mkdir()
        config = merge(
            base_config(
                upstream_url=upstream_url,
                redis_url=redis_url,
                prefix=prefix,
                policies=policies,
                data_dir=data_dir,
            ),
            extra,
        )
        config_path = tmp / f"{name}.yaml"
        config_path.write_text(yaml.safe_dump(config))
        gateways.append(
            GatewayProcess(
                name,
                config_path,
                data_dir,
                f"http://127.0.0.1:{config['server']['port']}",
                f"http://127.0.0.1:{config['admin']['port']}",
                tmp / f"{name}.log",
            )
        )
    try:
        for gw in gateways:
            gw.proc, gw.log_file = start_process(gw.name, gw.config_path, gw.log_path)
        wait_ready(gateways)
        identity = load_config(gateways[0].config_path, environ={}).identity
        yield Cluster(gateways, policies, identity)
    finally:
        for gw in gateways:
            if gw.proc is not None:
                stop_process(gw.proc, gw.log_file)


@pytest.fixture(scope="module")
def cluster_prefix(redis_url: str) -> Iterator[str]:
    """A Redis key prefix for this module's processes; its keys are deleted afterwards."""
    prefix = f"datagate-test:cluster:{uuid.uuid4().hex}:"
    yield prefix
    delete_prefix(redis_url, prefix)
