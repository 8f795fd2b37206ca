"""`datagate access request / list / approve / reject / withdraw`: access requests through the
data listener's consumer API, with the caller's own token."""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, urlencode

from gateway.access.http import PREFIX
from gateway.access.model import STATES
from gateway.cli.adminclient import duration
from gateway.cli.output import (
    EXIT_NEGATIVE,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    CLIError,
    add_output_arg,
    emit,
    table,
)
from gateway.policy.rules import ACTIONS

DEFAULT_URL = "http://127.0.0.1:8080"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "access", help="ask for temporary access; data officers of the owner decide"
    )
    sub = parser.add_subparsers(dest="access_command", metavar="SUBCOMMAND")
    sub.required = True

    ask = sub.add_parser("request", help="ask for temporary access to a dataset")
    ask.add_argument("--dataset", required=True, help="the catalog dataset id asked for")
    ask.add_argument("--actions", default="read", help=f"comma-separated: {', '.join(ACTIONS)}")
    ask.add_argument("--fields", default="", help="comma-separated fields needed in clear")
    ask.add_argument("--purpose", required=True, help="the purpose the access is for")
    ask.add_argument("--duration", required=True, help="e.g. 90m, 8h, 3d (capped per level)")
    ask.add_argument("--justification", required=True, help="why the access is needed")

    ls = sub.add_parser("list", help="your requests; a data officer also sees its department's")
    ls.add_argument("--state", choices=STATES, help="only requests in this state")
    ls.add_argument("--dataset", help="only requests for this dataset")

    decide = {}
    for name, text in (
        ("approve", "approve a request (data officer of the owner department)"),
        ("reject", "reject a request (data officer of the owner department)"),
        ("withdraw", "withdraw your own pending request"),
    ):
        decide[name] = sub.add_parser(name, help=text)
        decide[name].add_argument("id", help="request id (ar-...)")
        decide[name].add_argument(
            "--note", required=name == "reject", default="", help="recorded with the step"
        )

    for p in (ask, ls, *decide.values()):
        p.add_argument(
            "--url",
            default=os.environ.get("DATAGATE_URL", DEFAULT_URL),
            help="data listener URL (env DATAGATE_URL; default %(default)s)",
        )
        p.add_argument(
            "--token",
            default=os.environ.get("DATAGATE_TOKEN"),
            help="your bearer token (env DATAGATE_TOKEN)",
        )
        add_output_arg(p)
        p.set_defaults(handler=run)


def call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    """One call to the consumer API; a refusal or an unreachable gateway is a CLIError."""
    if not args.token:
        raise CLIError("no token: pass --token or set DATAGATE_TOKEN")
    request = urllib.request.Request(
        args.url.rstrip("/") + PREFIX + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {args.token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read())
            message = f"{detail.get('reason') or detail.get('error')}: {detail.get('message')}"
        except ValueError:
            message = f"HTTP {exc.code}"
        if exc.code >= 500:
            code = EXIT_UNREACHABLE
        elif exc.code in (400, 405, 413):
            code = EXIT_USAGE  # the request itself was wrong
        else:
            code = EXIT_NEGATIVE  # forbidden, not found, conflict: the answer is no
        raise CLIError(f"refused ({exc.code}) {message}", code) from None
    except (urllib.error.URLError, OSError) as exc:
        raise CLIError(
            f"cannot reach the gateway at {args.url}: {getattr(exc, 'reason', exc)}",
            EXIT_UNREACHABLE,
        ) from None


COLUMNS = (
    ("id", "ID"),
    ("state", "STATE"),
    ("requester", "REQUESTER"),
    ("department", "DEPARTMENT"),
    ("dataset", "DATASET"),
    ("owner", "OWNER"),
    ("actions", "ACTIONS"),
    ("fields", "FIELDS"),
    ("purpose", "PURPOSE"),
    ("duration", "SECONDS"),
    ("until", "DECIDE BY / GRANT UNTIL"),
    ("grant_id", "GRANT"),
)


def rows(requests: list[dict[str, Any]]) -> list[str]:
    shown = [
        {
            **r,
            "duration": f"{r['duration']:g}",
            "until": r["grant_expires_at"] if r.get("grant_id") else r["decide_by"],
        }
        for r in requests
    ]
    return table(shown, COLUMNS) if shown else ["no access requests"]


def run(args: argparse.Namespace) -> int:
    command = args.access_command
    if command == "request":
        body = {
            "dataset": args.dataset,
            "actions": [a.strip() for a in args.actions.split(",") if a.strip()],
            "fields": [f.strip() for f in args.fields.split(",") if f.strip()],
            "purpose": args.purpose,
            "duration": duration(args.duration, "--duration"),
            "justification": args.justification,
        }
        answer = call(args, "POST", "access-requests", body)
    elif command == "list":
        query = urlencode(
            {k: v for k, v in (("state", args.state), ("dataset", args.dataset)) if v}
        )
        answer = call(args, "GET", "access-requests" + (f"?{query}" if query else ""))
    else:
        note = {"note": args.note} if args.note else None
        path = f"access-requests/{quote(args.id, safe='')}/{command}"
        answer = call(args, "POST", path, note)
    found = answer["access_requests"] if command == "list" else [answer["access_request"]]
    emit(args, answer, lambda: rows(found))
    return 0
