"""`datagate incidents list / show / ack / resolve`: the SOC workflow through the admin API."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any
from urllib.parse import quote, urlencode

from gateway.cli.adminclient import add_admin_args, admin_request
from gateway.cli.output import add_output_arg, emit, table
from gateway.incidents import model

STATUSES = ("new", "acknowledged", "resolved")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("incidents", help="SOC workflow: list, show, ack, resolve")
    sub = parser.add_subparsers(dest="incidents_command", metavar="SUBCOMMAND")
    sub.required = True

    ls = sub.add_parser("list", help="list incidents, newest first")
    ls.add_argument("--status", choices=STATUSES, help="only incidents in this workflow state")
    ls.add_argument(
        "--severity", type=int, choices=(1, 2, 3, 4, 5), help="only this severity or higher"
    )
    ls.add_argument("--principal", help="only incidents about this principal subject")
    ls.add_argument("--dataset", help="only incidents about this dataset id")
    ls.add_argument("--since", help="last seen at or after this ISO 8601 time with offset")
    add_output_arg(ls)

    show = sub.add_parser("show", help="one incident: a summary, or the whole of it with -o json")
    add_output_arg(show)
    ack = sub.add_parser("ack", help="acknowledge: you are handling it")
    resolve = sub.add_parser("resolve", help="resolve (a note is required)")
    for p in (show, ack, resolve):
        p.add_argument("id", help="incident id (inc-...)")
    ack.add_argument("--note", default="", help="optional note")
    resolve.add_argument("--note", required=True, help="what was found and done")

    for p in (ls, show, ack, resolve):
        add_admin_args(p)
        p.set_defaults(handler=run)


INCIDENT_COLUMNS = (
    ("uid", "ID"),
    ("state", "STATUS"),
    ("severity_id", "SEV"),
    ("count", "COUNT"),
    ("principal", "PRINCIPAL"),
    ("dataset", "DATASET"),
    ("due", "DUE"),
    ("title", "TITLE"),
)


def _ms(value: Any) -> str | None:
    if not isinstance(value, (int, float)):
        return None
    return dt.datetime.fromtimestamp(value / 1000, dt.UTC).isoformat(timespec="seconds")


def _row(i: dict[str, Any]) -> dict[str, Any]:
    info = i["finding_info"]
    return {
        "uid": info["uid"],
        "state": model.state_of(i),
        "severity_id": i.get("severity_id"),
        "count": i.get("count"),
        "principal": model.principal_of(i),
        "dataset": [r.get("uid") for r in i.get("resources", [])],
        "due": model.sla_of(i).get("due_at"),
        "title": info.get("title"),
    }


def _summary(i: dict[str, Any]) -> list[str]:
    """`incidents show` for people: the workflow fields, then when and what."""
    row = _row(i)
    info = i["finding_info"]
    fields = [(header, row[key]) for key, header in INCIDENT_COLUMNS]
    fields += [
        ("FIRST SEEN", _ms(info.get("first_seen_time"))),
        ("LAST SEEN", _ms(info.get("last_seen_time"))),
        ("REMEDIATION", (i.get("remediation") or {}).get("desc")),
    ]
    width = max(len(name) for name, _ in fields)
    return [f"{name:<{width}}  {_text(value)}" for name, value in fields]


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value)) or "-"
    return "-" if value in (None, "") else str(value)


def line(i: dict[str, Any]) -> str:
    row = _row(i)
    return (
        f"{row['uid']}  {_text(row['state']):<12}  sev {row['severity_id']}  "
        f"x{_text(row['count']):<4}  {_text(row['principal'])}  {_text(row['dataset'])}  "
        f"due {_text(row['due'])}  {row['title']}"
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
        listed = admin_request(args, "GET", "/incidents" + (f"?{params}" if params else ""))
        incidents = listed["incidents"]
        rows = [_row(i) for i in incidents]
        emit(args, listed, lambda: table(rows, INCIDENT_COLUMNS) if incidents else ["no incidents"])
        return 0
    path = f"/incidents/{quote(args.id, safe='')}"
    if command == "show":
        incident = admin_request(args, "GET", path)["incident"]
        emit(args, incident, lambda: _summary(incident))
        return 0
    incident = admin_request(args, "POST", f"{path}/{command}", {"note": args.note})["incident"]
    print(f"{command} {line(incident)}")
    return 0
