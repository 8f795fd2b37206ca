"""`datagate audit verify`: recompute the audit log's hash chain and signed checkpoints."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import BinaryIO

import orjson

from gateway.audit import chain, checkpoints, keys
from gateway.cli.output import EXIT_NEGATIVE, EXIT_OK, CLIError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("audit", help="the tamper-evident audit log")
    sub = parser.add_subparsers(dest="audit_command", metavar="SUBCOMMAND")
    sub.required = True
    verify = sub.add_parser(
        "verify",
        help="verify the hash chain (and checkpoints); names the first bad line",
        description="Exit 0 when the log is intact; 1 and the first bad line when it was "
        "edited, truncated or reordered; 1 and 'empty' when it holds no records; 2 when the "
        "file is not an audit log at all (no line carries the chain fields).",
    )
    verify.add_argument("file", type=Path, help="the audit log (JSON lines)")
    verify.add_argument("--checkpoints", type=Path, help="the signed checkpoints file")
    verify.add_argument(
        "--public-key", type=Path, help="Ed25519 public key (PEM) that signed the checkpoints"
    )
    verify.set_defaults(handler=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    """Verify FILE; print one line saying it is intact, or naming the first bad line."""
    if args.public_key is not None and args.checkpoints is None:
        raise CLIError("--public-key needs --checkpoints FILE")
    public = None
    if args.public_key is not None:
        try:
            public = keys.load_public(args.public_key)
        except ValueError as exc:
            raise CLIError(f"--public-key: {exc}") from None
    marks: list[chain.Checkpoint] = []
    if args.checkpoints is not None:
        try:
            with open(args.checkpoints, "rb") as fh:
                marks = checkpoints.read(fh, public)
        except OSError as exc:
            raise CLIError(
                f"--checkpoints: cannot read {args.checkpoints}: {exc.strerror}"
            ) from None
        except checkpoints.CheckpointError as exc:
            print(f"{args.checkpoints}: {exc}", file=sys.stderr)
            return EXIT_NEGATIVE
    try:
        with open(args.file, "rb") as fh:
            verdict = chain.verify(fh, marks)
            if not verdict.ok and verdict.records == 0 and _not_an_audit_log(fh):
                # Nothing in it was ever a record: the wrong file, not a tampered log.
                raise CLIError(
                    f"{args.file}: not an audit log: no line carries the chain fields "
                    f"{', '.join(chain.CHAIN_FIELDS)}"
                )
    except OSError as exc:
        raise CLIError(f"cannot read {args.file}: {exc.strerror}") from None
    if not verdict.ok:
        print(f"{args.file}: line {verdict.line}: {verdict.problem}", file=sys.stderr)
        return EXIT_NEGATIVE
    if verdict.records == 0:
        # A log truncated to nothing reads the same as one never written: never "ok".
        print(
            f"{args.file}: empty: no records to verify (a new gateway's log, or one "
            "truncated to nothing: signed checkpoints tell them apart)",
            file=sys.stderr,
        )
        return EXIT_NEGATIVE
    signed = "signed " if public is not None else ""
    note = ""
    if marks and public is None:
        note = " (signatures not checked: pass --public-key)"
    print(
        f"{args.file}: ok, {verdict.records} records, head {verdict.head[:16]}…, "
        f"{len(marks)} {signed}checkpoints match{note}"
    )
    return EXIT_OK


def _not_an_audit_log(fh: BinaryIO) -> bool:
    """Whether the file has content but no line is a JSON object with the chain fields (what
    every record has). An empty file is an empty log, not the wrong file."""
    fh.seek(0)
    if not fh.read(1):
        return False
    fh.seek(0)
    for raw in fh:
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(record, dict) and all(f in record for f in chain.CHAIN_FIELDS):
            return False
    return True
