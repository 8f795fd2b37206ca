"""Minting development tokens, and the `datagate token` command."""

from __future__ import annotations

import argparse
import types
from pathlib import Path
from typing import Any

import jwt
import pytest

from gateway.cli import token as token_cli
from gateway.errors import ConfigError
from gateway.identity.config import IdentityConfig
from gateway.identity.mint import mint_token
from gateway.identity.verifier import Verifier
from tests.identity.helpers import NOW, SECRET, Clock, KeyPair, hs_issuer, identity_config
from tests.tls.pki import make_pki


@pytest.fixture
def cfg() -> IdentityConfig:
    return identity_config([hs_issuer()], signing_key={"key": SECRET, "kid": "dev"})


async def test_minted_token_verifies(cfg: IdentityConfig, clock: Clock) -> None:
    token = mint_token(
        cfg,
        sub="alice",
        dept="health",
        clearance=3,
        roles=["analyst"],
        purpose="audit",
        purposes=["audit", "research"],
        ttl=120,
        now=NOW,
    )
    assert jwt.get_unverified_header(token)["kid"] == "dev"
    p = await Verifier(cfg, None, clock=clock).verify(token)
    assert (p.subject, p.department, p.clearance, p.purpose) == ("alice", "health", 3, "audit")
    assert p.roles == frozenset({"analyst"}) and p.purposes == frozenset({"audit", "research"})
    assert p.expires_at == NOW + 120 and p.token_id


async def test_minting_with_an_asymmetric_key_and_claim_mapping(
    tmp_path: Any, ed_key: KeyPair, clock: Clock
) -> None:
    pem = tmp_path / "ed.pem"
    pem.write_bytes(ed_key.public_pem)
    cfg = identity_config(
        [
            hs_issuer(),
            {
                "issuer": "dev",
                "audience": ["gw", "other"],
                "algorithms": ["EdDSA"],
                "public_keys": [{"file": str(pem)}],
                "claims": {"department": "org"},
            },
        ],
        signing_key={"key": ed_key.private_pem, "algorithm": "EdDSA", "issuer": "dev"},
    )
    token = mint_token(cfg, sub="bob", dept="tax", clearance=1, now=NOW)
    payload = jwt.decode(token, options={"verify_signature": False})
    assert (payload["iss"], payload["aud"], payload["org"]) == ("dev", "gw", "tax")
    assert (await Verifier(cfg, None, clock=clock).verify(token)).department == "tax"


def test_no_signing_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="the config has no signing key"):
        mint_token(identity_config([hs_issuer()]), sub="a", dept="b", clearance=1)


@pytest.mark.parametrize(
    ("over", "words"),
    [
        ({"sub": ""}, "sub"),
        ({"dept": None}, "dept"),
        ({"clearance": 5}, "clearance must be an integer 1..4"),
        ({"clearance": "3"}, "clearance"),
        ({"clearance": True}, "clearance"),
        ({"ttl": 0}, "ttl"),
        ({"ttl": 10**9}, "ttl"),
        ({"roles": "admin"}, "roles must be a list"),
        ({"roles": ["ok", ""]}, "roles"),
        ({"purposes": [3]}, "purposes"),
        ({"purpose": ""}, "purpose"),
    ],
)
def test_bad_arguments(cfg: IdentityConfig, over: dict[str, Any], words: str) -> None:
    args: dict[str, Any] = {"sub": "a", "dept": "b", "clearance": 2, **over}
    with pytest.raises(ValueError, match=words):
        mint_token(cfg, **args)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="datagate")
    token_cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


async def test_cli_prints_a_token(cfg: IdentityConfig, capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[str | None] = []

    def load_config(path: str | None) -> Any:
        seen.append(path)
        return types.SimpleNamespace(identity=cfg)

    args = parse(
        [
            "token",
            "--sub",
            "alice",
            "--dept",
            "health",
            "--clearance",
            "2",
            "--roles",
            "analyst, soc,",
            "--purposes",
            "audit,research",
            "--ttl",
            "60",
            "--config",
            "gw.yaml",
        ]
    )
    assert args.handler is not None
    assert token_cli.run(args, load_config) == 0
    assert seen == ["gw.yaml"]
    out = capsys.readouterr().out.strip()
    issued_at = jwt.decode(out, options={"verify_signature": False})["iat"]
    p = await Verifier(cfg, None, clock=Clock(issued_at)).verify(out)
    assert p.roles == frozenset({"analyst", "soc"})
    assert p.purposes == frozenset({"audit", "research"})
    assert p.expires_at == issued_at + 60


def test_cli_refuses_without_signing_key(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse(["token", "--sub", "a", "--dept", "b", "--clearance", "1"])
    no_key = types.SimpleNamespace(identity=identity_config([hs_issuer()]))
    assert token_cli.run(args, lambda path: no_key) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "datagate token: the config has no signing key (identity.signing_key)\n"
    )


def test_cli_bad_clearance_is_one_line(
    cfg: IdentityConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parse(["token", "--sub", "a", "--dept", "b", "--clearance", "9"])
    assert token_cli.run(args, lambda path: types.SimpleNamespace(identity=cfg)) == 2
    assert capsys.readouterr().err == ("datagate token: clearance must be an integer 1..4, got 9\n")


def test_cli_config_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    def broken(path: str | None) -> Any:
        raise ConfigError("identity.issuers: is required")

    args = parse(["token", "--sub", "a", "--dept", "b", "--clearance", "1"])
    assert token_cli.run(args, broken) == 2
    assert capsys.readouterr().err == "datagate token: identity.issuers: is required\n"


async def test_cli_binds_a_token_to_a_client_certificate(
    cfg: IdentityConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pki = make_pki(tmp_path)
    argv = ["token", "--sub", "etl", "--dept", "b", "--clearance", "1"]
    args = parse([*argv, "--bind-cert", str(pki.client.cert)])
    assert token_cli.run(args, lambda path: types.SimpleNamespace(identity=cfg)) == 0
    token = capsys.readouterr().out.strip()
    assert jwt.decode(token, options={"verify_signature": False})["cnf"] == {
        "x5t#S256": pki.client.thumbprint
    }
    issued_at = jwt.decode(token, options={"verify_signature": False})["iat"]
    principal = await Verifier(cfg, None, clock=Clock(issued_at)).verify(token)
    assert principal.cert_thumbprint == pki.client.thumbprint
    assert principal.cert_subject is None, "the subject comes from the connection only"


@pytest.mark.parametrize(
    "file, message",
    [
        ("missing.pem", "--bind-cert: cannot read '{path}': No such file or directory"),
        ("garbage.pem", "--bind-cert: '{path}' holds no PEM certificate"),
    ],
)
def test_cli_bind_cert_errors_are_one_line(
    cfg: IdentityConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str], file: str, message: str
) -> None:
    (tmp_path / "garbage.pem").write_text("junk")
    path = tmp_path / file
    args = parse(
        ["token", "--sub", "a", "--dept", "b", "--clearance", "1", "--bind-cert", str(path)]
    )
    assert token_cli.run(args, lambda _: types.SimpleNamespace(identity=cfg)) == 2
    assert capsys.readouterr().err == f"datagate token: {message.format(path=path)}\n"
