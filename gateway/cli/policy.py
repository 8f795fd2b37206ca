"""`datagate policy check / explain / test / replay`: the security officers' policy tools."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from gateway.cli.adminclient import CLIError
from gateway.cli.output import (
    EXIT_NEGATIVE,
    EXIT_OK,
    Refused,
    Unreachable,
    add_output_arg,
    emit,
    table,
)
from gateway.errors import ConfigError, GatewayError
from gateway.identity.principal import Principal
from gateway.identity.purpose import declared_purpose
from gateway.policy.bundle import TESTS_DIR, PolicyBundle, load_bundle
from gateway.policy.cases import case_files, decide_case, failure, load_cases, resolve
from gateway.policy.check import casbin_parity, problems
from gateway.policy.config import PolicyConfig
from gateway.policy.decide import evaluate
from gateway.policy.grants import GRANTS_HASH, Grant, parse_time
from gateway.policy.replay import replay
from gateway.policy.startup import bundle_checks
from gateway.policy.store import PolicyStore

LoadConfig = Callable[[str | None], Any]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "policy", help="check, explain, test and replay the access policy"
    )
    sub = parser.add_subparsers(dest="policy_command", metavar="SUBCOMMAND")
    sub.required = True

    check = sub.add_parser("check", help="validate model.conf, policy.csv and catalog.yaml")
    _source_args(check)

    explain = sub.add_parser("explain", help="explain one decision: which rule matched, and why")
    _source_args(explain)
    who = explain.add_argument_group("caller (a token, or the attributes)")
    who.add_argument("--token", help="a bearer token, verified with the config's identity section")
    who.add_argument("--sub", help="principal subject")
    who.add_argument("--dept", help="principal department")
    who.add_argument("--clearance", type=int, choices=(1, 2, 3, 4), help="principal clearance")
    who.add_argument("--roles", default="", help="comma-separated roles")
    who.add_argument(
        "--cert-subject",
        help="the client certificate's subject (RFC 4514), as with mTLS on the data listener",
    )
    explain.add_argument("--purpose", help="declared purpose")
    explain.add_argument("--path", required=True, help="request path, e.g. /api/population/x")
    explain.add_argument("--method", default="GET", help="HTTP method (default GET)")
    explain.add_argument("--time", help="ISO 8601 time of the request (default now)")
    add_output_arg(explain)

    test = sub.add_parser("test", help="run YAML policy test cases")
    _source_args(test)
    test.add_argument("files", nargs="*", type=Path, help="case files (default: DIR/tests/*.yaml)")

    rep = sub.add_parser("replay", help="re-decide recorded access events under a candidate policy")
    rep.add_argument("--events", required=True, type=Path, help="access events (JSON lines)")
    rep.add_argument("--policy", required=True, type=Path, help="candidate policy directory")
    rep.add_argument("--config", help="gateway config (for policy.timezone)")
    rep.add_argument("--samples", type=int, default=3, help="sample request ids per change")
    rep.add_argument("--all", action="store_true", help="print every changed event")

    push = sub.add_parser(
        "push", help="validate, test, sign and store a policy directory as the active bundle"
    )
    push.add_argument("directory", type=Path, help="policy directory to push")
    push.add_argument("--config", required=True, help="gateway config (state, policy.signing_key)")
    push.add_argument("-m", "--message", default="", help="why this version (kept in the history)")
    push.add_argument("--by", help="who pushes (default: the login name)")

    history = sub.add_parser(
        "history", help="the bundles pushed and rolled back, and the active one"
    )
    history.add_argument("--config", required=True, help="gateway config (its state section)")
    add_output_arg(history)

    rollback = sub.add_parser("rollback", help="re-activate a stored, verified earlier version")
    rollback.add_argument("version", help="a version from `datagate policy history`")
    rollback.add_argument("--config", required=True, help="gateway config (state, public keys)")
    rollback.add_argument("-m", "--message", default="", help="why (kept in the history)")
    rollback.add_argument("--by", help="who rolls back (default: the login name)")

    for p in (check, explain, test, rep, push, history, rollback):
        p.set_defaults(handler=_handler)


def _source_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--config", help="gateway config file (its policy.dir is used)")
    group.add_argument("--dir", type=Path, help="policy directory (default ./policies)")


def _handler(args: argparse.Namespace) -> int:
    from gateway.cli import load_config

    return run(args, load_config)


def run(args: argparse.Namespace, load_config: LoadConfig) -> int:
    """Run `datagate policy SUBCOMMAND`; `load_config(path)` returns the gateway config."""
    commands = {
        "check": _check,
        "explain": _explain,
        "test": _test,
        "replay": _replay,
        "push": _push,
        "history": _history,
        "rollback": _rollback,
    }
    return commands[args.policy_command](args, load_config)


def _policy_config(args: argparse.Namespace, load_config: LoadConfig) -> tuple[PolicyConfig, Any]:
    if getattr(args, "config", None):
        config = load_config(args.config)
        return config.policy, config
    directory = getattr(args, "dir", None)
    return PolicyConfig(dir=directory if directory is not None else Path("policies")), None


def _check(args: argparse.Namespace, load_config: LoadConfig) -> int:
    """Exit 2 on anything the gateway would refuse at start (one line naming file, key and
    problem), 1 on rows that never matter or keep plain Casbin from deciding alike, else 0."""
    try:
        cfg, config = _policy_config(args, load_config)
        # The gateway's own start-up path: parse, run the policy test cases, then the
        # bundle checks (masking strategies and parameters, upstream names).
        store = PolicyStore(
            dataclasses.replace(cfg, watch=False),
            validators=bundle_checks((lambda: config) if config is not None else None),
        )
    except ConfigError as exc:
        print(f"datagate: {exc}", file=sys.stderr)
        return 2
    bundle = store.current
    found = problems(bundle) + casbin_parity(bundle)
    for line in found:
        print(line)
    summary = (
        f"{cfg.dir}: version {bundle.version}, {len(bundle.catalog.datasets)} datasets, "
        f"{len(bundle.rows)} rows"
    )
    if config is None:
        print(
            "datagate: note: without --config, upstream names and masking.pseudonym_secret "
            "are not checked",
            file=sys.stderr,
        )
    if found:
        print(f"{summary}: {len(found)} problem(s)")
        return 1
    print(f"{summary}: ok")
    return 0


def _principal(args: argparse.Namespace, config: Any) -> Principal:
    if args.cert_subject is not None:
        from gateway.policy.rules import cert_subject_problem

        problem = cert_subject_problem(args.cert_subject)
        if problem:
            raise CLIError(f"--cert-subject: {problem}")
    if args.token:
        if any(v is not None for v in (args.sub, args.dept, args.clearance)):
            raise CLIError("give --token or --sub/--dept/--clearance, not both")
        if config is None:
            raise CLIError("--token needs --config (its identity section verifies the token)")
        verified = asyncio.run(_verify(config, args.token))
        return dataclasses.replace(verified, cert_subject=args.cert_subject)
    missing = [n for n in ("sub", "dept", "clearance") if getattr(args, n) is None]
    if missing:
        raise CLIError(f"give --token, or --{', --'.join(missing)}")
    roles = frozenset(r.strip() for r in args.roles.split(",") if r.strip())
    purposes = frozenset([args.purpose]) if args.purpose else frozenset()
    return Principal(
        args.sub,
        args.dept,
        args.clearance,
        roles,
        purposes=purposes,
        cert_subject=args.cert_subject,
    )


async def _verify(config: Any, token: str) -> Principal:
    # The identity room's verifier: the same checks as the gateway, without a revocation list.
    from gateway.identity.verifier import Verifier

    verifier = Verifier(config.identity, None)
    await verifier.start()
    try:
        return await verifier.verify(token)
    except GatewayError as exc:
        raise CLIError(f"token refused ({exc.reason}): {exc.message}") from None
    finally:
        await verifier.close()


def _explain(args: argparse.Namespace, load_config: LoadConfig) -> int:
    cfg, config = _policy_config(args, load_config)
    bundle = load_bundle(cfg.dir, time.time())
    principal = _principal(args, config)
    try:
        purpose = declared_purpose(principal, args.purpose)
    except GatewayError as exc:
        raise CLIError(f"--purpose {args.purpose!r}: {exc.message}") from None
    try:
        dataset, action = resolve(bundle.catalog, args.method, args.path)
        ts = parse_time(args.time, "--time") if args.time else time.time()
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    grants = asyncio.run(_live_grants(config, dataset.id)) if config is not None else []
    decision = evaluate(
        bundle, principal, purpose, dataset, action, ts, grants, cfg.tz, cfg.monitor
    ).decision
    enforced = "allow" if decision.allowed else "deny"
    masked = (
        [f for f in dataset.fields if f.level > decision.mask_clearance] if decision.allowed else []
    )
    answer = {
        "decision": decision.effect,
        "monitor": decision.monitor,
        "enforced": enforced,
        "reason": decision.reason,
        "rule": {"where": decision.rule.where, "text": decision.rule.text}
        if decision.rule
        else None,
        "grant": decision.grant_id,
        "grants_checked": len(grants),
        "principal": {
            "subject": principal.subject,
            "department": principal.department,
            "clearance": principal.clearance,
            "cert_subject": principal.cert_subject,
        },
        "action": action,
        "dataset": {"id": dataset.id, "level": dataset.level, "sharing": dataset.sharing},
        "purpose": purpose,
        "policy": {"version": bundle.version, "dir": str(cfg.dir)},
        "masked": [{"field": f.name, "level": f.level, "strategy": f.strategy} for f in masked]
        if decision.allowed
        else None,
    }

    def lines() -> list[str]:
        cert = f", certificate {principal.cert_subject}" if principal.cert_subject else ""
        rule = f"{decision.rule.where}  {decision.rule.text}" if decision.rule else "-"
        out = [
            f"decision: {decision.effect}"
            + (" (monitor mode: not enforced)" if decision.monitor else ""),
            f"enforced: {enforced}",
            f"reason:   {decision.reason}",
            f"rule:     {rule}",
            f"grant:    {decision.grant_id or '-'} ({len(grants)} grant(s) on {dataset.id} "
            "checked)",
            f"request:  {principal.subject} ({principal.department}, clearance "
            f"{principal.clearance}{cert}) {action} {dataset.id} (level {dataset.level}, "
            f"{dataset.sharing}), purpose {purpose or '-'}",
            f"policy:   {bundle.version} ({cfg.dir})",
        ]
        if decision.allowed:
            listed = ", ".join(f"{f.name} (level {f.level}, {f.strategy})" for f in masked)
            out.append(f"masked:   {listed or 'none'}")
        return out

    emit(args, answer, lines)
    # A deny the gateway would enforce is a negative answer (exit 1), like a failed test.
    return EXIT_OK if decision.allowed else EXIT_NEGATIVE


async def _live_grants(config: Any, dataset: str) -> list[Grant]:
    """The grants on `dataset` in the configured state backend (none for `memory`)."""
    from gateway.state import StateUnavailable, open_backend

    if config.state.url == "memory":
        return []
    backend = open_backend(config.state.url, config.state.prefix, **config.state.options())
    try:
        await backend.start()
        raw = await backend.hgetall(GRANTS_HASH)
    except StateUnavailable as exc:
        print(f"datagate: grants not checked: {exc}", file=sys.stderr)
        return []
    finally:
        await backend.close()
    grants = [Grant.from_json(orjson.loads(v)) for v in raw.values()]
    return [g for g in grants if g.dataset == dataset]


def _test(args: argparse.Namespace, load_config: LoadConfig) -> int:
    cfg, _ = _policy_config(args, load_config)
    bundle = load_bundle(cfg.dir, time.time())
    files = args.files or case_files(cfg.dir / TESTS_DIR)
    if not files:
        raise CLIError(f"no test case files given or found in {cfg.dir / TESTS_DIR}")
    total = failed = 0
    for path in files:
        for case in load_cases(path):
            total += 1
            why = failure(bundle, case, cfg.tz)
            if why is None:
                decision = decide_case(bundle, case, cfg.tz)
                print(f"ok    {case.where}: {case.name} ({decision.effect}, {decision.reason})")
            else:
                failed += 1
                print(f"FAIL  {why}")
    print(f"{total - failed} passed, {failed} failed ({bundle.version})")
    return 1 if failed else 0


def _replay(args: argparse.Namespace, load_config: LoadConfig) -> int:
    cfg = load_config(args.config).policy if args.config else PolicyConfig()
    bundle: PolicyBundle = load_bundle(args.policy, time.time())
    events = []
    try:
        with args.events.open("rb") as fh:
            for number, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        events.append(orjson.loads(line))
                    except orjson.JSONDecodeError:
                        raise CLIError(f"{args.events}:{number}: not a JSON object") from None
    except OSError as exc:
        raise CLIError(f"{args.events}: cannot read: {exc.strerror}") from None
    report = replay(bundle, (e for e in events if isinstance(e, dict)), cfg.tz)
    for (old, new, dataset, action, reason, rule), changes in report.groups():
        samples = ", ".join(c.request_id for c in changes[: args.samples])
        print(
            f"{len(changes):6d}  {old} -> {new}  {action} {dataset}  reason {reason}"
            f"{f'  rule {rule}' if rule else ''}  e.g. {samples}"
        )
        if args.all:
            for c in changes:
                print(f"        {c.ts} {c.request_id} {c.principal}")
    counts = ", ".join(f"{k} {v}" for k, v in sorted(report.counts().items())) or "none"
    print(
        f"{report.events} events: {report.decided} re-decided, {report.skipped} skipped "
        f"(no policy decision recorded), {report.unchanged} unchanged; changes: {counts} "
        f"(candidate {bundle.version})"
    )
    return 0


def _who(args: argparse.Namespace) -> str:
    import getpass

    return args.by or getpass.getuser()


async def _with_distribution(config: Any, action: Callable[[Any], Any]) -> Any:
    from gateway.policy.distribution import Distribution
    from gateway.state import StateUnavailable, open_backend

    if config.state.url == "memory":
        raise CLIError("state.url is memory: bundles need a shared state backend (redis://...)")
    backend = open_backend(config.state.url, config.state.prefix, **config.state.options())
    try:
        await backend.start()
        return await action(Distribution(backend, config.policy.reload_channel))
    except StateUnavailable as exc:
        raise Unreachable(f"state backend unreachable: {exc}") from None
    finally:
        await backend.close()


def _push(args: argparse.Namespace, load_config: LoadConfig) -> int:
    from gateway.policy.distribution import load_signing_key, read_directory, sign_bundle
    from gateway.policy.store import validate

    config = load_config(args.config)
    key = load_signing_key(config.policy.signing_key)  # ConfigError: exit 2
    if not args.directory.is_dir():
        raise CLIError(f"{args.directory}: not a directory")
    try:
        # The gateway's own start-up validation and policy tests: one code path.
        validate(args.directory, time.time(), config.policy.tz)
        content = read_directory(args.directory)
    except ConfigError as exc:
        raise Refused(f"{args.directory}: refused: {exc}") from None
    record = sign_bundle(content, key, by=_who(args), at=time.time(), message=args.message)
    activation = asyncio.run(_with_distribution(config, lambda d: d.push(record)))
    print(
        f"pushed {activation.version} (sequence {activation.seq}, "
        f"{len(content['tests'])} test file(s) passed, key {record['key_id']})"
    )
    return 0


def _history(args: argparse.Namespace, load_config: LoadConfig) -> int:
    from gateway.policy.grants import iso

    config = load_config(args.config)

    async def read(d: Any) -> tuple[Any, Any]:
        return await d.history(), await d.active()

    items, active = asyncio.run(_with_distribution(config, read))
    rows = [
        {**a.to_json(), "at": iso(a.at), "active": active is not None and a.seq == active[0]}
        for a in items
    ]
    emit(
        args,
        {"active": active[1] if active else None, "history": rows},
        lambda: table(
            [{**r, "active": "*" if r["active"] else ""} for r in rows],
            [
                ("seq", "SEQ"),
                ("version", "VERSION"),
                ("action", "ACTION"),
                ("by", "BY"),
                ("at", "AT"),
                ("active", "ACTIVE"),
                ("message", "MESSAGE"),
            ],
        ),
    )
    return 0


def _rollback(args: argparse.Namespace, load_config: LoadConfig) -> int:
    from gateway.policy.distribution import BundleRefused, load_public_keys

    config = load_config(args.config)
    public = load_public_keys(config.policy.public_keys)
    if not public:
        raise CLIError("policy.public_keys: not set (rollback verifies the bundle first)")

    async def roll(d: Any) -> Any:
        return await d.rollback(
            args.version, public, by=_who(args), at=time.time(), message=args.message
        )

    try:
        activation = asyncio.run(_with_distribution(config, roll))
    except LookupError:
        raise Refused(f"unknown version {args.version!r} (see `datagate policy history`)") from None
    except BundleRefused as exc:
        raise Refused(f"refused: {exc}") from None
    print(f"rolled back to {activation.version} (sequence {activation.seq})")
    return 0
