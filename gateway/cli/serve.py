"""`datagate run` (the production entry point) and `datagate demo` (one command for newcomers)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from gateway.config import Config, load_config, parse_config
from gateway.configtree import to_data
from gateway.errors import ConfigError

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser(
        "run",
        help="serve the gateway from a config file",
        description="Serve the gateway (data and admin listeners) from one config file.",
    )
    run.add_argument("--config", required=True, type=Path, help="the YAML config file")
    run.add_argument(
        "--workers", type=int, default=1, help="processes serving one port (default 1)"
    )
    run.set_defaults(handler=cmd_run)

    demo = sub.add_parser(
        "demo",
        help="run a sample data API behind the gateway, with the bundled policies",
        description=(
            "Start a bundled sample data API (synthetic citizen, enterprise, social-security "
            "and medical data), the gateway in front of it with the bundled policies, and the "
            "admin/SOC listener. State is in memory unless --state says otherwise."
        ),
    )
    demo.add_argument("--port", type=int, default=8080, help="data port (default 8080)")
    demo.add_argument("--admin-port", type=int, default=9090, help="admin port (default 9090)")
    demo.add_argument(
        "--upstream-port", type=int, default=8081, help="sample API port (default 8081)"
    )
    demo.add_argument(
        "--data-dir",
        type=Path,
        default=Path("datagate-demo"),
        help="where logs, incidents and the audit log go (default ./datagate-demo)",
    )
    demo.add_argument("--state", default="memory", help="'memory' or a redis:// URL")
    demo.add_argument(
        "--print-config",
        action="store_true",
        help="print the demo's whole config as YAML (every section, with DATAGATE_* "
        "environment overrides applied) and exit",
    )
    demo.add_argument(
        "--config",
        type=Path,
        help="run the demo with an edited copy of its config; the sample data API listens "
        "where upstreams.demo.url says (http on loopback), and is not started otherwise",
    )
    demo.set_defaults(handler=cmd_demo)


def _check_port(value: int, flag: str) -> None:
    if not 0 < value < 65536:
        raise ConfigError(f"{flag}: must be a port number from 1 to 65535, got {value}")


def demo_config_data(args: argparse.Namespace) -> dict[str, Any]:
    from gateway.demo.config import demo_config_data as base

    for flag in ("port", "admin_port", "upstream_port"):
        _check_port(getattr(args, flag), "--" + flag.replace("_", "-"))
    return base(
        port=args.port,
        admin_port=args.admin_port,
        upstream_port=args.upstream_port,
        data_dir=args.data_dir.resolve(),
        state=args.state,
    )


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo.config import demo_config_path

    if args.config is not None:
        config = load_config(args.config)
        sample_api = sample_api_address(config)
    else:
        config = parse_config(demo_config_data(args), base_dir=demo_config_path().parent)
        sample_api = ("127.0.0.1", args.upstream_port)
    if args.print_config:
        data = to_data(config, public=_published(demo_config_path()))
        yaml.safe_dump(data, sys.stdout, sort_keys=False, allow_unicode=True)
        return 0
    asyncio.run(_serve(config, config_path=args.config, sample_api=sample_api, banner=True))
    return 0


def sample_api_address(config: Config) -> tuple[str, int] | None:
    """Where the demo's sample data API listens: the host and port of `upstreams.demo.url`
    when it is plain http on loopback; None (not started) when the demo is pointed elsewhere."""
    upstream = config.upstreams.get("demo")
    if upstream is None:
        return None
    url = urlsplit(upstream.url)
    if url.scheme != "http" or url.hostname not in LOOPBACK_HOSTS:
        return None
    return url.hostname, url.port or 80


def _published(path: Path) -> frozenset[str]:
    """Every string in the bundled demo config: its keys are public (and say so), so printing
    them redacted would only make the printed config unusable."""
    strings: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, str):
            strings.add(node)
        elif isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(yaml.safe_load(path.read_text(encoding="utf-8")))
    return frozenset(strings)


def cmd_run(args: argparse.Namespace) -> int:
    # Until the gateway's own handler is in place, a SIGHUP (a reload) must not end the
    # process; workers started from here inherit this until they install theirs.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    config = load_config(args.config)
    if args.workers < 1:
        raise ConfigError(f"--workers: must be at least 1, got {args.workers}")
    if args.workers == 1:
        asyncio.run(_serve(config, config_path=args.config))
        return 0
    from gateway.workers import run_workers

    return run_workers(args.config, args.workers)


async def _serve(
    config: Config,
    *,
    config_path: Path | None = None,
    sample_api: tuple[str, int] | None = None,
    banner: bool = False,
    reuse_port: bool = False,
    worker: int | None = None,
    metrics_peers: Path | None = None,
) -> None:
    from gateway import logs
    from gateway.app import Gateway

    logs.configure(config.logging.level, fmt=config.logging.format)
    upstream = None
    if sample_api is not None:
        from gateway.demo.upstream import start_upstream

        host, port = sample_api
        try:
            upstream = await start_upstream(host, port)
        except OSError as exc:
            from gateway.app import ListenError

            raise ListenError(
                f"cannot listen on {host}:{port} for the sample data API: {exc.strerror or exc}"
            ) from None
    gateway = Gateway(config, worker=worker, metrics_peers=metrics_peers)
    stopped = asyncio.Event()
    reloads: set[asyncio.Task[None]] = set()

    def reload() -> None:
        # SIGHUP: the config file (if the gateway runs from one) and the policy.
        task = asyncio.ensure_future(gateway.reload(config_path))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    loop.add_signal_handler(signal.SIGHUP, reload)
    try:
        await gateway.start(reuse_port=reuse_port)
        # What start-up built (modules, config, policy, keys) lives as long as the process:
        # frozen, full garbage collections skip it, which keeps their pauses well under a
        # millisecond instead of tens (they stop every request in flight).
        gc.freeze()
        if banner:
            _print_demo_banner(gateway, sample_api)
        await stopped.wait()
    finally:
        if reloads:
            await asyncio.gather(*reloads, return_exceptions=True)
        await gateway.stop()
        if upstream is not None:
            await upstream.cleanup()


def _print_demo_banner(gateway: Any, sample_api: tuple[str, int] | None) -> None:
    data, admin = gateway.urls()
    if sample_api is not None:
        host, port = sample_api
        where = f"[{host}]" if ":" in host else host
        upstream = f"  sample upstream (direct, for comparison): http://{where}:{port}"
    else:
        named = ", ".join(f"{n} {u.url}" for n, u in gateway.config.upstreams.items())
        upstream = f"  upstreams (from the config; no sample API started): {named}"
    lines = [
        "DataGate demo is running.",
        f"  data API (through the gateway): {data}/api/population/persons",
        f"  admin/SOC listener and dashboard: {admin}/",
        upstream,
        "Get a token and call the gateway:",
        "  TOKEN=$(datagate token --sub alice --dept market-regulation --clearance 1)",
        f'  curl -H "Authorization: Bearer $TOKEN" {data}/api/enterprise/companies/1',
        "A SOC token for the dashboard and the admin API:",
        "  datagate token --sub soc1 --dept soc --clearance 4 --roles soc",
        "Press Ctrl-C to stop.",
    ]
    print("\n".join(lines), flush=True)
