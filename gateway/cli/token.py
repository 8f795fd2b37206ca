"""`datagate token`: mint a development token with the config's signing key."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError
from gateway.identity.mint import mint_token


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `token` command to `subparsers` (from `ArgumentParser.add_subparsers()`).

    The parser's default `handler(args)` calls `run(args, gateway.cli.load_config)`.
    """
    parser = subparsers.add_parser(
        "token",
        help="mint a development token (needs identity.signing_key in the config)",
        description="Mint a signed bearer token for development and the demo. Prints the "
        "token on stdout. Refuses when the config has no identity.signing_key.",
    )
    parser.add_argument("--sub", required=True, help="subject (the principal's id)")
    parser.add_argument("--dept", required=True, help="the principal's department")
    parser.add_argument(
        "--clearance", required=True, type=int, help="clearance level 1 (public) .. 4 (core)"
    )
    parser.add_argument("--roles", default="", help="comma-separated roles, e.g. analyst,soc")
    parser.add_argument("--purpose", default=None, help="the token's declared purpose")
    parser.add_argument(
        "--purposes", default="", help="comma-separated purposes X-Purpose may declare"
    )
    parser.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (3600)")
    parser.add_argument(
        "--bind-cert",
        default=None,
        metavar="PEM",
        help="bind the token to this client certificate (RFC 8705 cnf.x5t#S256)",
    )
    parser.add_argument("--config", default=None, help="config file (default: the demo config)")
    parser.set_defaults(handler=_handle)
    return parser


def _handle(args: argparse.Namespace) -> int:
    from gateway.cli import load_config  # the package imports this module: import late

    return run(args, load_config)


def run(args: argparse.Namespace, load_config: Callable[[str | None], Any]) -> int:
    """Mint and print a token; return the exit status.

    `load_config(path)` returns the top-level config (its `.identity` is an
    IdentityConfig); a None path means the demo config. Errors are one line on stderr.
    """
    try:
        cfg = load_config(args.config)
        thumbprint = _thumbprint(args.bind_cert) if args.bind_cert else None
        token = mint_token(
            cfg.identity,
            sub=args.sub,
            dept=args.dept,
            clearance=args.clearance,
            roles=_split(args.roles),
            purpose=args.purpose,
            purposes=_split(args.purposes),
            ttl=args.ttl,
            cert_thumbprint=thumbprint,
        )
    except (ConfigError, ValueError) as exc:
        print(f"datagate token: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def _thumbprint(path: str) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from gateway.identity.clientcert import client_cert

    try:
        cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    except OSError as exc:
        raise ValueError(f"--bind-cert: cannot read {path!r}: {exc.strerror}") from None
    except ValueError:
        raise ValueError(f"--bind-cert: {path!r} holds no PEM certificate") from None
    return client_cert(cert.public_bytes(Encoding.DER)).thumbprint


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]
