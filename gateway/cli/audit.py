"""`datagate audit verify`: recompute the audit log's hash chain and signed checkpoints."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gateway.audit import chain, checkpoints, keys
from gateway.cli.adminclient import CLIError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("audit", help="the tamper-evident audit log")
    sub = parser.add_subparsers(dest="audit_command", metavar="SUBCOMMAND")
    sub.required = True
    verify = sub.add_parser(
        "verify",
        help="verify the hash chain (and checkpoints); names the first bad line",
        description="Exit 0 when the log is intact; 1 and the first bad line otherwise.",
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
            return 1
    try:
        with open(args.file, "rb") as fh:
            verdict = chain.verify(fh, marks)
    except OSError as exc:
        raise CLIError(f"cannot read {args.file}: {exc.strerror}") from None
    if not verdict.ok:
        print(f"{args.file}: line {verdict.line}: {verdict.problem}", file=sys.stderr)
        return 1
    signed = "signed " if public is not None else ""
    note = ""
    if marks and public is None:
        note = " (signatures not checked: pass --public-key)"
    print(
        f"{args.file}: ok, {verdict.records} records, head {verdict.head[:16]}…, "
        f"{len(marks)} {signed}checkpoints match{note}"
    )
    return 0
