"""`datagate run` as a process, for one process and for `--workers 2`: SIGTERM stops
accepting, lets in-flight requests finish within `server.shutdown_timeout` and flushes the
audit log and incidents; SIGHUP reloads the config file and the policy; workers append
whole lines to one incident file."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from aiohttp import web

from gateway.config import load_config
from gateway.identity.mint import mint_token
from gateway.incidents.sinks import rotated_numbers
from tests.cluster.conftest import (
    DATAGATE,
    READY_TIMEOUT,
    REPO,
    base_config,
    merge,
    process_env,
    start_process,
    stop_process,
    wait_for_workers,
)

BOUND = 20.0  # seconds: the bound of every wait below; nothing asserts how long one took
RECORD = {"id": "1", "name": "Acme", "legal_representative": "张三", "contact_phone": "13812345678"}


class HoldingUpstream:
    """An enterprise-register upstream on its own loop in a thread. `/hold` requests wait
    until `release()`; `/blob` answers bytes that cannot be masked; the rest, one record."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.released = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        app = web.Application()
        app.router.add_get("/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=30)
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    async def _start(self) -> None:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.endswith("/hold"):
            self.arrived.set()
            await asyncio.get_running_loop().run_in_executor(None, self.released.wait, BOUND)
        if request.path.endswith("/blob"):
            return web.Response(body=b"\x00\x01binary", content_type="application/octet-stream")
        return web.json_response(RECORD)

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.released.set()
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def holding() -> Iterator[HoldingUpstream]:
    upstream = HoldingUpstream()
    yield upstream
    upstream.close()


class Served:
    """One `datagate run` process (and its workers) with its config file and output."""

    def __init__(
        self,
        tmp: Path,
        upstream_url: str,
        redis_url: str,
        prefix: str,
        workers: int,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.tmp = tmp
        self.workers = workers
        self.policies = tmp / "policies"
        if not self.policies.exists():
            import shutil

            shutil.copytree(REPO / "policies", self.policies)
        self.data = merge(
            base_config(
                upstream_url=upstream_url,
                redis_url=redis_url,
                prefix=prefix,
                policies=self.policies,
                data_dir=tmp / "data",
            ),
            extra or {},
        )
        self.path = tmp / "datagate.yaml"
        self.write(self.data)
        self.port = self.data["server"]["port"]
        self.admin_port = self.data["admin"]["port"]
        self.log = tmp / "datagate.log"
        args = ("--workers", str(workers)) if workers > 1 else ()
        self.proc, self._log_file = start_process("datagate", self.path, self.log, args)
        self.identity = load_config(self.path, environ={}).identity
        self._wait_ready()

    def write(self, data: dict[str, Any]) -> None:
        self.path.write_text(yaml.safe_dump(data, allow_unicode=True))

    def _wait_ready(self) -> None:
        if self.workers > 1:
            wait_for_workers(self.proc, (self.port, self.admin_port), self.log, self.workers)
            return
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"datagate exited with {self.proc.returncode}:\n{self.output()}")
            with (
                contextlib.suppress(urllib.error.URLError, OSError),
                urllib.request.urlopen(self.admin("/readyz"), timeout=2) as resp,
            ):
                if resp.status == 200:
                    return
            if time.monotonic() > deadline:
                pytest.fail(f"not ready after {READY_TIMEOUT:.0f} s:\n{self.output()}")
            time.sleep(0.1)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def admin(self, path: str) -> str:
        return f"http://127.0.0.1:{self.admin_port}{path}"

    def auth(self, sub: str, **claims: Any) -> dict[str, str]:
        args: dict[str, Any] = {"dept": "market-regulation", "clearance": 1, **claims}
        return {"Authorization": f"Bearer {mint_token(self.identity, sub=sub, **args)}"}

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def log_events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in self.log.read_bytes().splitlines():
            if line.startswith(b"{"):
                event = orjson.loads(line)
                if event.get("event") == name:
                    found.append(event)
        return found

    def wait_log(self, name: str, count: int) -> list[dict[str, Any]]:
        """Until the process (every worker) has logged `name` `count` times."""
        deadline = time.monotonic() + BOUND
        while len(found := self.log_events(name)) < count:
            if time.monotonic() > deadline:
                pytest.fail(f"{name!r} logged {len(found)} of {count} times:\n{self.output()}")
            time.sleep(0.05)
        return found

    def stop(self) -> int:
        return stop_process(self.proc, self._log_file)

    def audit_files(self) -> list[Path]:
        audit = load_config(self.path, environ={}).audit
        if self.workers == 1:
            return [audit.path]
        return [
            audit.path.with_name(f"{audit.path.stem}.w{i}{audit.path.suffix}")
            for i in range(self.workers)
        ]

    def verify_audit(self) -> list[dict[str, Any]]:
        """`datagate audit verify` on every audit file; their records."""
        records = []
        for path in self.audit_files():
            if path.stat().st_size == 0:
                continue  # a worker that served nothing: verify says "empty" (exit 1), not ok
            result = subprocess.run(
                [str(DATAGATE), "audit", "verify", str(path)],
                capture_output=True,
                text=True,
                timeout=60,
                env=process_env(),
                check=False,
            )
            assert result.returncode == 0, result.stderr
            assert " ok, " in result.stdout, result.stdout
            records += [orjson.loads(line) for line in path.read_bytes().splitlines()]
        return records


@pytest.fixture
def serve(tmp_path: Path, redis_url: str, redis_prefix: str) -> Iterator[Any]:
    started: list[Served] = []

    def start(upstream_url: str, workers: int, extra: dict[str, Any] | None = None) -> Served:
        served = Served(tmp_path, upstream_url, redis_url, redis_prefix, workers, extra)
        started.append(served)
        return served

    yield start
    for served in started:
        if served.proc.poll() is None:
            served.stop()


def refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


async def wait_refused(*ports: int) -> None:
    deadline = time.monotonic() + BOUND
    while not all(refused(port) for port in ports):
        assert time.monotonic() < deadline, f"ports {ports} still accept connections"
        await asyncio.sleep(0.05)


async def get(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    # A new connection per request, so the kernel spreads them over the workers.
    connector = aiohttp.TCPConnector(force_close=True)
    timeout = aiohttp.ClientTimeout(total=BOUND * 2)
    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
        session.get(url, headers=headers) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.read()


def incident_lines(served: Served) -> list[dict[str, Any]]:
    path = load_config(served.path, environ={}).incidents.file
    assert path is not None
    files = [path.path.with_name(f"{path.path.name}.{n}") for n in rotated_numbers(path.path)]
    files.append(path.path)
    return [orjson.loads(line) for f in files if f.exists() for line in f.read_bytes().splitlines()]


@pytest.mark.parametrize("workers", [1, 2])
async def test_sigterm_lets_in_flight_requests_finish_then_flushes_and_exits_0(
    serve: Any, holding: HoldingUpstream, workers: int
) -> None:
    served: Served = serve(holding.url, workers, {"server": {"shutdown_timeout": BOUND}})
    # An incident raised just before the signal must reach the file.
    status, _, _ = await get(served.url("/api/enterprise/companies/blob"), served.auth("leaker"))
    assert status == 502
    held = asyncio.create_task(
        get(served.url("/api/enterprise/companies/hold"), served.auth("alice"))
    )
    assert await asyncio.to_thread(holding.arrived.wait, BOUND), "the request reached upstream"
    served.proc.send_signal(signal.SIGTERM)
    await wait_refused(served.port, served.admin_port)
    assert not held.done(), "the in-flight request is still waiting for its upstream"
    holding.release()
    status, headers, body = await held
    assert status == 200 and orjson.loads(body)["legal_representative"] == "张*"
    code = await asyncio.to_thread(served.proc.wait, BOUND)
    assert code == 0, served.output()
    served.stop()
    records = served.verify_audit()
    finished = [r for r in records if r.get("request_id") == headers["X-Request-ID"]]
    assert [r["status"] for r in finished] == [200]
    rules = [
        (i["finding_info"]["analytic"]["name"], i["unmapped"]["ecs"]["user"]["id"])
        for i in incident_lines(served)
    ]
    assert rules == [("unmaskable_response", "leaker")]
    assert served.log_events("incident_sink_closed_with_backlog") == []


async def test_sigterm_cuts_requests_still_running_after_shutdown_timeout(
    serve: Any, holding: HoldingUpstream
) -> None:
    served: Served = serve(holding.url, 1, {"server": {"shutdown_timeout": 0.5}})
    held = asyncio.create_task(
        get(served.url("/api/enterprise/companies/hold"), served.auth("alice"))
    )
    assert await asyncio.to_thread(holding.arrived.wait, BOUND)
    served.proc.send_signal(signal.SIGTERM)
    # The upstream never answers: the process must not wait for it.
    code = await asyncio.to_thread(served.proc.wait, BOUND)
    assert code == 0, served.output()
    assert not holding.released.is_set()
    with pytest.raises(aiohttp.ClientError):
        await held
    served.stop()
    records = served.verify_audit()
    cut = [r for r in records if r.get("path") == "/api/enterprise/companies/hold"]
    # Status 0: no response was sent; the record says why.
    assert [(r["status"], r["error"], r["reason"]) for r in cut] == [
        (0, "unavailable", "shutdown")
    ], "the cut request is recorded"


@pytest.mark.parametrize("workers", [1, 2])
async def test_sighup_reloads_the_config_and_the_policy(
    serve: Any, holding: HoldingUpstream, workers: int
) -> None:
    served: Served = serve(holding.url, workers, {"logging": {"level": "info"}})
    record = served.url("/api/enterprise/companies/1")
    assert (await get(record, served.auth("mallory")))[0] == 200
    changed = merge(
        served.data,
        {
            "limits": {"per_principal": {"requests": 2, "window": 60}},
            "server": {"port": served.port + 1 if served.port < 65535 else served.port - 1},
        },
    )
    served.write(changed)
    csv = served.policies / "policy.csv"
    csv.write_text(csv.read_text() + "p, user:mallory, *, *, deny\n")
    served.proc.send_signal(signal.SIGHUP)
    reloaded = served.wait_log("config_reloaded", workers)
    assert {e["worker"] for e in reloaded} == ({None} if workers == 1 else {0, 1})
    assert all(e["keys"] == ["limits.per_principal.requests"] for e in reloaded)
    restart = served.wait_log("config_restart_required", workers)
    assert all(e["keys"] == ["server.port"] for e in restart)
    served.wait_log("policy_loaded", 1)

    statuses = [(await get(record, served.auth("bob")))[0] for _ in range(3)]
    assert statuses == [200, 200, 429], "the new limit, shared through Redis"
    status, _, body = await get(record, served.auth("mallory"))
    assert (status, orjson.loads(body)["reason"]) == (403, "explicit_deny")

    served.write(merge(changed, {"limits": {"per_principal": {"requests": "many"}}}))
    served.proc.send_signal(signal.SIGHUP)
    rejected = served.wait_log("config_rejected", workers)
    assert {e["error"] for e in rejected} == {
        "limits.per_principal.requests: expected an integer, got 'many'"
    }
    statuses = [(await get(record, served.auth("carol")))[0] for _ in range(3)]
    assert statuses == [200, 200, 429], "the running config stays in force"
    soc = served.auth("soc1", dept="soc", clearance=4, roles=["soc"])
    status, _, body = await get(served.admin("/incidents"), soc)
    assert status == 200
    incidents = orjson.loads(body)["incidents"]
    assert [
        i["severity_id"]
        for i in incidents
        if i["finding_info"]["analytic"]["name"] == "config_rejected"
    ] == [2]
    assert served.stop() == 0, served.output()


async def test_two_workers_append_whole_lines_to_one_incident_file(
    serve: Any, holding: HoldingUpstream
) -> None:
    limit = 16 * 1024
    served: Served = serve(
        holding.url,
        2,
        {"incidents": {"file": {"path": "incidents/incidents.jsonl", "max_bytes": limit}}},
    )
    principals = [f"leaker-{n:03d}" for n in range(60)]
    blob = served.url("/api/enterprise/companies/blob")
    for start in range(0, len(principals), 10):
        batch = principals[start : start + 10]
        answers = await asyncio.gather(*(get(blob, served.auth(p)) for p in batch))
        assert {status for status, _, _ in answers} == {502}
    assert served.stop() == 0, served.output()
    path = load_config(served.path, environ={}).incidents.file
    assert path is not None
    files = [path.path.with_name(f"{path.path.name}.{n}") for n in rotated_numbers(path.path)]
    files.append(path.path)
    for file in files:
        data = file.read_bytes()
        assert data.endswith(b"\n") and len(data) <= limit, f"{file.name}: {len(data)} bytes"
    lines = incident_lines(served)  # every line parses as JSON
    assert sorted(i["unmapped"]["ecs"]["user"]["id"] for i in lines) == principals, (
        "each incident once, none lost"
    )
    assert len(files) > 2, "the test rotated the file several times"
    per_worker = [
        sum(1 for line in f.read_bytes().splitlines() if b'"status":502' in line)
        for f in served.audit_files()
    ]
    assert all(count > 0 for count in per_worker), f"both workers raised incidents: {per_worker}"
