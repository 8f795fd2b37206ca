"""`datagate policy ...` and `datagate grants ...`, run through their argument parsers."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.admin.app import PRINCIPAL
from gateway.cli import grants as grants_cli
from gateway.cli import load_config
from gateway.cli import policy as policy_cli
from gateway.cli.adminclient import CLIError
from gateway.errors import ConfigError
from gateway.identity.principal import Principal
from gateway.policy.admin import routes
from gateway.policy.bundle import load_bundle
from gateway.policy.config import PolicyConfig
from gateway.policy.grants import GrantStore
from gateway.policy.store import PolicyStore
from gateway.state import MemoryBackend


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="datagate")
    sub = parser.add_subparsers(dest="command", required=True)
    policy_cli.register(sub)
    grants_cli.register(sub)
    return parser.parse_args(list(argv))


def _no_config(path: str | None) -> Any:
    raise AssertionError("no config expected")


def _policy(*argv: str, load_config: Callable[[str | None], Any] = _no_config) -> int:
    return policy_cli.run(_parse("policy", *argv), load_config)


def test_check_ok(policy_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _policy("check", "--dir", str(policy_dir)) == 0
    assert capsys.readouterr().out.endswith("4 datasets, 6 rows: ok\n")


def test_check_reports_problems(policy_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = policy_dir / "policy.csv"
    csv.write_text(csv.read_text() + "p, dept:x, populaton, read, allow, a, *, *, *\n")
    assert _policy("check", "--dir", str(policy_dir)) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{csv}:27: unknown department 'x': this row can never match"
    assert out[1] == f"{csv}:27: unknown dataset 'populaton': this row can never match"
    assert out[2].endswith(": 2 problem(s)")


def test_check_syntax_error_is_one_line(
    policy_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (policy_dir / "policy.csv").write_text("\np, dept:x, population, read, maybe\n")
    assert _policy("check", "--dir", str(policy_dir)) == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"datagate: {policy_dir / 'policy.csv'}:2: effect must be allow or deny, got 'maybe'\n"
    )


def test_check_uses_the_config_policy_dir(
    policy_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = load_config(None)
    config = dataclasses.replace(demo, policy=dataclasses.replace(demo.policy, dir=policy_dir))
    assert _policy("check", "--config", "gw.yaml", load_config=lambda p: config) == 0
    assert str(policy_dir) in capsys.readouterr().out


def test_explain_allow_with_masked_fields(
    policy_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _policy(
        "explain",
        "--dir",
        str(policy_dir),
        "--sub",
        "clerk-zhao",
        "--dept",
        "civil-affairs",
        "--clearance",
        "2",
        "--purpose",
        "benefit-eligibility",
        "--path",
        "/api/population/persons",
        "--time",
        "2026-01-05T10:00:00+00:00",
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "decision: allow\n" in out and "reason:   policy_allow\n" in out
    assert f"rule:     {policy_dir / 'policy.csv'}:14  p, dept:civil-affairs, population" in out
    assert "masked:   name (level 3, name), id_card (level 3, resident_id)" in out
    assert "gender" not in out


def test_explain_deny(policy_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = _policy(
        "explain",
        "--dir",
        str(policy_dir),
        "--sub",
        "contractor-017",
        "--dept",
        "health",
        "--clearance",
        "4",
        "--path",
        "/api/medical/records/R1",
        "--method",
        "GET",
    )
    out = capsys.readouterr().out
    assert code == 1  # a deny is a negative answer
    assert "decision: deny\n" in out and "reason:   explicit_deny\n" in out
    assert f"{policy_dir / 'policy.csv'}:22  p, user:contractor-017, *, *, deny" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sub", "a", "--path", "/api/medical/x"], "give --token, or --dept, --clearance"),
        (
            ["--sub", "a", "--dept", "b", "--clearance", "2", "--path", "/nowhere/x"],
            "no dataset route matches '/nowhere/x'",
        ),
        (
            ["--token", "abc", "--path", "/api/medical/x"],
            "--token needs --config (its identity section verifies the token)",
        ),
        (
            [
                "--sub",
                "a",
                "--dept",
                "b",
                "--clearance",
                "2",
                "--path",
                "/api/medical/x",
                "--time",
                "noon",
            ],
            "--time: not an ISO 8601 time: 'noon'",
        ),
    ],
)
def test_explain_bad_input(policy_dir: Path, args: list[str], message: str) -> None:
    with pytest.raises(CLIError) as err:
        _policy("explain", "--dir", str(policy_dir), *args)
    assert str(err.value) == message


def test_test_runs_shipped_cases(policy_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _policy("test", "--dir", str(policy_dir)) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith("23 passed, 0 failed")


def test_test_reports_failures(
    policy_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = tmp_path / "mine.yaml"
    cases.write_text(
        "cases:\n"
        "  - name: police read medical\n"
        "    principal: {sub: a, dept: public-security, clearance: 4}\n"
        "    request: {path: /api/medical/records/1}\n"
        "    expect: allow\n"
    )
    assert _policy("test", "--dir", str(policy_dir), str(cases)) == 1
    out = capsys.readouterr().out
    assert (
        f"FAIL  {cases}:2: case 'police read medical': expected decision 'allow' but got 'deny'"
        in out
    )


CASE = (
    "cases:\n  - name: x\n    principal: {principal}\n    request: {{path: /x}}\n"
    "    expect: {expect}\n"
)


@pytest.mark.parametrize(
    "text, message",
    [
        ("cases: [\n", ":2: invalid YAML"),
        ("tests: []\n", ":1: expected a mapping with a 'cases' list"),
        (
            CASE.format(principal="{sub: a, dept: b, clearance: 9}", expect="allow"),
            ":2: principal.clearance: expected an integer 1..4",
        ),
        (
            CASE.format(principal="{sub: a, dept: b, clearance: 1}", expect="maybe"),
            ":2: expect.decision: must be allow or deny",
        ),
        (
            CASE.format(principal="{sub: a, dept: b, clearance: 1, age: 3}", expect="allow"),
            ":2: principal.age: unknown key",
        ),
    ],
)
def test_bad_case_files(policy_dir: Path, tmp_path: Path, text: str, message: str) -> None:

    cases = tmp_path / "bad.yaml"
    cases.write_text(text)
    with pytest.raises(ConfigError) as err:
        _policy("test", "--dir", str(policy_dir), str(cases))
    assert str(err.value).startswith(f"{cases}{message}")


def _event(
    request_id: str, sub: str, dept: str, clearance: int, path: str, **kw: Any
) -> dict[str, Any]:
    return {
        "ts": "2026-01-05T10:00:00.000+00:00",
        "request_id": request_id,
        "principal": sub,
        "department": dept,
        "clearance": clearance,
        "method": "GET",
        "path": path,
        "dataset": None,
        "action": None,
        "purpose": None,
        "decision": "allow",
        "error": None,
        "status": 200,
        **kw,
    }


def test_replay_prints_changes(
    policy_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "audit.jsonl"
    lines = [
        _event("r1", "officer-wang", "public-security", 3, "/api/population/persons/1"),
        _event("r2", "officer-li", "public-security", 3, "/api/population/persons"),
        _event("r3", "clerk-zhao", "civil-affairs", 2, "/api/enterprise/companies"),
        _event(
            "r4",
            "x",
            "civil-affairs",
            2,
            "/api/medical/records/1",
            decision="deny",
            error="forbidden",
            status=403,
        ),
        _event(
            "r5",
            "y",
            "nowhere",
            1,
            "/api/population/x",
            decision="deny",
            error="unauthenticated",
            status=401,
        ),
        _event(
            "r6",
            "clerk-sun",
            "taxation",
            2,
            "/api/population/persons/1",
            purpose="tax-audit",
            grant_id="g-1",
        ),
    ]
    events.write_text("\n".join(json.dumps(e) for e in lines) + "\n")
    candidate = policy_dir
    csv = candidate / "policy.csv"
    csv.write_text(
        csv.read_text()
        + "p, dept:public-security, population, read|list, deny\np, user:clerk-sun, *, *, deny\n"
    )
    assert _policy("replay", "--events", str(events), "--policy", str(candidate)) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"     1  allow -> deny  read population  reason explicit_deny  rule {csv}:27  e.g. r1",
        f"     1  allow -> deny  list population  reason explicit_deny  rule {csv}:27  e.g. r2",
        f"     1  allow -> deny  read population  reason explicit_deny  rule {csv}:28  e.g. r6",
        "6 events: 5 re-decided, 1 skipped (no policy decision recorded), 2 unchanged; "
        f"changes: allow->deny 3 (candidate {load_bundle(candidate, 0).version})",
    ]


def test_replay_bad_event_line(policy_dir: Path, tmp_path: Path) -> None:
    events = tmp_path / "audit.jsonl"
    events.write_text('{"ts": 1}\nnot json\n')
    with pytest.raises(CLIError, match=r"audit.jsonl:2: not a JSON object"):
        _policy("replay", "--events", str(events), "--policy", str(policy_dir))


async def test_grants_cli_against_the_admin_api(
    policy_dir: Path,
    aiohttp_client: Callable[[web.Application], Awaitable[TestClient]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    backend = MemoryBackend()
    store = PolicyStore(PolicyConfig(dir=policy_dir, watch=False))
    grants = GrantStore(
        backend,
        catalog=lambda: store.current.catalog,
        lifetimes=PolicyConfig().grant_max_lifetime,
        clock=__import__("time").time,
    )
    await grants.start()

    @web.middleware
    async def authenticated(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        request[PRINCIPAL] = Principal("sec-officer", "security", 4)
        return await handler(request)

    app = web.Application(middlewares=[authenticated])
    app.add_routes(routes(store, grants, __import__("time").time))
    client = await aiohttp_client(app)
    url = str(client.make_url("/")).rstrip("/")

    def grants_cmd(*argv: str) -> int:
        return grants_cli.run(_parse("grants", *argv, "--url", url, "--token", "t"))

    add = (
        "add",
        "--department",
        "taxation",
        "--dataset",
        "population",
        "--actions",
        "read",
        "--purpose",
        "tax-audit",
        "--duration",
        "8h",
        "--reason",
        "case 17",
    )
    assert await asyncio.to_thread(grants_cmd, *add) == 0
    (added,) = _cli_lines(capsys)
    assert (
        added.startswith("added g-")
        and "department taxation  population  read  purpose tax-audit" in added
    )
    gid = added.split()[1]
    assert await asyncio.to_thread(grants_cmd, "list") == 0
    assert _cli_lines(capsys)[1].startswith(f"{gid}  active")  # under the header
    too_long = (*add[:-4], "--duration", "4d", "--reason", "x")
    with pytest.raises(
        CLIError,
        match=r"admin API refused POST /grants: bad_request: expires_at: a grant on level-3",
    ):
        await asyncio.to_thread(grants_cmd, *too_long)
    assert await asyncio.to_thread(grants_cmd, "revoke", gid) == 0
    assert _cli_lines(capsys)[0].startswith(f"revoked {gid}")
    with pytest.raises(CLIError, match=r"refused DELETE /grants/.*: not_found"):
        await asyncio.to_thread(grants_cmd, "revoke", gid)
    await grants.close()
    await backend.close()


def _cli_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The command's own output, without the server's log lines (which start with a date)."""
    return [line for line in capsys.readouterr().out.splitlines() if not line[:4].isdigit()]


