"""`datagate config check / print / schema`: validate a config without serving, show the
effective config (environment overrides applied, secrets redacted), describe it as JSON Schema."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from gateway.cli.output import EXIT_OK, Unreachable, emit
from gateway.config import Config, load_config
from gateway.configtree import json_schema, to_data
from gateway.errors import ConfigError, StateUnavailable


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "config", help="check, print or describe (JSON Schema) a gateway config"
    )
    sub = parser.add_subparsers(dest="config_command", metavar="SUBCOMMAND")
    sub.required = True

    check = sub.add_parser(
        "check",
        help="validate everything `run` would, without serving",
        description="Load the config as `datagate run` does (YAML, DATAGATE_SECTION__KEY "
        "overrides, secrets, TLS files), build the gateway from it (policy, catalog against "
        "upstreams and masking, detector model, incident sinks), load the token keys (JWKS "
        "files and URLs), check that the data dir, audit log and incident files can be "
        "written and that the state backend answers. Nothing is served. Exit 0 when `run` "
        "would start, 2 on a config error, 3 when Redis or a JWKS URL does not answer.",
    )
    check.add_argument("--config", required=True, type=Path, help="the YAML config file")
    check.add_argument(
        "--offline",
        action="store_true",
        help="do not contact the state backend or JWKS URLs (files are still checked)",
    )
    check.add_argument(
        "-o",
        "--output",
        choices=("table", "json"),
        default="table",
        help="table (a line per check, the default) or json",
    )

    show = sub.add_parser(
        "print",
        help="print the effective config: defaults filled in, overrides applied, secrets hidden",
        description="Print the config `run` would use: every section with its defaults, "
        "DATAGATE_SECTION__KEY environment overrides applied, paths resolved, and secrets "
        "redacted (inline secrets as <redacted>, {file: ...} and {env: ...} as the reference, "
        "URL passwords as <redacted>).",
    )
    show.add_argument("--config", required=True, type=Path, help="the YAML config file")
    show.add_argument(
        "-o",
        "--output",
        choices=("yaml", "json"),
        default="yaml",
        help="yaml (the default) or json",
    )

    schema = sub.add_parser(
        "schema",
        help="print the config's JSON Schema (for editors; shipped as deploy/datagate.schema.json)",
        description="The JSON Schema (2020-12) generated from the typed config tree. "
        "Regenerate the shipped copy with: datagate config schema --write "
        "deploy/datagate.schema.json",
    )
    schema.add_argument(
        "--write", type=Path, metavar="FILE", help="write the schema to FILE instead of stdout"
    )

    for p in (check, show, schema):
        p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run `datagate config SUBCOMMAND`."""
    if args.config_command == "schema":
        text = schema_text()
        if args.write is None:
            sys.stdout.write(text)
        else:
            args.write.write_text(text, encoding="utf-8")
        return EXIT_OK
    config = load_config(args.config)
    if args.config_command == "print":
        data = to_data(config)
        if args.output == "json":
            print(json.dumps(data, indent=2, ensure_ascii=False))
        else:
            yaml.safe_dump(data, sys.stdout, sort_keys=False, allow_unicode=True)
        return EXIT_OK
    from gateway import logs

    # As `run` logs: JSON lines on stderr, so stdout holds only the report.
    logs.configure(config.logging.level)
    try:
        checks = asyncio.run(preflight(config, offline=args.offline))
    finally:
        logs.flush()
    report = {"config": str(args.config), "ok": True, "checks": checks}
    emit(
        args,
        report,
        lambda: [f"{c['check']:<10} {c['detail']}" for c in checks] + [f"{args.config}: ok"],
    )
    return EXIT_OK


def schema_text() -> str:
    """The config's JSON Schema as the text shipped in deploy/datagate.schema.json."""
    schema = json_schema(Config, title="DataGate gateway config")
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


