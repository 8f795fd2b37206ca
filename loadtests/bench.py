"""Benchmark: requests/s and p50/p99 latency of the upstream, a bare proxy and DataGate.

Measures in one run, each target in its own process; the targets are started side by side
(an idle one costs nothing), then each is checked with one request, warmed up and measured:

  upstream   the demo upstream (gateway.demo.upstream) directly;
  baseline   a bare aiohttp pass-through proxy written here: a pooled ClientSession that
             reads the upstream body and returns it with the upstream status and headers
             minus hop-by-hop ones;
  memory     `datagate run --config FILE` in front of the same upstream, state in memory;
  redis      the same on the Redis backend (`--redis-url`, a key prefix of its own, deleted
             afterwards);
  2 workers  `datagate run --workers 2` on Redis: two processes on one port.

For each it prints req/s, p50 and p99 at saturation, the ratio to the bare proxy (the
issue's targets: memory >= 0.75, redis >= 0.6) and the CPU the target's processes spent per
request (from /proc; less noisy than req/s on a shared machine). Then, for the upstream,
the bare proxy and the single-process DataGate rows, it offers a fixed rate of half of each
DataGate row's saturation throughput (wrk with a per-connection delay) and prints the p99
that DataGate adds over the bare proxy and over the upstream at that rate (target: <= 2 ms).
`--chart FILE` writes both as a PNG (matplotlib). `--rounds N` measures the targets N times
in turn and reports each target's median run, which steadies the ratios on a busy machine.

The load generator is `wrk` when it is on PATH (apt-get install wrk), otherwise a Python
generator (aiohttp, fixed concurrency, fixed duration) in its own process; the Python one
saturates sooner, so it reports lower ceilings, and the half-load step needs wrk. Every
target is asked for the same path.

DataGate: with `--gateway-config FILE` that config is used; otherwise the bench writes the
output of `datagate demo --print-config` to a temporary file. Its listeners, its `demo`
upstream, its state and its data directory are pointed at free ports, Redis and a temporary
directory through the environment overrides (DATAGATE_SERVER__PORT, DATAGATE_STATE__URL, ...);
since one principal drives all the load, it also lifts the hard rate limits and the
detectors' frequency and volume thresholds (every check still runs) and puts the breaker in
monitor mode, so it measures the cost of normal traffic. The bearer token is `--token`, or one
minted with `datagate token --sub bench --dept market-regulation --clearance 1 --config FILE`.
A DataGate row that cannot start (no `datagate`, no Redis) is skipped with the reason.

Usage (from the repository root; the default run takes about two minutes):

  .venv/bin/python -m loadtests.bench
  .venv/bin/python -m loadtests.bench --rounds 3 --duration 8 --chart docs/bench.png
  .venv/bin/python -m loadtests.bench --targets upstream,baseline,memory --json-out b.json
  .venv/bin/python -m loadtests.bench --gateway-config my.yaml --token "$TOKEN"
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import multiprocessing
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from gateway.demo.upstream import start_upstream

HOST = "127.0.0.1"
SPAWN = multiprocessing.get_context("spawn")
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        # Recomputed by aiohttp for the body it sends.
        "content-length",
    }
)


class BenchError(Exception):
    """A target could not be measured; the message says why in one line."""


@dataclasses.dataclass(frozen=True, slots=True)
class LoadResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    failed: int  # non-2xx/3xx responses plus socket errors
    cpu_us: float = float("nan")  # CPU the target's processes spent per request (Linux)


# --- targets, each served in its own process ---


async def _serve_forever(runner: web.AppRunner) -> None:
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def _run_upstream(port: int, seed: int, size: int) -> None:
    async def main() -> None:
        await _serve_forever(await start_upstream(HOST, port, seed, size))

    asyncio.run(main())


SESSION = web.AppKey("session", aiohttp.ClientSession)


def make_baseline_app(upstream: str, pool_size: int = 100) -> web.Application:
    """The bare pass-through proxy that DataGate is compared against."""

    async def open_session(app: web.Application) -> None:
        connector = aiohttp.TCPConnector(limit=pool_size, keepalive_timeout=60)
        app[SESSION] = aiohttp.ClientSession(connector=connector, auto_decompress=False)

    async def close_session(app: web.Application) -> None:
        await app[SESSION].close()

    async def forward(request: web.Request) -> web.Response:
        drop = HOP_BY_HOP | {"host"}
        drop |= {t.strip().lower() for t in request.headers.get("Connection", "").split(",")}
        headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in drop)
        body = await request.read() if request.body_exists else None
        url = URL(upstream + request.raw_path, encoded=True)
        async with request.app[SESSION].request(
            request.method, url, headers=headers, data=body, allow_redirects=False
        ) as upstream_response:
            payload = await upstream_response.read()
            back = CIMultiDict(
                (k, v) for k, v in upstream_response.headers.items() if k.lower() not in drop
            )
            return web.Response(status=upstream_response.status, headers=back, body=payload)

    app = web.Application()
    app.on_startup.append(open_session)
    app.on_cleanup.append(close_session)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def _run_baseline(port: int, upstream: str) -> None:
    async def main() -> None:
        runner = web.AppRunner(make_baseline_app(upstream), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, HOST, port).start()
        await _serve_forever(runner)

    asyncio.run(main())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, alive: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait until something listens on HOST:port; `alive` says whether the server still runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise BenchError(f"the server meant for port {port} exited before listening")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise BenchError(f"nothing listened on port {port} within {timeout:.0f} s")


@contextmanager
def serving(target: Callable[..., None], port: int, *args: object) -> Iterator[int]:
    """Run `target(port, *args)` in a spawned process for the duration of the block; yields
    its pid."""
    proc = SPAWN.Process(target=target, args=(port, *args), daemon=True)
    proc.start()
    try:
        wait_for_port(port, proc.is_alive)
        assert proc.pid is not None
        yield proc.pid
    finally:
        proc.terminate()
        proc.join(5)


# --- DataGate as a subprocess ---


def datagate_command(explicit: str | None) -> str:
    """The `datagate` executable: the flag, the one beside this Python, or the one on PATH."""
    if explicit:
        if not Path(explicit).is_file():
            raise BenchError(f"--datagate {explicit}: no such file")
        return explicit
    beside = Path(sys.executable).with_name("datagate")
    found = str(beside) if beside.is_file() else shutil.which("datagate")
    if found is None:
        raise BenchError("no `datagate` command found (install the project: pip install -e .)")
    return found


def _cli(command: list[str], env: dict[str, str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BenchError(f"`{' '.join(command[1:3])}` failed: {exc}") from exc
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["(no output)"]
        raise BenchError(f"`{' '.join(command[1:3])}` exited {done.returncode}: {lines[-1]}")
    return done.stdout


@dataclasses.dataclass(frozen=True, slots=True)
class GatewayTarget:
    """One DataGate row: its state backend and number of processes."""

    name: str
    state: str  # "memory" or a redis:// URL
    workers: int = 1


@contextmanager
def datagate(
    args: argparse.Namespace,
    upstream_port: int,
    workdir: Path,
    target: GatewayTarget = GatewayTarget("memory", "memory"),
    *token_args: str,
) -> Iterator[tuple[int, str, int]]:
    """Start `datagate run` for `target`; yield its data port, the bearer token to send and
    its pid. `token_args` replace the default `datagate token` arguments."""
    exe = datagate_command(args.datagate)
    workdir.mkdir(parents=True, exist_ok=True)
    port, admin_port = free_port(), free_port()
    env = dict(os.environ)
    env.update(
        DATAGATE_SERVER__PORT=str(port),
        DATAGATE_SERVER__HOST=HOST,
        DATAGATE_ADMIN__PORT=str(admin_port),
        DATAGATE_ADMIN__HOST=HOST,
        DATAGATE_UPSTREAMS__DEMO__URL=f"http://{HOST}:{upstream_port}",
        DATAGATE_DATA_DIR=str(workdir / "data"),
        DATAGATE_STATE__URL=target.state,
        # One principal drives all the load, which is what a scraper looks like. Measure the
        # cost of normal traffic instead: lift the hard limits and the frequency and volume
        # thresholds (the counters, features and rule checks still run on every request,
        # they just never fire), and keep the breaker in monitor mode.
        DATAGATE_LIMITS__PER_PRINCIPAL__REQUESTS="1000000000",
        DATAGATE_LIMITS__PER_DATASET__REQUESTS="1000000000",
        DATAGATE_DETECTION__HIGH_FREQUENCY__PER_MINUTE="1000000000",
        DATAGATE_DETECTION__HIGH_FREQUENCY__PER_5MIN="1000000000",
        DATAGATE_DETECTION__HIGH_FREQUENCY__PER_HOUR="1000000000",
        DATAGATE_DETECTION__ABOVE_BASELINE__MIN_PER_HOUR="1000000000",
        DATAGATE_DETECTION__BULK_EXPORT__RECORDS_PER_HOUR="1000000000",
        DATAGATE_DETECTION__BULK_EXPORT__BYTES_PER_HOUR="1000000000000",
        DATAGATE_BREAKER__MONITOR="true",
    )
    prefix = None
    if target.state != "memory":
        prefix = f"datagate-bench:{os.urandom(4).hex()}:"
        env["DATAGATE_STATE__PREFIX"] = f'"{prefix}"'  # overrides are YAML: quote the colons
        check_redis(target.state)
    if args.gateway_config:
        config = Path(args.gateway_config).resolve()
    else:
        config = workdir / "demo-config.yaml"
        config.write_text(_cli([exe, "demo", "--print-config"], env))
    if args.token:
        token = args.token
    else:
        who = token_args or ("--sub", "bench", "--dept", "market-regulation", "--clearance", "1")
        token = _cli([exe, "token", *who, "--config", str(config)], env).strip().splitlines()[-1]
    log_path = workdir / f"datagate-{target.name.replace(' ', '-')}.log"
    command = [exe, "run", "--config", str(config), "--workers", str(target.workers)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        try:
            wait_for_port(port, lambda: proc.poll() is None)
            wait_for_port(admin_port, lambda: proc.poll() is None)
        except BenchError as exc:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or [""]
            raise BenchError(f"{exc}; last log line: {tail[0]}") from exc
        yield port, token, proc.pid
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if prefix is not None:
            drop_prefix(target.state, prefix)


def check_redis(url: str) -> None:
    """Fail the row unless the state at `url` answers (any topology the gateway speaks)."""
    from gateway.errors import ConfigError
    from gateway.state import RedisBackend, StateUnavailable

    async def ping() -> None:
        backend = RedisBackend(url, timeout=1.0)
        try:
            await backend.ping()
        finally:
            await backend.close()

    try:
        asyncio.run(ping())
    except (StateUnavailable, ConfigError) as exc:
        raise BenchError(f"no Redis answers at {url} ({exc})") from None


def drop_prefix(url: str, prefix: str) -> None:
    """Delete what the run left in Redis under its own prefix (a plain Redis URL; the
    Sentinel and Cluster topologies the run starts go with it)."""
    import redis

    if "+" in url.partition("://")[0]:
        return

    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i : i + 1000])
    except (redis.RedisError, OSError):
        pass  # a failed clean-up never fails the run
    finally:
        client.close()


# --- load generation ---


def check_once(url: str, headers: dict[str, str]) -> None:
    """One request that must succeed, so that we never benchmark an error page."""

    async def fetch() -> tuple[int, bytes]:
        async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as r:
            return r.status, await r.read()

    status, body = asyncio.run(fetch())
    if status != 200:
        raise BenchError(f"{url} answered {status}: {body[:200].decode(errors='replace')}")


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(output: str) -> LoadResult:
    """The figures from `wrk --latency` output."""

    def find(pattern: str) -> re.Match[str]:
        match = re.search(pattern, output, re.MULTILINE)
        if match is None:
            raise BenchError(f"unexpected wrk output (no {pattern!r}): {output.strip()[-300:]}")
        return match

    def percentile(pct: str) -> float:
        match = find(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s)\s*$")
        return float(match.group(1)) * _UNITS[match.group(2)]

    total = find(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m)")
    unit_ms = {**_UNITS, "m": 60_000.0}[total.group(3)]
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return LoadResult(
        requests=int(total.group(1)),
        seconds=float(total.group(2)) * unit_ms / 1000,
        rps=float(find(r"^Requests/sec:\s+([\d.]+)").group(1)),
        p50_ms=percentile("50"),
        p99_ms=percentile("99"),
        failed=(int(failed.group(1)) if failed else 0)
        + (sum(int(n) for n in socket_errors.groups()) if socket_errors else 0),
    )


# Each connection waits BENCH_DELAY_MS before each request: a roughly fixed offered rate.
_DELAY_SCRIPT = """
local ms = tonumber(os.getenv("BENCH_DELAY_MS"))
function delay() return ms end
"""


def run_wrk(
    url: str,
    headers: dict[str, str],
    args: argparse.Namespace,
    seconds: float,
    *,
    connections: int | None = None,
    delay_ms: int | None = None,
) -> LoadResult:
    connections = connections or args.connections
    command = [
        "wrk",
        f"-t{min(args.threads, connections)}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        *[f"-H{name}: {value}" for name, value in headers.items()],
    ]
    env = dict(os.environ)
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        if delay_ms is not None:
            script.write(_DELAY_SCRIPT)
            script.flush()
            command += ["-s", script.name]
            env["BENCH_DELAY_MS"] = str(delay_ms)
        command.append(url)
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + 60, env=env
        )
    if done.returncode != 0:
        raise BenchError(f"wrk exited {done.returncode}: {done.stderr.strip()[-300:]}")
    return parse_wrk(done.stdout)


def percentile_ms(sorted_seconds: list[float], pct: float) -> float:
    if not sorted_seconds:
        return float("nan")
    index = min(len(sorted_seconds) - 1, int(len(sorted_seconds) * pct / 100))
    return sorted_seconds[index] * 1000


def python_load(url: str, headers: dict[str, str], connections: int, seconds: float) -> LoadResult:
    """Fixed concurrency for a fixed time with aiohttp; runs in its own process."""

    async def main() -> LoadResult:
        latencies: list[float] = []
        failed = 0
        connector = aiohttp.TCPConnector(limit=connections)
        async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
            started = time.perf_counter()
            deadline = started + seconds

            async def worker() -> None:
                nonlocal failed
                while (begin := time.perf_counter()) < deadline:
                    try:
                        async with session.get(url) as response:
                            await response.read()
                            ok = response.status < 400
                    except aiohttp.ClientError:
                        ok = False
                    latencies.append(time.perf_counter() - begin)
                    failed += not ok

            await asyncio.gather(*(worker() for _ in range(connections)))
            elapsed = time.perf_counter() - started
        latencies.sort()
        return LoadResult(
            requests=len(latencies),
            seconds=elapsed,
            rps=len(latencies) / elapsed,
            p50_ms=percentile_ms(latencies, 50),
            p99_ms=percentile_ms(latencies, 99),
            failed=failed,
        )

    return asyncio.run(main())


def cpu_seconds(pid: int) -> float:
    """User and system CPU of a process and its children's threads so far (Linux /proc);
    nan where /proc cannot tell."""
    total = 0.0
    try:
        pids = [pid, *_children(pid)]
        for one in pids:
            for task in os.listdir(f"/proc/{one}/task"):
                with open(f"/proc/{one}/task/{task}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return float("nan")
    return total / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    """The processes `pid` started (`datagate run --workers N`'s workers)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return found


def measure(url: str, headers: dict[str, str], args: argparse.Namespace, pid: int) -> LoadResult:
    """Check one request, warm up, then measure at saturation (with the CPU `pid` spent)."""
    check_once(url, headers)
    if args.loadgen == "wrk":
        run_wrk(url, headers, args, args.warmup)
        before = cpu_seconds(pid)
        result = run_wrk(url, headers, args, args.duration)
    else:
        with ProcessPoolExecutor(max_workers=1, mp_context=SPAWN) as pool:
            pool.submit(python_load, url, headers, args.connections, args.warmup).result()
            before = cpu_seconds(pid)
            result = pool.submit(
                python_load, url, headers, args.connections, args.duration
            ).result()
    spent = cpu_seconds(pid) - before
    return dataclasses.replace(result, cpu_us=1e6 * spent / max(result.requests, 1))


def at_rate(url: str, headers: dict[str, str], args: argparse.Namespace, rate: float) -> LoadResult:
    """Latency at about `rate` requests/s offered (each of the connections waits its share
    of a second before each request)."""
    connections = HALF_LOAD_CONNECTIONS
    delay_ms = max(1, round(1000 * connections / rate))
    return run_wrk(url, headers, args, args.duration, connections=connections, delay_ms=delay_ms)


# --- the run ---

TARGETS = ("upstream", "baseline", "memory", "redis", "sentinel", "cluster", "2 workers")
GATEWAYS = ("memory", "redis", "sentinel", "cluster", "2 workers")
HALF_LOAD_CONNECTIONS = 16


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench",
        description=(
            "Requests/s and p50/p99 latency of the upstream, a bare aiohttp proxy and DataGate "
            "(memory, Redis, 2 workers), measured in one run, with each ratio to the bare proxy "
            "and the p99 DataGate adds at half its saturation rate."
        ),
    )
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per target (8)")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds (2)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections (32)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (1)")
    parser.add_argument(
        "--rounds", type=int, default=1, help="measure every target this many times (1)"
    )
    parser.add_argument(
        "--targets",
        default=",".join(TARGETS),
        help=f"comma-separated subset of: {', '.join(TARGETS)} (all)",
    )
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/15",
        help="Redis for the redis and 2 workers rows (redis://127.0.0.1:6379/15)",
    )
    parser.add_argument(
        "--sentinel-url",
        help="Sentinel state URL for the sentinel row (default: a master, a replica and three "
        "Sentinels started from redis-server for the run)",
    )
    parser.add_argument(
        "--cluster-url",
        help="Cluster state URL for the cluster row (default: a three-master cluster started "
        "from redis-server for the run)",
    )
    parser.add_argument(
        "--no-half-load", action="store_true", help="skip the latency at half saturation"
    )
    parser.add_argument(
        "--path", default="/api/enterprise/companies/1", help="request path for every target"
    )
    parser.add_argument("--json-out", type=Path, help="also write the results as JSON here")
    parser.add_argument("--chart", type=Path, help="also write a PNG chart here (matplotlib)")
    parser.add_argument(
        "--loadgen",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator: wrk if installed (auto), or the Python one",
    )
    parser.add_argument("--gateway-config", help="DataGate config (default: the demo's)")
    parser.add_argument("--token", help="bearer token for DataGate (default: minted)")
    parser.add_argument("--datagate", help="path of the datagate executable")
    parser.add_argument("--skip-gateway", action="store_true", help="measure upstream and baseline")
    parser.add_argument("--seed", type=int, default=7, help="demo data seed (7)")
    parser.add_argument("--size", type=int, default=500, help="records per dataset (500)")
    args = parser.parse_args(argv)
    if args.duration < 1 or args.warmup < 0 or min(args.connections, args.threads, args.rounds) < 1:
        parser.error(
            "--duration must be >= 1, --warmup >= 0, --connections, --threads, --rounds >= 1"
        )
    if not args.path.startswith("/"):
        parser.error("--path must start with /")
    chosen = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = [t for t in chosen if t not in TARGETS]
    if unknown or not chosen:
        parser.error(f"--targets: unknown {', '.join(unknown) or '(none)'}; known: {TARGETS}")
    if args.skip_gateway:
        chosen = [t for t in chosen if t not in GATEWAYS]
    if "baseline" not in chosen:
        parser.error("--targets must include baseline: every ratio is to it")
    args.targets = [t for t in TARGETS if t in chosen]
    if args.loadgen == "auto":
        args.loadgen = "wrk" if shutil.which("wrk") else "python"
    elif args.loadgen == "wrk" and not shutil.which("wrk"):
        parser.error("--loadgen wrk: wrk is not on PATH")
    if args.chart is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("--chart needs matplotlib (pip install matplotlib)")
    return args


