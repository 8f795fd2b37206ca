"""Benchmark: a large CSV export streamed through DataGate's mask stage, with its peak memory.

An upstream in its own process streams a CSV export of the enterprise register (about 1 KB a
row, chunked, generated on the fly) at /api/enterprise/companies.csv; DataGate (`datagate run`
with the demo config, as in bench.py) masks its level-2 columns for a clearance-1 caller from
the statistics department, which the shipped policy allows to export. The client reads and
discards the body, checking that no contact phone survives unmasked. Prints MB/s through the
gateway and the gateway process's peak resident memory (VmHWM).

  .venv/bin/python -m loadtests.bench_stream --mb 1024
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import aiohttp
from aiohttp import web

from gateway.masking.identifiers import make_mobile, make_uscc
from loadtests.bench import HOST, datagate, free_port, serving

HEADER = "id,name,uscc,legal_representative,contact_phone,registered_capital,address,scope\n"
PHONE = re.compile(rb"(?<![0-9])1[3-9]\d{9}(?![0-9])")


def _rows(seed: int) -> bytes:
    rng = random.Random(seed)
    lines = []
    for i in range(64):
        lines.append(
            f'{i},"杭州恒通贸易有限公司{i}",{make_uscc(rng)},张三,{make_mobile(rng)},'
            f'{rng.randrange(10**6)},"浙江省杭州市西湖区学院路{i}号","{"日用百货销售；" * 40}"\n'
        )
    return "".join(lines).encode()


def _run_upstream(port: int, megabytes: int) -> None:
    block = _rows(7)

    async def export(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/csv; charset=utf-8"})
        await response.prepare(request)
        await response.write(HEADER.encode())
        sent, limit = 0, megabytes * 1024 * 1024
        while sent < limit:
            await response.write(block)
            sent += len(block)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/api/enterprise/companies.csv", export)
    web.run_app(app, host=HOST, port=port, print=None, access_log=None)


async def _pull(url: str, token: str) -> tuple[int, int, float]:
    start = time.perf_counter()
    total = leaked = 0
    timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(url, headers={"Authorization": f"Bearer {token}"}) as response,
    ):
        if response.status != 200:
            raise SystemExit(f"gateway answered {response.status}: {await response.text()}")
        tail = b""
        async for chunk in response.content.iter_chunked(1 << 20):
            total += len(chunk)
            leaked += len(PHONE.findall(tail + chunk))
            tail = chunk[-16:]
    return total, leaked, time.perf_counter() - start


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench_stream")
    parser.add_argument("--mb", type=int, default=256, help="megabytes to export (256)")
    parser.add_argument("--datagate", help="path of the datagate executable")
    args = parser.parse_args(argv)
    args.gateway_config = None
    args.token = None
    upstream_port = free_port()
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        stack.enter_context(serving(_run_upstream, upstream_port, args.mb))
        who = (
            "--sub",
            "stats-1",
            "--dept",
            "statistics",
            "--clearance",
            "1",
            "--purpose",
            "statistics",
        )
        port, token, pid = stack.enter_context(datagate(args, upstream_port, Path(tmp), *who))
        url = f"http://{HOST}:{port}/api/enterprise/companies.csv"
        total, leaked, seconds = asyncio.run(_pull(url, token))
        print(
            f"exported {total / 2**20:.0f} MB through DataGate in {seconds:.1f} s: "
            f"{total / 2**20 / seconds:.1f} MB/s; unmasked phones seen: {leaked}"
        )
        print(f"gateway peak RSS (VmHWM): {peak_rss_mb(pid):.0f} MB")
    return 0 if leaked == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
