"""The `datagate` command: one subcommand module per area, errors as one line on stderr,
the exit codes of gateway.cli.output."""

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
    "gateway.cli.config",
    "gateway.cli.completion",
    "gateway.cli.access",
    "gateway.cli.report",
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
    from gateway import __version__

    parser = argparse.ArgumentParser(
        prog="datagate",
        description="DataGate: a zero-trust gateway for data-sharing APIs.",
        epilog="Exit codes: 0 ok, 1 a negative answer (deny, tampering found, failed checks), "
        "2 usage or config error, 3 unreachable (admin API, Redis, a JWKS URL).",
    )
    parser.add_argument(
        "--version", action="version", version=f"datagate {__version__}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    _remember_parsers(parser)
    return parser


def _remember_parsers(parser: argparse.ArgumentParser) -> None:
    """Each (sub)command parser leaves itself in the parsed args: a mistake argparse only sees
    at the end (an unknown flag) is then told with the usage of the subcommand it was given to."""
    parser.set_defaults(_parser=parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                _remember_parsers(child)


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse `argv`; usage mistakes exit 2 with the usage of the subcommand they were made on."""
    args, extras = parser.parse_known_args(argv)
    if extras:
        args._parser.error(f"unrecognized arguments: {' '.join(extras)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    import argcomplete

    from gateway.app import ListenError
    from gateway.cli.output import EXIT_UNREACHABLE, EXIT_USAGE, CLIError
    from gateway.errors import StateUnavailable

    parser = build_parser()
    # Answers the shell's completion requests (and exits); a no-op otherwise.
    argcomplete.autocomplete(parser)
    args = parse(parser, argv)
    try:
        return int(args.handler(args) or 0)
    except CLIError as exc:
        print(f"datagate: {exc}", file=sys.stderr)
        return exc.code
    except (ConfigError, ListenError) as exc:
        print(f"datagate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StateUnavailable as exc:
        print(f"datagate: state backend unavailable: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        print(f"datagate:{where} {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
