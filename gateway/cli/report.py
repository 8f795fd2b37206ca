"""`datagate report usage / incidents / quality`: the figures departments are assessed on, as
csv, json or a table, and `--chart FILE.png`."""

from __future__ import annotations

import argparse
import csv
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.cli.adminclient import add_admin_args, admin_request
from gateway.cli.output import CLIError, table, to_json

FORMATS = ("table", "csv", "json")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "report", help="usage and utilisation, incident handling, data quality"
    )
    sub = parser.add_subparsers(dest="report_command", metavar="SUBCOMMAND")
    sub.required = True

    usage = sub.add_parser(
        "usage",
        help="calls, records, bytes, masked fields, refusals per dataset x department x day",
        description="Read from the audit log, so the same log always gives the same figures.",
    )
    usage.add_argument(
        "--audit",
        type=Path,
        nargs="+",
        help="audit log files (default: the config's audit.path and its per-worker files)",
    )
    incidents = sub.add_parser(
        "incidents",
        help="incidents by severity, time to acknowledge/resolve, the 2-hour deadline",
        description="Read from the incident file sink (every change is a line).",
    )
    incidents.add_argument(
        "--incidents",
        type=Path,
        nargs="+",
        help="incident JSON-lines files (default: the config's incidents.file.path and its "
        "rotated files)",
    )
    for p in (usage, incidents):
        p.add_argument("--from", dest="start", help="first day (2026-12-01) or ISO time")
        p.add_argument("--to", dest="end", help="end, exclusive (default: now)")
        p.add_argument("--config", help="the gateway config (default: the demo's)")
    quality = sub.add_parser(
        "quality",
        help="empty, missing and invalid values per dataset and field (from the gateway)",
        description="Asks the admin API: the counts are made while responses are masked.",
    )
    add_admin_args(quality)
    for p in (usage, incidents, quality):
        p.add_argument(
            "--format",
            "-o",
            "--output",
            dest="format",
            choices=FORMATS,
            default="table",
            help="csv, json or table (table)",
        )
        p.add_argument("--chart", type=Path, metavar="FILE.png", help="also draw the report")
        p.set_defaults(handler=run)


def _period(args: argparse.Namespace, now: float) -> tuple[float, float]:
    from gateway.reports.usage import DAY, day_of, parse_day

    try:
        end = parse_day(args.end, "--to") if args.end else now
        start = (
            parse_day(args.start, "--from")
            if args.start
            else parse_day(day_of(end - 7 * DAY), "--from")
        )
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    if end <= start:
        raise CLIError("--to: must be later than --from")
    return start, end


def _existing(paths: list[Path], what: str) -> list[Path]:
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise CLIError(f"{what}: no such file: {missing[0]}")
    return paths


def _siblings(path: Path, pattern: str) -> list[Path]:
    """`path` and the files beside it that `pattern` matches, oldest rotation first."""
    found = sorted(path.parent.glob(pattern), key=lambda p: p.name, reverse=True)
    return [p for p in found if p != path] + ([path] if path.is_file() else [])


def usage_report(args: argparse.Namespace, now: float) -> dict[str, Any]:
    from gateway.cli import load_config
    from gateway.policy.bundle import load_bundle
    from gateway.reports.usage import Usage, audit_records, grants_in

    start, end = _period(args, now)
    config = load_config(args.config)
    if args.audit:
        paths = _existing(args.audit, "--audit")
    else:
        base = config.audit.path
        paths = _siblings(base, f"{base.stem}.w*{base.suffix}")
        if not paths:
            raise CLIError(f"no audit log at {base} (pass --audit FILE)")
    records = list(audit_records(paths))
    usage = Usage()
    for record in records:
        usage.add(record)
    return usage.report(
        start, end, load_bundle(config.policy.dir, now), grants_in(records, start, end)
    )


