"""The audit writer and `datagate audit verify` on real files."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path

import orjson
import pytest

from gateway.audit.config import AuditConfig
from gateway.audit.keys import public_path
from gateway.audit.writer import AuditUnavailable, AuditWriter
from gateway.cli import main
from gateway.configtree import build
from gateway.errors import ConfigError


def make_config(tmp_path: Path, **changes: object) -> AuditConfig:
    cfg = AuditConfig(
        path=tmp_path / "audit.jsonl",
        checkpoints=tmp_path / "checkpoints.jsonl",
        signing_key=tmp_path / "key.pem",
        checkpoint_interval=1.0,
        flush_interval=0.01,
        fsync=False,
    )
    return dataclasses.replace(cfg, **changes)


def verify_cli(tmp_path: Path, *extra: str) -> int:
    return main(["audit", "verify", str(tmp_path / "audit.jsonl"), *extra])


async def test_append_numbers_flushes_and_checkpoints(tmp_path: Path) -> None:
    writer = AuditWriter(make_config(tmp_path))
    await writer.start()
    seqs = [writer.append({"request_id": f"r{i}", "authorization": "Bearer x"}) for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    await writer.close()
    lines = (tmp_path / "audit.jsonl").read_bytes().splitlines()
    assert [orjson.loads(x)["seq"] for x in lines] == seqs
    assert b"Bearer" not in b"".join(lines)
    [cp] = (tmp_path / "checkpoints.jsonl").read_bytes().splitlines()
    assert orjson.loads(cp)["count"] == 5
    assert public_path(tmp_path / "key.pem").exists()
    assert (tmp_path / "key.pem").stat().st_mode & 0o777 == 0o600


async def test_writes_happen_off_the_request_path(tmp_path: Path) -> None:
    writer = AuditWriter(make_config(tmp_path))
    await writer.start()
    writer.append({"request_id": "r1"})
    assert (tmp_path / "audit.jsonl").read_bytes() == b""  # nothing written by append
    async with asyncio.timeout(2):
        while writer.written < 1:
            await asyncio.sleep(0.01)
    assert (tmp_path / "audit.jsonl").read_bytes().count(b"\n") == 1
    await writer.close()


async def test_a_restart_continues_the_chain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for run in range(2):
        writer = AuditWriter(make_config(tmp_path))
        await writer.start()
        assert writer.append({"run": run}) == run * 3 + 1
        writer.append({"run": run})
        writer.append({"run": run})
        await writer.close()
    pub = str(public_path(tmp_path / "key.pem"))
    cps = str(tmp_path / "checkpoints.jsonl")
    assert verify_cli(tmp_path, "--checkpoints", cps, "--public-key", pub) == 0
    assert "ok, 6 records" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda ls: ls.__setitem__(1, ls[1].replace(b'"n":1', b'"n":7')), "line 2: its hash"),
        (lambda ls: ls.__delitem__(2), "line 3: seq 4 where 3"),
        (lambda ls: ls.insert(1, ls[3]), "line 2: seq 4 where 2"),
        (lambda ls: ls.__setitem__(slice(0, 2), [ls[1], ls[0]]), "line 1: seq 2 where 1"),
        (lambda ls: ls.__delitem__(slice(3, None)), "line 4: log ends after record 3"),
    ],
    ids=["edit", "delete", "insert", "reorder", "truncate"],
)
async def test_verify_names_the_first_bad_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tamper: object, message: str
) -> None:
    writer = AuditWriter(make_config(tmp_path))
    await writer.start()
    for n in range(6):
        writer.append({"n": n})
    await writer.close()
    log = tmp_path / "audit.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    tamper(lines)  # type: ignore[operator]
    log.write_bytes(b"".join(lines))
    pub = str(public_path(tmp_path / "key.pem"))
    cps = str(tmp_path / "checkpoints.jsonl")
    assert verify_cli(tmp_path, "--checkpoints", cps, "--public-key", pub) == 1
    assert f"audit.jsonl: {message}" in capsys.readouterr().err


async def test_verify_rejects_a_forged_checkpoint_and_bad_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    writer = AuditWriter(make_config(tmp_path))
    await writer.start()
    writer.append({"n": 1})
    await writer.close()
    cps = tmp_path / "checkpoints.jsonl"
    cps.write_bytes(cps.read_bytes().replace(b'"count":1', b'"count":0'))
    pub = str(public_path(tmp_path / "key.pem"))
    assert verify_cli(tmp_path, "--checkpoints", str(cps), "--public-key", pub) == 1
    assert "checkpoints line 1: bad signature" in capsys.readouterr().err
    assert verify_cli(tmp_path, "--public-key", pub) == 2
    assert "--public-key needs --checkpoints FILE" in capsys.readouterr().err
    assert verify_cli(tmp_path, "--checkpoints", str(cps), "--public-key", str(cps)) == 2
    assert "is not a PEM Ed25519 key" in capsys.readouterr().err
    assert main(["audit", "verify", str(tmp_path / "missing.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err


async def test_disk_failure_marks_unhealthy_then_recovers_without_loss(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    os.symlink("/dev/full", log)  # every write fails with ENOSPC
    alarms: list[str] = []
    writer = AuditWriter(make_config(tmp_path, max_buffer=100), on_failure=alarms.append)
    await writer.start()
    writer.append({"n": 1})
    async with asyncio.timeout(2):
        while writer.healthy:
            await asyncio.sleep(0.01)
    assert "No space left" in (writer.error or "")
    writer.append({"n": 2})
    assert writer.backlog == 2
    await writer.flush()  # fails again: the alarm is raised once per outage
    assert alarms == [f"{log}: No space left on device"]
    log.unlink()
    log.touch()  # the disk is back
    async with asyncio.timeout(2):
        while not writer.healthy or writer.written < 2:
            await asyncio.sleep(0.01)
    assert writer.backlog == 0
    await writer.close()
    assert [orjson.loads(x)["n"] for x in log.read_bytes().splitlines()] == [1, 2]


async def test_checkpoints_keep_their_interval_when_the_clock_is_set_back(
    tmp_path: Path,
) -> None:
    now = [1_700_000_000.0]
    writer = AuditWriter(make_config(tmp_path), clock=lambda: now[0])
    await writer.start()
    now[0] -= 86400  # the wall clock goes back a day
    writer.append({"n": 1})
    marks = tmp_path / "checkpoints.jsonl"
    async with asyncio.timeout(5):  # checkpoint_interval is 1 s (of the monotonic clock)
        while not marks.exists():
            await asyncio.sleep(0.05)
    await writer.close()
    assert orjson.loads(marks.read_bytes().splitlines()[0])["count"] == 1


async def test_append_refuses_when_the_backlog_is_full(tmp_path: Path) -> None:
    writer = AuditWriter(make_config(tmp_path, max_buffer=100))
    for n in range(100):  # not started: nothing drains the queue
        writer.append({"n": n})
    with pytest.raises(AuditUnavailable, match="backlog full"):
        writer.append({"n": 100})


async def test_a_partial_last_line_refuses_to_start(tmp_path: Path) -> None:
    (tmp_path / "audit.jsonl").write_bytes(b'{"seq":1,"prev"')
    with pytest.raises(ConfigError, match="ends with a partial line"):
        await AuditWriter(make_config(tmp_path)).start()
    (tmp_path / "audit.jsonl").write_bytes(b"hello\n")
    with pytest.raises(ConfigError, match="is not an audit record"):
        await AuditWriter(make_config(tmp_path)).start()


async def test_a_missing_key_is_an_error_when_generation_is_off(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"audit\.signing_key: .* does not exist"):
        await AuditWriter(make_config(tmp_path, generate_key=False)).start()
    (tmp_path / "key.pem").write_text("not a key")
    with pytest.raises(ConfigError, match=r"audit\.signing_key: cannot load"):
        await AuditWriter(make_config(tmp_path)).start()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"signing_key": None}, "audit.signing_key: is required when checkpoints is set"),
        ({"checkpoints": "a.jsonl", "path": "a.jsonl"}, "audit.checkpoints: must be a different"),
        ({"flush_interval": 0}, "audit.flush_interval: must be >= 0.01"),
        ({"path": ""}, "audit.path: expected a path"),
    ],
)
def test_config_errors_name_the_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build(AuditConfig, data, "audit")


async def test_two_writers_on_one_file_are_refused_and_workers_get_their_own(
    tmp_path: Path,
) -> None:
    first = AuditWriter(make_config(tmp_path))
    await first.start()
    with pytest.raises(ConfigError, match="is being written by another process"):
        await AuditWriter(make_config(tmp_path)).start()
    worker = AuditWriter(make_config(tmp_path), worker=2)
    await worker.start()
    assert worker.append({"n": 1}) == 1
    await worker.close()
    await first.close()
    assert (tmp_path / "audit.w2.jsonl").read_bytes().count(b"\n") == 1
    assert (tmp_path / "checkpoints.w2.jsonl").exists()
