"""`datagate breakers list / open / reset`: see, force or lift suspensions via the admin API."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from gateway.breaker.config import SCOPES
from gateway.cli.adminclient import add_admin_args, admin_request, duration
from gateway.cli.output import add_output_arg, emit, table


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("breakers", help="see, force or lift suspensions")
    sub = parser.add_subparsers(dest="breakers_command", metavar="SUBCOMMAND")
    sub.required = True

    ls = sub.add_parser("list", help="breakers that are not closed (--all: every breaker)")
    ls.add_argument("--all", action="store_true", help="include closed breakers")
    add_output_arg(ls)

    opener = sub.add_parser("open", help="suspend sharing for a scope")
    reset = sub.add_parser("reset", help="lift a suspension (a note is required)")
    for p in (opener, reset):
        p.add_argument("scope", choices=SCOPES, help="what to suspend")
        p.add_argument(
            "key", help="principal subject, department, dataset id, or PRINCIPAL|DATASET"
        )
        p.add_argument("--note", required=True, help="why (recorded with your name)")
    when = opener.add_mutually_exclusive_group(required=True)
    when.add_argument("--forced", action="store_true", help="forced-open: stays open until a reset")
    when.add_argument("--for", dest="duration", help="open for a while, e.g. 30m, 8h, 2d")
    when.add_argument("--until", help="open until this ISO 8601 time with offset")

    for p in (ls, opener, reset):
        add_admin_args(p)
        p.set_defaults(handler=run)


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")


BREAKER_COLUMNS = (
    ("breaker", "BREAKER"),
    ("effective", "STATE"),
    ("until", "UNTIL"),
    ("trips", "TRIPS"),
    ("by", "BY"),
    ("incident_id", "INCIDENT"),
    ("note", "NOTE"),
)


def line(b: dict[str, Any]) -> str:
    incident = f"  incident {b['incident_id']}" if b.get("incident_id") else ""
    note = f"  ({b['note']})" if b.get("note") else ""
    return (
        f"{b['scope']}:{b['key']}  {b['effective']:<11}  until {_when(b.get('until'))}  "
        f"trips {b['trips']}  by {b['by']}{incident}{note}"
    )


def run(args: argparse.Namespace) -> int:
    """Run `datagate breakers SUBCOMMAND` against the admin API."""
    if args.breakers_command == "list":
        listed = admin_request(args, "GET", "/breakers" + ("?all=1" if args.all else ""))
        breakers = listed["breakers"]
        rows = [
            {**b, "breaker": f"{b['scope']}:{b['key']}", "until": _when(b.get("until"))}
            for b in breakers
        ]
        empty = ["no breakers" if args.all else "no breakers open"]
        emit(args, listed, lambda: table(rows, BREAKER_COLUMNS) if breakers else empty)
        return 0
    body: dict[str, Any] = {"scope": args.scope, "key": args.key, "note": args.note}
    if args.breakers_command == "reset":
        print(f"reset {line(admin_request(args, 'POST', '/breakers/reset', body)['breaker'])}")
        return 0
    if args.forced:
        body["mode"] = "forced_open"
    else:
        body["mode"] = "open"
        if args.duration:
            body["duration"] = duration(args.duration, "--for")
        else:
            body["until"] = args.until
    print(f"opened {line(admin_request(args, 'POST', '/breakers', body)['breaker'])}")
    return 0
