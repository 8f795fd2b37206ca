"""A small client for the admin/SOC API, shared by the CLI commands that talk to it."""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.request
from typing import Any

from gateway.cli.output import EXIT_NEGATIVE, EXIT_UNREACHABLE, EXIT_USAGE, CLIError

__all__ = ["CLIError", "add_admin_args", "admin_request", "duration"]

DEFAULT_ADMIN_URL = "http://127.0.0.1:9090"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

# The admin API's refusals as exit codes: a bad argument is a usage error, a refusal of the
# action itself (forbidden, not found, conflict) a negative answer, a server that cannot
# answer (state unavailable, a proxy's bad gateway) unreachable.
_USAGE_STATUSES = frozenset({400, 405, 413, 422})


def add_admin_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=os.environ.get("DATAGATE_ADMIN_URL", DEFAULT_ADMIN_URL),
        help="admin listener URL (env DATAGATE_ADMIN_URL; default %(default)s)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("DATAGATE_ADMIN_TOKEN"),
        help="bearer token with the soc or security-officer role (env DATAGATE_ADMIN_TOKEN)",
    )


def admin_request(
    args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None
) -> Any:
    """Call the admin API and return the decoded JSON; any failure raises CLIError."""
    if not args.token:
        raise CLIError("no admin token: pass --token or set DATAGATE_ADMIN_TOKEN")
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        args.url.rstrip("/") + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {args.token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            payload = resp.read()
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read())
            message = f"{detail.get('error', exc.code)}: {detail.get('message', '')}"
        except ValueError:
            message = str(exc.code)
        if exc.code >= 500:
            code = EXIT_UNREACHABLE
        elif exc.code in _USAGE_STATUSES:
            code = EXIT_USAGE
        else:
            code = EXIT_NEGATIVE
        raise CLIError(f"admin API refused {method} {path}: {message}", code) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CLIError(
            f"cannot reach the admin API at {args.url}: {reason}", EXIT_UNREACHABLE
        ) from None
    return json.loads(payload) if payload else None


def duration(text: str, flag: str = "--duration") -> int:
    """`90`, `90s`, `15m`, `8h` or `3d` as seconds; CLIError naming `flag` otherwise."""
    text = text.strip().lower()
    unit = _UNITS.get(text[-1:], 0)
    number = text[:-1] if unit else text
    if not number.isdigit() or int(number) == 0:
        raise CLIError(f"{flag}: expected a positive number with s, m, h or d, got {text!r}")
    return int(number) * (unit or 1)
