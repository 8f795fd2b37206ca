"""`datagate grants list / add / revoke`: temporary grants through the admin API."""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote, urlencode

from gateway.cli.adminclient import add_admin_args, admin_request, duration
from gateway.cli.output import add_output_arg, emit, table
from gateway.policy.rules import ACTIONS


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("grants", help="temporary, auto-expiring authorisations")
    sub = parser.add_subparsers(dest="grants_command", metavar="SUBCOMMAND")
    sub.required = True

    ls = sub.add_parser("list", help="list grants (active and pending; --all adds expired)")
    ls.add_argument("--dataset", help="only grants on this dataset")
    ls.add_argument("--all", action="store_true", help="include expired grants")
    add_output_arg(ls)

    add = sub.add_parser("add", help="grant a principal or department temporary access")
    who = add.add_mutually_exclusive_group(required=True)
    who.add_argument("--principal", help="principal subject")
    who.add_argument("--department", help="department")
    add.add_argument("--dataset", required=True, help="the dataset id the grant is on")
    add.add_argument(
        "--actions", default="read,list", help=f"comma-separated: {', '.join(ACTIONS)}"
    )
    add.add_argument("--purpose", required=True, help="the purpose the grant allows")
    when = add.add_mutually_exclusive_group(required=True)
    when.add_argument("--duration", help="lifetime, e.g. 90m, 8h, 3d (capped per level)")
    when.add_argument("--expires-at", help="ISO 8601 end time with offset")
    add.add_argument("--not-before", help="ISO 8601 start time with offset (default now)")
    add.add_argument("--reason", required=True, help="why the grant is needed (recorded)")
    add.add_argument("--clearance", type=int, choices=(1, 2, 3, 4), help="clearance to read with")

    revoke = sub.add_parser("revoke", help="revoke a grant at once")
    revoke.add_argument("id", help="grant id (g-...)")

    for p in (ls, add, revoke):
        add_admin_args(p)
        p.set_defaults(handler=run)


GRANT_COLUMNS = (
    ("id", "ID"),
    ("state", "STATE"),
    ("who", "WHO"),
    ("dataset", "DATASET"),
    ("actions", "ACTIONS"),
    ("purpose", "PURPOSE"),
    ("not_before", "FROM"),
    ("expires_at", "UNTIL"),
    ("granted_by", "BY"),
    ("reason", "REASON"),
)


def _who(g: dict[str, Any]) -> str:
    return f"principal {g['principal']}" if g.get("principal") else f"department {g['department']}"


def _line(g: dict[str, Any]) -> str:
    return (
        f"{g['id']}  {g['state']:<7}  {_who(g)}  {g['dataset']}  {','.join(g['actions'])}  "
        f"purpose {g['purpose']}  {g['not_before']} .. {g['expires_at']}  by {g['granted_by']}"
        f"  ({g['reason']})"
    )


def run(args: argparse.Namespace) -> int:
    """Run `datagate grants SUBCOMMAND` against the admin API."""
    if args.grants_command == "list":
        query = {"dataset": args.dataset, "all": "1" if args.all else None}
        params = urlencode({k: v for k, v in query.items() if v})
        path = "/grants" + (f"?{params}" if params else "")
        listed = admin_request(args, "GET", path)
        grants = listed["grants"]
        rows = [{**g, "who": _who(g)} for g in grants]
        emit(args, listed, lambda: table(rows, GRANT_COLUMNS) if grants else ["no grants"])
        return 0
    if args.grants_command == "add":
        body: dict[str, Any] = {
            "dataset": args.dataset,
            "actions": [a.strip() for a in args.actions.split(",") if a.strip()],
            "purpose": args.purpose,
            "reason": args.reason,
        }
        if args.principal:
            body["principal"] = args.principal
        else:
            body["department"] = args.department
        if args.duration:
            body["duration"] = duration(args.duration, "--duration")
        else:
            body["expires_at"] = args.expires_at
        if args.not_before:
            body["not_before"] = args.not_before
        if args.clearance:
            body["clearance"] = args.clearance
        grant = admin_request(args, "POST", "/grants", body)["grant"]
        print(f"added {_line(grant)}")
        return 0
    revoked = admin_request(args, "DELETE", f"/grants/{quote(args.id, safe='')}")["revoked"]
    print(f"revoked {_line(revoked)}")
    return 0