def _report(name: str, result: LoadResult, baseline: LoadResult | None) -> None:
    ratio = f"{result.rps / baseline.rps:>7.2f}" if baseline is not None else f"{'':>7}"
    warn = f"  ({result.failed} failed)" if result.failed else ""
    print(
        f"{name:<10} {result.rps:>10.0f} {result.p50_ms:>9.2f} {result.p99_ms:>9.2f}"
        f" {ratio} {result.cpu_us:>8.0f} {result.requests:>9}{warn}",
        flush=True,
    )


def _header(title: str) -> None:
    print(
        f"{title:<10} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'/base':>7} {'cpu µs':>8}"
        f" {'requests':>9}",
        flush=True,
    )


def median(runs: list[LoadResult]) -> LoadResult:
    """The run with the median throughput (the lower middle one for an even count)."""
    return sorted(runs, key=lambda r: r.rps)[(len(runs) - 1) // 2]


def run(args: argparse.Namespace) -> dict[str, object]:
    """Start the targets side by side (idle ones cost nothing), then measure them in turn."""
    skipped: dict[str, str] = {}
    targets: dict[str, tuple[str, dict[str, str]]] = {}
    upstream_port, baseline_port = free_port(), free_port()
    upstream = f"http://{HOST}:{upstream_port}"
    print(
        f"path {args.path}, {args.connections} connections, {args.duration:g} s per target "
        f"after {args.warmup:g} s warm-up, {args.rounds} round(s), load generator: {args.loadgen}",
        flush=True,
    )
    runs: dict[str, list[LoadResult]] = {}
    half: dict[str, dict[str, LoadResult]] = {}
    with ExitStack() as stack:
        pids: dict[str, int] = {}
        pids["upstream"] = stack.enter_context(
            serving(_run_upstream, upstream_port, args.seed, args.size)
        )
        targets["upstream"] = (upstream + args.path, {})
        pids["baseline"] = stack.enter_context(serving(_run_baseline, baseline_port, upstream))
        targets["baseline"] = (f"http://{HOST}:{baseline_port}{args.path}", {})
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dg-bench-")))
        for name in args.targets:
            if name not in GATEWAYS:
                continue
            try:
                state = _state_url(name, args, stack, workdir)
            except (BenchError, RuntimeError, OSError, subprocess.SubprocessError) as exc:
                skipped[name] = str(exc)
                continue
            gateway = GatewayTarget(name, state, 2 if name == "2 workers" else 1)
            try:
                port, token, pids[name] = stack.enter_context(
                    datagate(args, upstream_port, workdir / name.replace(" ", "-"), gateway)
                )
            except BenchError as exc:
                skipped[name] = str(exc)
                continue
            targets[name] = (
                f"http://{HOST}:{port}{args.path}",
                {"Authorization": f"Bearer {token}"},
            )
        measured = [name for name in args.targets if name in targets]
        for number in range(1, args.rounds + 1):
            _header(f"round {number}" if args.rounds > 1 else "target")
            for name in measured:
                if name in skipped:
                    continue
                url, headers = targets[name]
                try:
                    result = measure(url, headers, args, pids[name])
                except BenchError as exc:
                    if name not in GATEWAYS:
                        raise
                    skipped[name] = str(exc)
                    continue
                runs.setdefault(name, []).append(result)
                _report(name, result, None)
        results = {name: median(found) for name, found in runs.items()}
        if args.rounds > 1:
            _header("median")
        baseline = results["baseline"]
        if args.rounds > 1:
            for name, result in results.items():
                _report(name, result, baseline)
        else:
            print(
                "ratio to the bare proxy: "
                + ", ".join(
                    f"{name} {result.rps / baseline.rps:.2f}" for name, result in results.items()
                )
            )
        if not args.no_half_load and args.loadgen == "wrk":
            half = half_load(args, targets, results)
    for name, reason in skipped.items():
        print(f"{name} skipped: {reason}", flush=True)
    ratios = {name: result.rps / baseline.rps for name, result in results.items()}
    summary: dict[str, object] = {
        "path": args.path,
        "connections": args.connections,
        "duration": args.duration,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "loadgen": args.loadgen,
        "results": {name: dataclasses.asdict(result) for name, result in results.items()},
        "runs": {name: [dataclasses.asdict(r) for r in found] for name, found in runs.items()},
        "ratios": ratios,
        "half_load": {
            gateway: {name: dataclasses.asdict(r) for name, r in rows.items()}
            for gateway, rows in half.items()
        },
        "skipped": skipped,
    }
    if args.chart is not None:
        write_chart(args.chart, results, ratios, half)
        print(f"chart written to {args.chart}")
    return summary


def _state_url(name: str, args: argparse.Namespace, stack: ExitStack, workdir: Path) -> str:
    """The state URL of a DataGate row; starts a Sentinel or Cluster topology for the run
    unless one was named."""
    if name == "memory":
        return "memory"
    if name in ("redis", "2 workers"):
        return str(args.redis_url)
    given = args.sentinel_url if name == "sentinel" else args.cluster_url
    if given:
        return str(given)
    from loadtests.topologies import REDIS_CLI, REDIS_SERVER, ClusterTopology, SentinelTopology

    if REDIS_SERVER is None or REDIS_CLI is None:
        raise BenchError(f"no redis-server to start a {name} topology (or give --{name}-url)")
    kind = SentinelTopology if name == "sentinel" else ClusterTopology
    topology = kind(workdir / f"{name}-redis")
    stack.callback(topology.stop)
    return topology.url


def half_load(
    args: argparse.Namespace,
    targets: dict[str, tuple[str, dict[str, str]]],
    results: dict[str, LoadResult],
) -> dict[str, dict[str, LoadResult]]:
    """For each single-process DataGate row: upstream, bare proxy and DataGate at half that
    row's saturation rate; prints the p99 DataGate adds."""
    out: dict[str, dict[str, LoadResult]] = {}
    for gateway in ("memory", "redis"):
        if gateway not in results:
            continue
        rate = results[gateway].rps / 2
        print(
            f"at half of {gateway}'s saturation ({rate:.0f} req/s offered, "
            f"{HALF_LOAD_CONNECTIONS} connections):",
            flush=True,
        )
        rows: dict[str, LoadResult] = {}
        for name in ("upstream", "baseline", gateway):
            url, headers = targets[name]
            rows[name] = at_rate(url, headers, args, rate)
            r = rows[name]
            print(
                f"  {name:<10} {r.rps:>8.0f} req/s  p50 {r.p50_ms:6.2f} ms  p99 {r.p99_ms:6.2f} ms",
                flush=True,
            )
        added_base = rows[gateway].p99_ms - rows["baseline"].p99_ms
        added_up = rows[gateway].p99_ms - rows["upstream"].p99_ms
        print(
            f"  p99 added by DataGate ({gateway}): {added_base:+.2f} ms over the bare proxy, "
            f"{added_up:+.2f} ms over the upstream",
            flush=True,
        )
        out[gateway] = rows
    return out


def write_chart(
    path: Path,
    results: dict[str, LoadResult],
    ratios: dict[str, float],
    half: dict[str, dict[str, LoadResult]],
) -> None:
    """Throughput (with the ratio to the bare proxy) and latency, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    bars = left.bar(names, [results[n].rps for n in names], color="#4c72b0")
    for bar, name in zip(bars, names, strict=True):
        label = f"{results[name].rps:.0f}\n({ratios[name]:.2f}x)"
        left.annotate(
            label,
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    left.set_ylabel("requests/s (saturation)")
    left.set_title("Throughput; in brackets: ratio to the bare proxy")
    left.margins(y=0.2)
    width = 0.27
    xs = range(len(names))
    right.bar([x - width for x in xs], [results[n].p50_ms for n in names], width, label="p50")
    right.bar(list(xs), [results[n].p99_ms for n in names], width, label="p99")
    # Each DataGate row at half its own saturation; the others at half of memory's.
    halves = [half.get(n, {}).get(n) or half.get("memory", {}).get(n) for n in names]
    right.bar(
        [x + width for x in xs],
        [h.p99_ms if h else 0 for h in halves],
        width,
        label="p99 at half load",
    )
    right.set_xticks(list(xs), names)
    right.set_ylabel("latency, ms")
    right.set_title("Latency at saturation, and p99 at half of it")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        summary = run(args)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    if args.json_out:
        args.json_out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
