"""A few seconds of the Locust load test against a real `datagate demo`: the checks of
loadtests/locustfile.py hold and nothing fails unexpectedly."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
READY_TIMEOUT = 12.0
LOCUST_TIMEOUT = 25.0
SUMMARY = re.compile(r"datagate-locust: analysts_refused=(\d+) scrapers_stopped=(\d+)/(\d+) (.*)")


def free_ports(n: int) -> list[int]:
    """`n` distinct free ports (all held open at once while choosing)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without DATAGATE_* variables (they override config keys), plus
    `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAGATE_")}
    env.update(extra)
    return env


def wait_ready(url: str, demo: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if demo.poll() is not None:
            raise AssertionError(f"datagate demo exited with {demo.returncode}: {log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not ready within {READY_TIMEOUT} s")


def start_demo(
    port: int, admin: int, upstream: int, data_dir: Path, stderr: IO[bytes]
) -> subprocess.Popen[bytes]:
    command = [str(BIN / "datagate"), "demo", "--port", str(port), "--admin-port", str(admin)]
    command += ["--upstream-port", str(upstream), "--data-dir", str(data_dir)]
    # Locust's users each send their own X-Forwarded-For: without trusting it they would all
    # be one client IP, and the IP-wide frequency rule could suspend an analyst.
    env = clean_env(DATAGATE_SERVER__TRUSTED_PROXIES="[127.0.0.1]")
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)


def run_locust(port: int, admin: int) -> subprocess.CompletedProcess[str]:
    command = [str(BIN / "locust"), "-f", "loadtests/locustfile.py", "--headless"]
    command += ["-u", "12", "-r", "12", "-t", "8s", "--only-summary"]
    command += ["--host", f"http://127.0.0.1:{port}"]
    return subprocess.run(
        command,
        cwd=REPO,
        env=clean_env(DATAGATE_LOCUST_ADMIN=f"http://127.0.0.1:{admin}"),
        capture_output=True,
        text=True,
        timeout=LOCUST_TIMEOUT,
    )


def test_locust_smoke_run_against_the_demo(tmp_path: Path) -> None:
    port, admin, upstream = free_ports(3)
    log = tmp_path / "demo.log"
    with log.open("wb") as stderr:
        demo = start_demo(port, admin, upstream, tmp_path / "data", stderr)
    try:
        wait_ready(f"http://127.0.0.1:{admin}/readyz", demo, log)
        run = run_locust(port, admin)
    finally:
        demo.terminate()
        try:
            demo.wait(timeout=5)
        except subprocess.TimeoutExpired:
            demo.kill()
            demo.wait()
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    found = SUMMARY.search(output)
    assert found is not None, output
    refused, stopped, scrapers = (int(found.group(i)) for i in (1, 2, 3))
    assert (refused, found.group(4)) == (0, "ok"), output
    assert scrapers >= 1 and stopped == scrapers, output
    # Analysts and exporters (under their grants) got answers at any hour; what pullers get
    # depends on the clock (200 in office hours, else 403 or 423), but they ran.
    for kind in ("analyst", "exporter"):
        assert re.search(rf"datagate-locust: {kind} statuses .*200:\d+", output), output
    assert "datagate-locust: puller statuses " in output, output
    assert "Traceback" not in output, output
