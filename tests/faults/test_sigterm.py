"""SIGTERM under load, one process and `--workers 2`: the process exits 0, every answer the
clients got has its audit record, no audit line is half-written and every audit file
verifies, and the incidents file holds only whole lines."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.cluster.test_workers import WORKERS, wait_for_workers
from tests.faults.conftest import (
    DATAGATE,
    UpstreamProcess,
    base_config,
    no_leak,
    process_env,
    write_gateway,
)

HANG_GUARD = aiohttp.ClientTimeout(total=10)
CLIENTS = 8
# A good small answer, a large streamed one, level-1 data, and an answer the gateway cannot
# mask (each raises an incident: a new principal each time, so a new incident each time).
CASES = ["people/ok", "people/big", "open/ok", "people/unmaskable"]


@pytest.mark.parametrize("workers", [1, WORKERS])
async def test_sigterm_under_load_loses_nothing(
    tmp_path: Path, upstream: UpstreamProcess, workers: int, redis_url: str, redis_prefix: str
) -> None:
    # Several workers share their state through Redis (this test's own prefix).
    state = {"url": redis_url, "prefix": redis_prefix} if workers > 1 else {"url": "memory"}
    gw = write_gateway(tmp_path, base_config(tmp_path, upstream.url, state=state))
    gw.args = ("--workers", str(workers))
    gw.start()
    answered: dict[str, int] = {}  # request id -> status, of every whole answer
    refused: list[str] = []  # requests refused at the door once shutdown began
    counter = itertools.count()
    stopping = asyncio.Event()
    try:
        await asyncio.to_thread(gw.wait_ready)
        if workers > 1:  # every worker serving, not only the one that answered /readyz
            assert gw.proc is not None
            ports = (gw.config["server"]["port"], gw.config["admin"]["port"])
            await asyncio.to_thread(wait_for_workers, gw.proc, ports, gw.log_path, workers)
        async with aiohttp.ClientSession(
            timeout=HANG_GUARD, connector=aiohttp.TCPConnector(force_close=True)
        ) as session:

            async def client() -> None:
                while True:
                    n = next(counter)
                    case = CASES[n % len(CASES)]
                    headers = gw.auth(sub=f"user-{n}")
                    try:
                        async with session.get(f"{gw.url}/api/{case}", headers=headers) as resp:
                            body = await resp.read()
                    except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError):
                        # Shutdown has begun: the listener is closed, or the connection was
                        # still in the kernel's queue when it closed (reset, never answered).
                        if stopping.is_set():
                            refused.append(case)
                            return
                        raise
                    if case.startswith("people"):
                        no_leak(body)
                    assert resp.status in (200, 502), (case, resp.status, body[:200])
                    answered[resp.headers["X-Request-ID"]] = resp.status

            clients = [asyncio.create_task(client()) for _ in range(CLIENTS)]
            await asyncio.sleep(0.5)
            stopping.set()
            code = await asyncio.to_thread(gw.stop)
            async with asyncio.timeout(3 * HANG_GUARD.total):  # type: ignore[operator]
                await asyncio.gather(*clients)
    finally:
        if gw.proc is not None and gw.proc.returncode is None:
            gw.stop()
    assert code == 0, gw.output()
    assert set(answered.values()) == {200, 502}
    recorded = _verified_audit(gw.data_dir, workers)
    missing = set(answered) - recorded
    assert not missing, f"{len(missing)} answers without an audit record"
    incidents = (gw.data_dir / "var" / "incidents" / "incidents.jsonl").read_bytes()
    assert incidents.endswith(b"\n")
    lines = [orjson.loads(line) for line in incidents.splitlines()]  # each one whole
    assert {i["finding_info"]["analytic"]["name"] for i in lines} == {"unmaskable_response"}
    print(
        f"\nSIGTERM with {workers} worker(s): {len(answered)} answers, all audited "
        f"({len(refused)} refused at the door during shutdown); "
        f"{len(lines)} incident lines, all whole; exit 0"
    )


def _verified_audit(data_dir: Path, workers: int) -> set[str]:
    """The request ids recorded in the audit file(s), after `datagate audit verify` passed
    on each with its signed checkpoints."""
    audit = data_dir / "var" / "audit"
    names = ["audit"] if workers == 1 else [f"audit.w{i}" for i in range(workers)]
    recorded: set[str] = set()
    for name in names:
        log = audit / f"{name}.jsonl"
        marks = audit / name.replace("audit", "checkpoints", 1)
        data = log.read_bytes()
        assert data.endswith(b"\n"), f"{log.name}: the last line is cut"
        done = subprocess.run(
            [
                *(str(DATAGATE), "audit", "verify", str(log)),
                *("--checkpoints", f"{marks}.jsonl"),
                *("--public-key", str(audit / "checkpoint-key.pem.pub")),
            ],
            capture_output=True,
            text=True,
            env=process_env(),
        )
        assert done.returncode == 0, done.stderr
        assert " ok, " in done.stdout, done.stdout
        for line in data.splitlines():
            record = orjson.loads(line)
            if record.get("type") == "access":
                recorded.add(record["request_id"])
    return recorded
