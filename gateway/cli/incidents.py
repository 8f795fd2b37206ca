"""`datagate incidents list / show / ack / resolve`: the SOC workflow through the admin API."""

from __future__ import annotations

import argparse
import json
from typing import Any
from urllib.parse import quote, urlencode

from gateway.cli.adminclient import add_admin_args, admin_request
from gateway.incidents import model

STATUSES = ("new", "acknowledged", "resolved")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("incidents", help="SOC workflow: list, show, ack, resolve")
    sub = parser.add_subparsers(dest="incidents_command", metavar="SUBCOMMAND")
    sub.required = True

    ls = sub.add_parser("list", help="list incidents, newest first")
    ls.add_argument("--status", choices=STATUSES)
    ls.add_argument("--severity", type=int, choices=(1, 2, 3, 4, 5), help="at least this")
    ls.add_argument("--principal")
    ls.add_argument("--dataset")
    ls.add_argument("--since", help="last seen at or after this ISO 8601 time with offset")

    show = sub.add_parser("show", help="one incident as JSON")
    ack = sub.add_parser("ack", help="acknowledge: you are handling it")
    resolve = sub.add_parser("resolve", help="resolve (a note is required)")
    for p in (show, ack, resolve):
        p.add_argument("id", help="incident id (inc-...)")
    ack.add_argument("--note", default="", help="optional note")
    resolve.add_argument("--note", required=True, help="what was found and done")

    for p in (ls, show, ack, resolve):
        add_admin_args(p)
        p.set_defaults(handler=run)


def line(i: dict[str, Any]) -> str:
    info = i["finding_info"]
    who = model.principal_of(i) or "-"
    dataset = ",".join(r["uid"] for r in i.get("resources", [])) or "-"
    return (
        f"{info['uid']}  {model.state_of(i):<12}  sev {i['severity_id']}  "
        f"x{i['count']:<4}  {who}  {dataset}  due {model.sla_of(i)['due_at']}  {info['title']}"
    )


def run(args: argparse.Namespace) -> int:
    """Run `datagate incidents SUBCOMMAND` against the admin API."""
    command = args.incidents_command
    if command == "list":
        query = {
            "status": args.status,
            "severity": args.severity,
            "principal": args.principal,
            "dataset": args.dataset,
            "since": args.since,
        }
        params = urlencode({k: v for k, v in query.items() if v is not None})
        incidents = admin_request(args, "GET", "/incidents" + (f"?{params}" if params else ""))[
            "incidents"
        ]
        for i in incidents:
            print(line(i))
        if not incidents:
            print("no incidents")
        return 0
    path = f"/incidents/{quote(args.id, safe='')}"
    if command == "show":
        print(
            json.dumps(admin_request(args, "GET", path)["incident"], indent=2, ensure_ascii=False)
        )
        return 0
    incident = admin_request(args, "POST", f"{path}/{command}", {"note": args.note})["incident"]
    print(f"{command} {line(incident)}")
    return 0