@pytest.mark.parametrize("text", ["0", "5x", "h", "-3h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(CLIError, match="--duration: expected a positive number with s, m, h or d"):
        grants_cli.duration(text)


def test_durations() -> None:
    assert [grants_cli.duration(t) for t in ("90", "90s", "15m", "8h", "3d")] == [
        90,
        90,
        900,
        28800,
        259200,
    ]


def _identity() -> Any:
    from gateway.configtree import build
    from gateway.identity.config import IdentityConfig

    secret = "policy-cli-test-secret-0123456789abcdef"
    return build(
        IdentityConfig,
        {
            "issuers": [
                {
                    "issuer": "test",
                    "audience": "datagate",
                    "algorithms": ["HS256"],
                    "secret": secret,
                }
            ],
            "signing_key": {"key": secret},
        },
        "identity",
    )


def test_explain_with_a_verified_token(
    policy_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.identity.mint import mint_token

    identity = _identity()
    config = SimpleNamespace(
        policy=PolicyConfig(dir=policy_dir), identity=identity, state=SimpleNamespace(url="memory")
    )
    token = mint_token(identity, sub="dr-chen", dept="health", clearance=4)
    code = _policy(
        "explain",
        "--config",
        "gw.yaml",
        "--token",
        token,
        "--path",
        "/api/medical/records/R1",
        load_config=lambda p: config,
    )
    out = capsys.readouterr().out
    assert code == 0 and "reason:   owner\n" in out and "dr-chen (health, clearance 4)" in out
    with pytest.raises(CLIError, match=r"^token refused \(bad_signature\): "):
        _policy(
            "explain",
            "--config",
            "gw.yaml",
            "--token",
            token[:-3] + "AAA",
            "--path",
            "/api/medical/records/R1",
            load_config=lambda p: config,
        )
    with pytest.raises(CLIError, match=r"^--purpose 'spying': "):
        _policy(
            "explain",
            "--config",
            "gw.yaml",
            "--token",
            token,
            "--purpose",
            "spying",
            "--path",
            "/api/medical/records/R1",
            load_config=lambda p: config,
        )
