"""The audit log's disk fills (a real, small tmpfs of the test's own): classified routes refuse
with 503 `audit_unavailable` and the alarm is raised (error log line, /readyz, metric,
incident); when space returns the gateway recovers and no audit record is lost."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.faults.conftest import (
    DATAGATE,
    UpstreamProcess,
    base_config,
    error_of,
    no_leak,
    process_env,
    readyz,
    until,
    write_gateway,
)

DISK = "1m"  # the audit filesystem: room for a few hundred records once the filler is gone
HANG_GUARD = aiohttp.ClientTimeout(total=10)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of `DISK` mounted on a folder of this test (root only; unmounted after)."""
    mount = tmp_path / "audit-disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK},mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        reason = f"cannot mount a small tmpfs here: {done.stderr.strip() or done.returncode}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run as root", pytrace=False)
        pytest.skip(reason)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Write a filler file until the filesystem refuses with ENOSPC; returns the filler."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as fh:
        for size in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    fh.write(b"\0" * size)
    with pytest.raises(OSError) as full:
        (disk / "probe").write_bytes(b"x" * 4096)
    assert full.value.errno == errno.ENOSPC
    (disk / "probe").unlink(missing_ok=True)
    return filler


async def test_audit_disk_fills_under_load_then_space_returns(
    tmp_path: Path, upstream: UpstreamProcess, small_disk: Path
) -> None:
    config = base_config(
        tmp_path,
        upstream.url,
        audit={
            "path": str(small_disk / "audit.jsonl"),
            "checkpoints": str(small_disk / "checkpoints.jsonl"),
            "signing_key": str(tmp_path / "keys" / "checkpoint-key.pem"),
            "flush_interval": 0.05,
            "checkpoint_interval": 1.0,
        },
    )
    gw = write_gateway(tmp_path, config)
    gw.start()
    seen: dict[str, int] = {}  # request id -> status, of every answer the client got
    try:
        gw.wait_ready()
        async with aiohttp.ClientSession(timeout=HANG_GUARD) as session:
            headers = gw.auth()

            async def call(route: str) -> tuple[int, bytes]:
                async with session.get(f"{gw.url}/api/{route}/ok", headers=headers) as resp:
                    body = await resp.read()
                    seen[resp.headers["X-Request-ID"]] = resp.status
                    return resp.status, body

            for _ in range(10):
                assert (await call("people"))[0] == 200
            filler = fill(small_disk)

            async def refused() -> bool:
                status, body = await call("people")
                if status == 200:
                    no_leak(body)
                    return False
                assert (status, error_of(body)) == (503, ("unavailable", "audit_unavailable"))
                return True

            await until(refused, "classified routes refused once the audit disk is full")
            # While it is full: under load, classified data is refused every time, level-1
            # data is served (its records wait in memory), and the alarm is up everywhere.
            results = await asyncio.gather(
                *(call(route) for _ in range(20) for route in ("people", "open"))
            )
            people, open_ = results[0::2], results[1::2]
            assert {(s, error_of(b)) for s, b in people} == {
                (503, ("unavailable", "audit_unavailable"))
            }
            assert {s for s, _ in open_} == {200}
            status, ready = await readyz(session, gw)
            assert (status, ready["ready"], ready["checks"]["audit"]) == (503, False, False)
            metrics = await (await session.get(gw.admin_url + "/metrics")).text()
            assert "datagate_audit_healthy 0.0" in metrics
            backlog = _metric(metrics, "datagate_audit_backlog_records")
            assert backlog >= 20  # at least the level-1 answers above
            [failed] = gw.log_events("audit_write_failed")
            assert failed["level"] == "error" and "No space left" in failed["error"]
            alarms = await until(
                lambda: _audit_incidents(gw), "an audit_unavailable incident for the SOC"
            )
            assert alarms[0]["severity_id"] == 4

            filler.unlink()  # space returns

            async def served() -> bool:
                status, body = await call("people")
                no_leak(body)
                return status == 200

            await until(served, "classified routes served again once space returned")
            status, ready = await readyz(session, gw)
            assert (status, ready["checks"]["audit"]) == (200, True)
            metrics = await (await session.get(gw.admin_url + "/metrics")).text()
            assert "datagate_audit_healthy 1.0" in metrics

            async def recovery_logged() -> bool:  # info lines are flushed every 200 ms
                return gw.log_events("audit_write_recovered") != []

            await until(recovery_logged, "the recovery logged")
            for _ in range(10):
                assert (await call("people"))[0] == 200
    finally:
        code = gw.stop()
    assert code == 0, gw.output()
    _verify(small_disk, tmp_path / "keys" / "checkpoint-key.pem.pub", seen)
    print(
        f"\naudit disk full: {len(seen)} answers, {backlog:.0f} records waiting in memory "
        f"meanwhile, all on disk and verified afterwards, lost: 0"
    )


def _metric(text: str, name: str) -> float:
    [line] = [x for x in text.splitlines() if x.startswith(name + " ")]
    return float(line.split()[1])


async def _audit_incidents(gw: object) -> list[dict[str, object]]:
    incidents = gw.incidents()  # type: ignore[attr-defined]
    return [i for i in incidents if i["finding_info"]["analytic"]["name"] == "audit_unavailable"]


def _verify(disk: Path, public_key: Path, seen: dict[str, int]) -> None:
    """`datagate audit verify` passes, and every answer the client got has its record."""
    log = disk / "audit.jsonl"
    done = subprocess.run(
        [
            *(str(DATAGATE), "audit", "verify", str(log)),
            *("--checkpoints", str(disk / "checkpoints.jsonl"), "--public-key", str(public_key)),
        ],
        capture_output=True,
        text=True,
        env=process_env(),
    )
    assert done.returncode == 0, done.stderr
    assert " ok, " in done.stdout, done.stdout
    recorded = {}
    for line in log.read_bytes().splitlines():
        record = orjson.loads(line)
        if record.get("type") == "access":
            recorded[record["request_id"]] = record["status"]
    assert recorded == seen, "every answer, served or refused, has its audit record"
