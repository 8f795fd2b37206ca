"""`datagate run` (the production entry point) and `datagate demo` (one command for newcomers)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import sys
from pathlib import Path
from typing import Any

import yaml

from gateway.config import Config, load_config, parse_config
from gateway.errors import ConfigError


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
        "--print-config", action="store_true", help="print the demo's whole config as YAML"
    )
    demo.add_argument("--config", type=Path, help="run the demo with an edited copy of its config")
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

    if args.print_config:
        yaml.safe_dump(demo_config_data(args), sys.stdout, sort_keys=False, allow_unicode=True)
        return 0
    if args.config is not None:
        config = load_config(args.config)
    else:
        config = parse_config(demo_config_data(args), base_dir=demo_config_path().parent)
    asyncio.run(_serve(config, config_path=args.config, demo_upstream_port=args.upstream_port))
    return 0


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
    demo_upstream_port: int | None = None,
    reuse_port: bool = False,
    worker: int | None = None,
    metrics_peers: Path | None = None,
) -> None:
    from gateway import logs
    from gateway.app import Gateway

    logs.configure(config.logging.level, fmt=config.logging.format)
    upstream = None
    if demo_upstream_port is not None:
        from gateway.demo.upstream import start_upstream

        try:
            upstream = await start_upstream("127.0.0.1", demo_upstream_port)
        except OSError as exc:
            from gateway.app import ListenError

            raise ListenError(
                f"cannot listen on 127.0.0.1:{demo_upstream_port} for the sample data API: "
                f"{exc.strerror or exc}"
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
        if demo_upstream_port is not None:
            _print_demo_banner(gateway, demo_upstream_port)
        await stopped.wait()
    finally:
        if reloads:
            await asyncio.gather(*reloads, return_exceptions=True)
        await gateway.stop()
        if upstream is not None:
            await upstream.cleanup()


def _print_demo_banner(gateway: Any, upstream_port: int) -> None:
    data, admin = gateway.urls()
    lines = [
        "DataGate demo is running.",
        f"  data API (through the gateway): {data}/api/population/persons",
        f"  admin/SOC listener and dashboard: {admin}/",
        f"  sample upstream (direct, for comparison): http://127.0.0.1:{upstream_port}",
        "Get a token and call the gateway:",
        "  TOKEN=$(datagate token --sub alice --dept market-regulation --clearance 1)",
        f'  curl -H "Authorization: Bearer $TOKEN" {data}/api/enterprise/companies/1',
        "A SOC token for the dashboard and the admin API:",
        "  datagate token --sub soc1 --dept soc --clearance 4 --roles soc",
        "Press Ctrl-C to stop.",
    ]
    print("\n".join(lines), flush=True)
