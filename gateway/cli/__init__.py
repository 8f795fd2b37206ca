"""The `datagate` command: one subcommand module per area, errors as one line on stderr."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError

# Each module has register(subparsers); its handlers are set with set_defaults(handler=...).
COMMAND_MODULES = (
    "gateway.cli.serve",
    "gateway.cli.token",
    "gateway.cli.policy",
    "gateway.cli.grants",
    "gateway.cli.incidents",
    "gateway.cli.breakers",
    "gateway.cli.audit",
    "gateway.cli.detect",
)


def load_config(path: str | Path | None) -> Any:
    """The config at `path`, or the demo's config when `path` is None."""
    from gateway.config import load_config as load
    from gateway.config import parse_config
    from gateway.demo.config import demo_config_data, demo_config_path

    if path is not None:
        return load(Path(path))
    data = demo_config_data(
        port=8080,
        admin_port=9090,
        upstream_port=8081,
        data_dir=Path("datagate-demo").resolve(),
        state="memory",
    )
    return parse_config(data, base_dir=demo_config_path().parent)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="datagate",
        description="DataGate: a zero-trust gateway for data-sharing APIs.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from gateway.app import ListenError
    from gateway.cli.adminclient import CLIError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except ConfigError as exc:
        print(f"datagate: {exc}", file=sys.stderr)
        return 2
    except (CLIError, ListenError) as exc:
        print(f"datagate: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        print(f"datagate:{where} {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
