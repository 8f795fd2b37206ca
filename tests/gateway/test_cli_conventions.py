"""CLI conventions: --version, help on every option, subcommand usage on mistakes, shell
completion, `-o json|table`, and the documented exit codes against a running gateway."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway import __version__
from gateway.audit.writer import AuditWriter
from gateway.cli import build_parser, main
from gateway.identity.mint import mint_token
from tests.gateway.conftest import CATALOG, closed_port, gateway_config, running_gateway

DATAGATE = str(Path(sys.executable).with_name("datagate"))


def datagate(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DATAGATE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **env},
    )


def _parsers(
    parser: argparse.ArgumentParser, name: str = "datagate"
) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(name, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, child in action.choices.items():
                found += _parsers(child, f"{name} {sub}")
    return found


def test_version() -> None:
    result = datagate("--version")
    assert result.returncode == 0 and result.stdout == f"datagate {__version__}\n"


def test_every_command_and_option_has_help() -> None:
    missing = []
    for name, parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {a.dest: a.help for a in action._choices_actions}
                missing += [f"{name} {sub}" for sub in action.choices if not helps.get(sub)]
            elif action.help in (None, "", argparse.SUPPRESS):
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


@pytest.mark.parametrize(
    ("argv", "usage"),
    [
        (["grants", "list", "--bogus"], "usage: datagate grants list"),
        (["incidents", "show", "inc-1", "--nope"], "usage: datagate incidents show"),
        (["config", "check", "--config", "x.yaml", "--extra"], "usage: datagate config check"),
        (["audit", "verify", "a.jsonl", "--what"], "usage: datagate audit verify"),
        (["policy", "explain", "--path", "/x", "--frob"], "usage: datagate policy explain"),
        (["grants", "list", "-o", "xml"], "usage: datagate grants list"),
        (["grants"], "usage: datagate grants"),
    ],
)
def test_a_mistake_on_a_subcommand_prints_its_usage(argv: list[str], usage: str) -> None:
    result = datagate(*argv)
    assert result.returncode == 2
    assert result.stderr.startswith(usage), result.stderr
    assert "error:" in result.stderr and "Traceback" not in result.stderr


def test_shell_completion() -> None:
    script = datagate("completion", "bash")
    assert script.returncode == 0
    assert "complete" in script.stdout and "datagate" in script.stdout
    for shell in ("zsh", "fish"):
        assert datagate("completion", shell).stdout.strip()
    # What the shell code asks: complete "datagate incidents list --status ".
    line = "datagate incidents list --status "
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"datagate-completion-{os.getpid()}"
    try:
        done = datagate(
            _ARGCOMPLETE="1",
            COMP_LINE=line,
            COMP_POINT=str(len(line)),
            _ARGCOMPLETE_STDOUT_FILENAME=str(out),
        )
        assert done.returncode == 0, done.stderr
        assert set(out.read_text().split("\x0b")) == {"new", "acknowledged", "resolved"}
        line = "datagate gra"
        datagate(
            _ARGCOMPLETE="1",
            COMP_LINE=line,
            COMP_POINT=str(len(line)),
            _ARGCOMPLETE_STDOUT_FILENAME=str(out),
        )
        assert out.read_text().strip() == "grants"
    finally:
        out.unlink(missing_ok=True)


# --- against a running gateway's admin API ------------------------------------------------------


@pytest.fixture
async def admin(tmp_path: Path, upstream: Any) -> Any:
    config = gateway_config(tmp_path, {"up": upstream.url, "dead": upstream.url}, CATALOG)
    async with running_gateway(config) as running:
        token = mint_token(config.identity, sub="soc1", dept="soc", clearance=4, roles=["soc"])
        analyst = mint_token(config.identity, sub="bob", dept="x", clearance=1)
        yield running, token, analyst


async def cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def test_lists_and_shows_as_tables_and_json(
    admin: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    running, token, _ = admin
    api = ["--url", running.admin_url, "--token", token]
    assert await cli("breakers", "list", *api) == 0
    assert capsys.readouterr().out == "no breakers open\n"
    assert await cli("breakers", "open", "dataset", "open", "--note", "n", "--forced", *api) == 0
    capsys.readouterr()
    assert await cli("breakers", "list", *api) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["BREAKER", "STATE", "UNTIL", "TRIPS", "BY", "INCIDENT", "NOTE"]
    assert table[1].split()[:2] == ["dataset:open", "forced_open"]
    assert await cli("breakers", "list", "-o", "json", *api) == 0
    (breaker,) = json.loads(capsys.readouterr().out)["breakers"]
    assert breaker["scope"] == "dataset" and breaker["key"] == "open"

    grant = ["--department", "d", "--dataset", "open", "--purpose", "p", "--duration", "1h"]
    assert await cli("grants", "add", *grant, "--reason", "r", *api) == 0
    capsys.readouterr()
    assert await cli("grants", "list", "--output", "json", *api) == 0
    (listed,) = json.loads(capsys.readouterr().out)["grants"]
    assert listed["department"] == "d" and listed["state"] == "active"
    assert await cli("grants", "list", *api) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.startswith("ID") and row.startswith(f"{listed['id']}  active")

    assert await cli("incidents", "list", "-o", "json", *api) == 0
    incidents = json.loads(capsys.readouterr().out)["incidents"]
    assert await cli("incidents", "list", *api) == 0
    out = capsys.readouterr().out
    assert out == "no incidents\n" if not incidents else out.startswith("ID ")


async def test_admin_exit_codes(admin: Any, capsys: pytest.CaptureFixture[str]) -> None:
    running, token, analyst = admin
    api = ["--url", running.admin_url, "--token", token]
    # 1: the API said no (not found, forbidden).
    assert await cli("incidents", "show", "inc-none", *api) == 1
    assert "not_found" in capsys.readouterr().err
    assert await cli("grants", "list", "--url", running.admin_url, "--token", analyst) == 1
    assert "forbidden" in capsys.readouterr().err
    # 2: the request was wrong (a bad value, a missing token).
    bad = ["--department", "d", "--dataset", "open", "--purpose", "p", "--reason", "r"]
    assert await cli("grants", "add", *bad, "--expires-at", "tomorrow", *api) == 2
    assert "bad_request" in capsys.readouterr().err
    assert await cli("grants", "list", "--url", running.admin_url, "--token", "") == 2
    assert "no admin token" in capsys.readouterr().err
    # 3: nobody answers.
    down = f"http://127.0.0.1:{closed_port()}"
    assert await cli("incidents", "list", "--url", down, "--token", token) == 3
    assert f"cannot reach the admin API at {down}" in capsys.readouterr().err


# --- audit verify -------------------------------------------------------------------------------


async def test_audit_verify_tells_empty_and_foreign_files_from_tampering(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.audit.config import AuditConfig

    log = tmp_path / "audit.jsonl"
    writer = AuditWriter(AuditConfig(path=log, checkpoints=None, signing_key=None, fsync=False))
    await writer.start()
    for n in range(3):
        writer.append({"n": n})
    await writer.close()
    assert main(["audit", "verify", str(log)]) == 0
    assert "ok, 3 records" in capsys.readouterr().out

    tampered = tmp_path / "tampered.jsonl"
    tampered.write_bytes(log.read_bytes().replace(b'"n":1', b'"n":7'))
    assert main(["audit", "verify", str(tampered)]) == 1
    assert "line 2: its hash does not match its content" in capsys.readouterr().err

    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert main(["audit", "verify", str(empty)]) == 1
    err = capsys.readouterr()
    assert "empty: no records to verify" in err.err and "ok" not in err.out

    foreign = tmp_path / "access.log"
    foreign.write_text('127.0.0.1 - - "GET / HTTP/1.1" 200\n{"just": "json"}\n')
    assert main(["audit", "verify", str(foreign)]) == 2
    assert "not an audit log: no line carries the chain fields seq, prev, hash" in (
        capsys.readouterr().err
    )
    # A log whose first record was destroyed is tampering, not a foreign file.
    cut = tmp_path / "cut.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    cut.write_bytes(b"garbage\n" + b"".join(lines[1:]))
    assert main(["audit", "verify", str(cut)]) == 1
    assert "line 1: not valid JSON" in capsys.readouterr().err
