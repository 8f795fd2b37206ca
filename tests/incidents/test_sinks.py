"""Sinks under real outages: nothing lost, nothing split, delivered once they recover."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from gateway.configtree import build
from gateway.errors import ConfigError
from gateway.incidents.config import (
    FileSinkConfig,
    IncidentsConfig,
    StreamSinkConfig,
    WebhookSinkConfig,
)
from gateway.incidents.sinks import FileSink, StreamSink, WebhookSink, build_sinks, rotated_numbers
from gateway.state import RedisBackend
from tests.incidents.conftest import RedisServer, free_port


def line(n: int, pad: int = 0) -> bytes:
    return orjson.dumps({"n": n, "pad": "x" * pad}) + b"\n"


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.02)


def all_lines(path: Path) -> list[bytes]:
    files = [path.with_name(f"{path.name}.{n}") for n in rotated_numbers(path)] + [path]
    return [x for f in files if f.exists() for x in f.read_bytes().splitlines(keepends=True)]


async def test_file_rotation_never_drops_or_splits_a_line(tmp_path: Path) -> None:
    path = tmp_path / "incidents.jsonl"
    sink = FileSink(FileSinkConfig(path=path, max_bytes=1024))
    await sink.start()
    for n in range(300):
        sink.emit(line(n, pad=n % 50))
        if n % 37 == 0:
            await asyncio.sleep(0)
    await sink.close()
    lines = all_lines(path)
    assert [orjson.loads(x)["n"] for x in lines] == list(range(300))
    assert len(rotated_numbers(path)) > 5
    for f in [*path.parent.iterdir()]:
        data = f.read_bytes()
        assert data.endswith(b"\n") and len(data) <= 1024


async def test_file_rotation_keeps_the_newest_files(tmp_path: Path) -> None:
    path = tmp_path / "incidents.jsonl"
    sink = FileSink(FileSinkConfig(path=path, max_bytes=1024, keep=2))
    await sink.start()
    for n in range(200):
        sink.emit(line(n, pad=40))
    await sink.close()
    assert len(rotated_numbers(path)) == 2
    assert orjson.loads(all_lines(path)[-1])["n"] == 199


def _append_lines(path: str, writer: int, count: int, limit: int, start: Any) -> None:
    """One of several processes appending to one incident file, in batches of 1..7 lines."""
    sink = FileSink(FileSinkConfig(path=Path(path), max_bytes=limit))
    start.wait()  # all writers at once: an unlocked size check then overshoots max_bytes
    n = 0
    while n < count:
        size = 1 + n % 7
        batch = [
            orjson.dumps({"w": writer, "n": i, "pad": "x" * (i % 90)}) + b"\n"
            for i in range(n, min(n + size, count))
        ]
        written, error = sink._write(batch)
        assert error is None and written == len(batch)
        n += len(batch)


def test_processes_sharing_one_file_keep_every_line_whole_and_every_file_in_bounds(
    tmp_path: Path,
) -> None:
    path = tmp_path / "incidents.jsonl"
    limit, count = 2048, 600
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(2, timeout=60)
    procs = [
        ctx.Process(target=_append_lines, args=(str(path), w, count, limit, start))
        for w in range(2)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=60)
    assert [proc.exitcode for proc in procs] == [0, 0]
    for f in tmp_path.iterdir():
        data = f.read_bytes()
        assert data.endswith(b"\n") and len(data) <= limit, f"{f.name}: {len(data)} bytes"
    seen = [orjson.loads(x) for x in all_lines(path)]
    for writer in range(2):
        mine = [e["n"] for e in seen if e["w"] == writer]
        assert mine == list(range(count)), "each line once, in its writer's order"
    assert len(rotated_numbers(path)) > 20


def _write_past_a_file_size_limit(path: str) -> None:
    """In a child process: a write cut short by RLIMIT_FSIZE (as by a full disk), then the
    same batch again once the limit is lifted."""
    import errno
    import resource

    sink = FileSink(FileSinkConfig(path=Path(path)))
    batch = [line(n, pad=80) for n in range(20)]
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1000, hard))  # the write stops part-way
    written, error = sink._write(batch)
    assert written == 0 and error is not None and error.errno == errno.EFBIG
    assert Path(path).stat().st_size == 0, "the part-written batch was cut back"
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert sink._write(batch) == (20, None)


def test_a_write_that_fails_part_way_leaves_no_half_line(tmp_path: Path) -> None:
    path = tmp_path / "incidents.jsonl"
    proc = multiprocessing.get_context("spawn").Process(
        target=_write_past_a_file_size_limit, args=(str(path),)
    )
    proc.start()
    proc.join(timeout=60)
    assert proc.exitcode == 0
    assert [orjson.loads(x)["n"] for x in path.read_bytes().splitlines()] == list(range(20))


async def test_file_outage_keeps_incidents_until_the_disk_is_back(tmp_path: Path) -> None:
    path = tmp_path / "incidents.jsonl"
    os.symlink("/dev/full", path)  # writes fail with ENOSPC
    sink = FileSink(FileSinkConfig(path=path))
    await sink.start()
    for n in range(50):
        sink.emit(line(n))
    await until(lambda: sink.failures >= 2)
    path.unlink()
    await until(lambda: sink.backlog == 0)
    await sink.close()
    assert [orjson.loads(x)["n"] for x in path.read_bytes().splitlines()] == list(range(50))


async def test_stream_outage_keeps_incidents_until_redis_is_back(
    redis_server: RedisServer,
) -> None:
    backend = RedisBackend(redis_server.url, "sinktest:", timeout=0.2)
    sink = StreamSink(StreamSinkConfig(maxlen=1000), backend)
    await sink.start()
    sink.emit(line(0))
    await until(lambda: sink.backlog == 0)
    await redis_server.stop()
    for n in range(1, 40):
        sink.emit(line(n))
    await until(lambda: sink.failures >= 1)
    await redis_server.start()
    await until(lambda: sink.backlog == 0)
    await sink.close()
    # A fresh server lost entry 0 with its memory; everything sent after the outage is there.
    entries = await backend.xrange("incidents", count=1000)
    assert [orjson.loads(v)["n"] for _, v in entries] == list(range(1, 40))
    await backend.close()


class Receiver:
    """A real webhook receiver on a loopback port; it can be started late."""

    def __init__(self, status: int = 200) -> None:
        self.port = free_port()
        self.got: list[dict[str, object]] = []
        self.status = status
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.got.append(await request.json())
        return web.Response(status=self.status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def webhook_config(tmp_path: Path, port: int, **kw: object) -> WebhookSinkConfig:
    return WebhookSinkConfig(
        url=f"http://127.0.0.1:{port}/hook",
        spool=tmp_path / "spool",
        timeout=0.5,
        backoff_base=0.02,
        backoff_cap=0.2,
        **kw,  # type: ignore[arg-type]
    )


async def test_webhook_spools_while_down_and_delivers_in_order_when_up(tmp_path: Path) -> None:
    receiver = Receiver()
    sink = WebhookSink(webhook_config(tmp_path, receiver.port))
    await sink.start()
    for n in range(30):
        sink.emit(line(n))
    await until(lambda: sink.failures >= 3)  # the receiver is down: retried with backoff
    assert sink.pending_bytes() > 0
    await receiver.start()
    try:
        await until(lambda: len(receiver.got) == 30)
        sink.emit(line(30))
        await until(lambda: len(receiver.got) == 31)
        await until(lambda: sink.pending_bytes() == 0)
    finally:
        await sink.close()
        await receiver.stop()
    assert [g["n"] for g in receiver.got] == list(range(31))


async def test_webhook_spool_survives_a_gateway_restart(tmp_path: Path) -> None:
    receiver = Receiver()
    first = WebhookSink(webhook_config(tmp_path, receiver.port))
    await first.start()
    for n in range(5):
        first.emit(line(n))
    await until(lambda: first.pending_bytes() > 0 and first.backlog == 0)
    await first.close(grace=0.1)  # receiver still down: the spool keeps them
    await receiver.start()
    second = WebhookSink(webhook_config(tmp_path, receiver.port))
    await second.start()
    try:
        await until(lambda: len(receiver.got) == 5)
    finally:
        await second.close()
        await receiver.stop()
    assert [g["n"] for g in receiver.got] == list(range(5))


async def test_webhook_spool_is_bounded(tmp_path: Path) -> None:
    sink = WebhookSink(webhook_config(tmp_path, free_port(), spool_max_bytes=4096))
    await sink.start()
    for n in range(100):
        sink.emit(line(n, pad=100))
    await until(lambda: sink.backlog == 0)
    await sink.close(grace=0.1)
    assert sink.dropped > 0
    assert (tmp_path / "spool" / "pending.jsonl").stat().st_size <= 4096


async def test_webhook_permanent_refusal_is_not_retried_forever(tmp_path: Path) -> None:
    receiver = Receiver(status=400)
    await receiver.start()
    sink = WebhookSink(webhook_config(tmp_path, receiver.port))
    await sink.start()
    try:
        sink.emit(line(1))
        sink.emit(line(2))
        await until(lambda: len(receiver.got) == 2)
        await until(lambda: sink.pending_bytes() == 0)
    finally:
        await sink.close()
        await receiver.stop()


async def test_build_sinks_from_config(tmp_path: Path, redis_server: RedisServer) -> None:
    cfg = build(
        IncidentsConfig,
        {
            "file": {"path": str(tmp_path / "i.jsonl")},
            "stream": {"url": redis_server.url},
            "webhook": {"url": "http://127.0.0.1:9/hook", "spool": str(tmp_path / "spool")},
        },
        "incidents",
    )
    sinks = build_sinks(cfg, None)
    assert [s.name for s in sinks.sinks] == ["file", "stream", "webhook"]
    await sinks.start()
    sinks.emit({"n": 1})
    await until(lambda: sinks.sinks[1].backlog == 0)
    await sinks.close(grace=0.1)  # the webhook receiver is down: its spool keeps the line
    with pytest.raises(ConfigError, match=r"incidents\.stream: needs a url or a state backend"):
        build_sinks(build(IncidentsConfig, {"stream": {}}, "incidents"), None)