async def preflight(config: Config, *, offline: bool = False) -> list[dict[str, str]]:
    """What `run` checks before it listens, made with the gateway's own start-up parts; the
    first problem raises (ConfigError, or Unreachable for a service that does not answer).
    Returns a line per check that passed."""
    from gateway.app import Gateway

    done: list[dict[str, str]] = []

    def passed(check: str, detail: str) -> None:
        done.append({"check": check, "detail": detail})

    server, admin = config.server, config.admin
    tls = lambda t: " (TLS)" if t is not None else ""  # noqa: E731
    listeners = [
        f"data {server.host}:{server.port}{tls(server.tls)}",
        f"admin {admin.host}:{admin.port}{tls(admin.tls)}",
    ]
    if config.health is not None:
        listeners.append(f"health {config.health.host}:{config.health.port}")
    passed("config", f"parsed; listeners {', '.join(listeners)}; TLS files load")
    # The gateway's constructor loads and validates the policy (catalog upstreams and masking
    # strategies included), the detector model, the upstreams' TLS and the incident sinks.
    gateway = Gateway(config)
    bundle = gateway.policy.current
    passed(
        "policy",
        f"{config.policy.dir}: version {bundle.version}, "
        f"{len(bundle.catalog.datasets)} datasets, every upstream and masking strategy known",
    )
    passed("upstreams", ", ".join(f"{n} {u.url}" for n, u in config.upstreams.items()))
    passed("detection", _detection(config, gateway))
    try:
        passed("identity", await _identity(config, gateway, offline))
        passed("files", _files(config))
        passed("state", await _state(config, gateway, offline))
    finally:
        await gateway.state.close()
    return done


def _detection(config: Config, gateway: Any) -> str:
    if gateway.detector is None:
        return "off"
    path = config.detection.model.path
    if gateway.detector.model is not None:
        return f"on, model {path} loads"
    if path:
        # `run` starts like this too (with the same warning): say it where it is read.
        return f"on, rules and baselines only: the model {path} is MISSING"
    return "on, rules and baselines only (no model configured)"


async def _identity(config: Config, gateway: Any, offline: bool) -> str:
    """Every issuer's keys load; a JWKS file or URL that yields none would refuse every token."""
    if offline and any(i.jwks is not None and i.jwks.url for i in config.identity.issuers):
        return f"{len(config.identity.issuers)} issuer(s); JWKS URLs not fetched (--offline)"
    verifier = gateway.verifier
    await verifier.start()
    try:
        for index, issuer in enumerate(config.identity.issuers):
            source = verifier.jwks(issuer.issuer)
            if source is None:
                continue
            where = f"identity.issuers[{index}].jwks"
            if source.loaded_at is None:
                message = f"{where}: cannot load the key set from {source.where}"
                if issuer.jwks is not None and issuer.jwks.url:
                    raise Unreachable(message)
                raise ConfigError(message)
            if not source.keys:
                raise ConfigError(f"{where}: {source.where} holds no usable key")
    finally:
        await verifier.close()
    signing = ", a signing key for `datagate token`" if config.identity.signing_key else ""
    return f"{len(config.identity.issuers)} issuer(s), their keys load{signing}"


def _files(config: Config) -> str:
    """The data dir and everything written under it can be created and written."""
    written = [("data_dir", config.data_dir, True)]
    audit = config.audit
    signs = audit.enabled and audit.checkpoints is not None and audit.signing_key is not None
    if audit.enabled:
        written.append(("audit.path", audit.path, False))
        if audit.checkpoints is not None:
            written.append(("audit.checkpoints", audit.checkpoints, False))
    incidents = config.incidents
    if incidents.file is not None:
        written.append(("incidents.file.path", incidents.file.path, False))
    if incidents.webhook is not None:
        written.append(("incidents.webhook.spool", incidents.webhook.spool, True))
    for key, path, is_dir in written:
        _writable(key, path, is_dir)
    if signs:
        assert audit.signing_key is not None
        _signing_key(audit.signing_key, audit.generate_key)
    return "writable: " + ", ".join(str(path) for _, path, _ in written)


def _signing_key(path: Path, generate: bool) -> None:
    from gateway.audit.keys import load_private

    if path.exists():
        load_private(path, generate=False)
    elif not generate:
        raise ConfigError(f"audit.signing_key: {path} does not exist")
    else:
        _writable("audit.signing_key", path, False)


def _writable(key: str, path: Path, is_dir: bool) -> None:
    """`path` (a file, or a dir when `is_dir`) exists writable, or can be created: its
    nearest existing parent is a writable directory."""
    if path.exists():
        if is_dir and not path.is_dir():
            raise ConfigError(f"{key}: {path} is not a directory")
        if not is_dir and path.is_dir():
            raise ConfigError(f"{key}: {path} is a directory, not a file")
        if not os.access(path, os.W_OK | (os.X_OK if is_dir else 0)):
            raise ConfigError(f"{key}: {path} is not writable by this user")
        return
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{key}: cannot create {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}: cannot create {path}: {parent} is not writable by this user")


async def _state(config: Config, gateway: Any, offline: bool) -> str:
    if config.state.url == "memory":
        return "memory (one process; nothing shared)"
    if offline:
        return "not contacted (--offline)"
    try:
        await gateway.state.start()
    except StateUnavailable as exc:
        raise Unreachable(f"state.url: the state backend does not answer: {exc}") from None
    return f"{gateway.state.name} answers"
