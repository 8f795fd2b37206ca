"""`datagate run --workers 2`: two processes answer on one port, and SIGTERM stops them all
cleanly, each with a complete, verifiable audit log of its own."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections import Counter
from pathlib import Path

import aiohttp
import psutil
import yaml

from gateway.config import load_config
from gateway.identity.mint import mint_token
from tests.cluster.conftest import (
    DATAGATE,
    base_config,
    listening_workers,
    process_env,
    start_process,
    stop_process,
    wait_for_workers,
)

WORKERS = 2
REQUESTS = 50


async def keep_requesting(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], statuses: list[int]
) -> None:
    """Send requests one after another until cancelled; refused connections are expected."""
    while True:
        try:
            async with session.get(url, headers=headers) as resp:
                await resp.read()
                statuses.append(resp.status)
        except aiohttp.ClientError:
            await asyncio.sleep(0.01)


async def test_workers_share_one_port_and_stop_cleanly_on_sigterm(
    tmp_path: Path, upstream_url: str, redis_url: str, redis_prefix: str
) -> None:
    data_dir = tmp_path / "data"
    config = base_config(
        upstream_url=upstream_url,
        redis_url=redis_url,
        prefix=redis_prefix,
        policies=Path(__file__).resolve().parents[2] / "policies",
        data_dir=data_dir,
    )
    # The load is a script's, as fast as loopback allows: a rate rule would suspend it.
    config["detection"]["high_frequency"] = {"enabled": False}
    config_path = tmp_path / "gateway.yaml"
    config_path.write_text(yaml.safe_dump(config))
    port, admin_port = config["server"]["port"], config["admin"]["port"]
    log = tmp_path / "datagate.log"
    proc, log_file = start_process("workers", config_path, log, ("--workers", str(WORKERS)))
    workers: list[psutil.Process] = []
    started = time.monotonic()
    try:
        wait_for_workers(proc, (port, admin_port), log, WORKERS)
        ready_in = time.monotonic() - started
        workers = listening_workers(proc.pid, port)
        assert len(workers) == WORKERS  # the supervisor itself does not listen
        identity = load_config(config_path, environ={}).identity
        token = mint_token(identity, sub="alice", dept="market-regulation", clearance=1)
        headers = {"Authorization": f"Bearer {token}"}
        url = f"http://127.0.0.1:{port}/api/enterprise/companies?size=1"
        # A new connection per request, so the kernel spreads them over both workers.
        connector = aiohttp.TCPConnector(force_close=True)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            statuses = []
            for _ in range(REQUESTS):
                async with session.get(url, headers=headers) as resp:
                    statuses.append(resp.status)
            assert statuses == [200] * REQUESTS

            # SIGTERM while requests keep coming: what is answered is answered in full.
            during: list[int] = []
            load = asyncio.create_task(keep_requesting(session, url, headers, during))
            await asyncio.sleep(0.3)
            sigterm_at = time.monotonic()
            code = await asyncio.to_thread(stop_process, proc, log_file)
            stopped_in = time.monotonic() - sigterm_at
            load.cancel()
            await asyncio.gather(load, return_exceptions=True)
    finally:
        if proc.returncode is None:
            stop_process(proc, log_file)
    assert code == 0, log.read_text()[-4000:]
    assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)

    audit = load_config(config_path, environ={}).audit
    assert audit.checkpoints is not None and audit.signing_key is not None
    public_key = audit.signing_key.with_name(audit.signing_key.name + ".pub")
    answered = {}
    verifying = []
    for worker in range(WORKERS):
        path = audit.path.with_name(f"{audit.path.stem}.w{worker}{audit.path.suffix}")
        marks = audit.checkpoints.with_name(
            f"{audit.checkpoints.stem}.w{worker}{audit.checkpoints.suffix}"
        )
        data = path.read_bytes()
        assert data.endswith(b"\n"), f"{path.name}: last line is cut"
        answered[worker] = data.count(b'"request_id"')
        args = ["audit", "verify", str(path), "--checkpoints", str(marks)]
        verifying.append(
            subprocess.Popen(
                [str(DATAGATE), *args, "--public-key", str(public_key)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=process_env(),
            )
        )
    for verify in verifying:
        out, err = verify.communicate(timeout=60)
        assert verify.returncode == 0, err
        assert " ok, " in out, out
    print(
        f"\nworkers listening after {ready_in:.1f} s; access records per worker: {answered}; "
        f"stopped in {stopped_in:.2f} s; "
        f"answers during shutdown: {Counter(during)}"
    )
    assert set(during) <= {200}, "in-flight requests are finished, not failed"
    assert all(count > 0 for count in answered.values()), "both workers answered"
    assert sum(answered.values()) >= REQUESTS