def incidents_report(args: argparse.Namespace, now: float) -> dict[str, Any]:
    from gateway.cli import load_config
    from gateway.reports.incidents import incident_report, latest, read_files

    start, end = _period(args, now)
    if args.incidents:
        paths = _existing(args.incidents, "--incidents")
    else:
        sink = load_config(args.config).incidents.file
        if sink is None:
            raise CLIError("the config has no incidents.file sink (pass --incidents FILE)")
        paths = _siblings(sink.path, f"{sink.path.name}.*")
        if not paths:
            raise CLIError(f"no incident file at {sink.path} (pass --incidents FILE)")
    return incident_report(latest(read_files(paths)), start, end, now)


def _csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _flat(row.get(k)) for k in columns})
    return out.getvalue()


def _flat(value: Any) -> Any:
    if isinstance(value, dict):
        return ";".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list):
        return ";".join(map(str, value))
    return "" if value is None else value


USAGE_COLUMNS = [
    "day",
    "dataset",
    "department",
    "calls",
    "served",
    "refused",
    "records",
    "bytes",
    "masked_fields",
    "consumers",
    "refusals",
]
DATASET_COLUMNS = [
    "dataset",
    "owner",
    "sharing",
    "calls",
    "utilisation",
    "consumers_served",
    "catalogued_consumers",
]
INCIDENT_COLUMNS = [
    "day",
    "incidents",
    "by_severity",
    "ack_median",
    "ack_p90",
    "resolve_median",
    "resolve_p90",
    "handled_within_deadline",
    "missed_deadline",
    "share_within_deadline",
    "escalations",
]
QUALITY_COLUMNS = [
    "dataset",
    "field",
    "strategy",
    "seen",
    "empty",
    "missing",
    "invalid",
    "empty_or_missing_share",
    "invalid_share",
]


def _incident_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for period in [*report["periods"], {"day": "total", **report["total"]}]:
        ack, res = period["minutes_to_acknowledge"], period["minutes_to_resolve"]
        rows.append(
            {
                **period,
                "ack_median": ack["median"],
                "ack_p90": ack["p90"],
                "resolve_median": res["median"],
                "resolve_p90": res["p90"],
            }
        )
    return rows


def render(kind: str, report: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return to_json(report) + "\n"
    sections: list[tuple[list[dict[str, Any]], list[str]]]
    if kind == "usage":
        sections = [(report["rows"], USAGE_COLUMNS), (report["datasets"], DATASET_COLUMNS)]
    elif kind == "incidents":
        sections = [(_incident_rows(report), INCIDENT_COLUMNS)]
    else:
        sections = [(report["fields"], QUALITY_COLUMNS)]
    if fmt == "csv":
        # One CSV per section, separated by a blank line (usage: the rows, then the datasets).
        return "\n".join(_csv(rows, columns) for rows, columns in sections)
    parts = []
    for rows, columns in sections:
        flat = [{k: _flat(v) if isinstance(v, dict) else v for k, v in r.items()} for r in rows]
        lines = table(flat, [(c, c.upper()) for c in columns]) if rows else ["(none)"]
        parts.append("\n".join(lines) + "\n")
    if kind == "usage":
        never = ", ".join(report["never_called"]) or "none"
        parts.append(f"never called {report['from'][:10]} .. {report['to'][:10]}: {never}\n")
    return "\n".join(parts)


def run(args: argparse.Namespace) -> int:
    from gateway.reports import charts

    now = time.time()
    kind = args.report_command
    build: dict[str, Callable[[], dict[str, Any]]] = {
        "usage": lambda: usage_report(args, now),
        "incidents": lambda: incidents_report(args, now),
        "quality": lambda: admin_request(args, "GET", "/reports/quality"),
    }
    report = build[kind]()
    print(render(kind, report, args.format), end="")
    if args.chart is not None:
        draw = {
            "usage": charts.usage_chart,
            "incidents": charts.incidents_chart,
            "quality": charts.quality_chart,
        }[kind]
        try:
            draw(report, args.chart)
        except RuntimeError as exc:
            raise CLIError(str(exc)) from None
    return 0
