"""Incident test helpers: a plain detection, a settable clock, a private Redis server."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest


@dataclasses.dataclass(frozen=True)
class Finding:
    """A detection as the detector hands it out (the attributes the incident builder reads)."""

    rule: str = "bulk_export"
    severity: int = 4
    principal: str | None = "alice"
    department: str | None = "tax"
    dataset: str | None = "citizens"
    title: str = "Bulk export far above baseline"
    score: float = 0.92
    evidence: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {
            "features": {"records_per_min": 5000.0},
            "baseline": {"records_per_min": 40.0},
            "observed": {"records_per_min": 5000.0},
            "sample_request_ids": ["r-1", "r-2"],
        }
    )


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A redis-server of this test's own, on a free loopback port, that the test can stop."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            stdout=asyncio.subprocess.DEVNULL,
        )
        async with asyncio.timeout(5):
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                    writer.close()
                    return
                except OSError:
                    await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()
        self.proc = None


@pytest.fixture
async def redis_server() -> AsyncIterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer()
    await server.start()
    yield server
    await server.stop()
