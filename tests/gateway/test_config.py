"""Config loading: typed, validated, env-overridable, secrets never printed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import load_config, parse_config
from gateway.configtree import Secret, build, field
from gateway.errors import ConfigError

IDENTITY = {
    "issuers": [
        {"issuer": "t", "audience": "datagate", "algorithms": ["HS256"], "secret": "k" * 32}
    ]
}
MINIMAL = {"upstreams": {"demo": {"url": "http://127.0.0.1:8081"}}, "identity": IDENTITY}


def parse(data: dict, environ: dict | None = None) -> object:
    return parse_config(data, base_dir=Path("/srv/dg"), environ=environ or {})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "identity: is required"),
        ({"identity": IDENTITY}, "upstreams: is required"),
        ({**MINIMAL, "identity": {"issuers": []}}, "identity.issuers: must not be empty"),
        ({**MINIMAL, "sever": {}}, "sever: unknown key"),
        ({**MINIMAL, "server": {"prot": 1}}, "server.prot: unknown key"),
        ({**MINIMAL, "server": {"port": "80"}}, "server.port: expected an integer"),
        ({**MINIMAL, "server": {"port": 70000}}, "server.port: must be <= 65535"),
        ({**MINIMAL, "server": {"port": True}}, "server.port: expected an integer"),
        ({**MINIMAL, "server": {"access_log": "yes"}}, "server.access_log: expected true or false"),
        ({**MINIMAL, "server": {"trusted_proxies": ["10.0.0.0/33"]}}, "trusted_proxies[0]"),
        (
            {**MINIMAL, "upstreams": {"demo": {"url": "ftp://x"}}},
            "upstreams.demo.url: must be an http",
        ),
        ({**MINIMAL, "upstreams": {"demo": {}}}, "upstreams.demo.url: is required"),
        ({**MINIMAL, "upstreams": []}, "upstreams: expected a mapping"),
        ({**MINIMAL, "logging": {"level": "loud"}}, "logging.level: must be one of"),
        ({**MINIMAL, "state": {"prefix": ""}}, "state.prefix: must not be empty"),
        # Found by tests/fuzz/test_fuzz_config.py:
        (
            {**MINIMAL, "server": {"shutdown_timeout": float("nan")}},
            "server.shutdown_timeout: expected a finite number, got nan",
        ),
        (
            {**MINIMAL, "audit": {"flush_interval": 10**400}},
            "audit.flush_interval: expected a finite number, got 1000",
        ),
        ({**MINIMAL, "server": {"a b": 1}}, "server['a b']: unknown key"),
        ({**MINIMAL, "": {}}, "config['']: unknown key"),
        ({**MINIMAL, "server": {1: 1}}, "server[1]: unknown key"),
        ({**MINIMAL, "data_dir": "var\x00x"}, "data_dir: expected a path, got 'var"),
    ],
)
def test_bad_config_names_the_key_and_the_problem(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse(data)


def test_a_bad_key_from_the_environment_names_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        parse(MINIMAL, {"DATAGATE_SEVER__PORT": "9000"})
    assert str(info.value).startswith("sever: unknown key (known keys: access, admin, audit, ")
    assert str(info.value).endswith(" (set by DATAGATE_SEVER__PORT)")
    with pytest.raises(ConfigError) as info:
        parse(MINIMAL, {"DATAGATE_SERVER__PORT": "eighty"})
    assert str(info.value) == (
        "server.port: expected an integer, got 'eighty' (set by DATAGATE_SERVER__PORT)"
    )


def test_environment_overrides_use_the_datagate_prefix() -> None:
    config = parse(
        MINIMAL,
        {"DATAGATE_SERVER__PORT": "9000", "DATAGATE_STATE__URL": "redis://r:6379/0", "OTHER": "1"},
    )
    assert config.server.port == 9000
    assert config.state.url == "redis://r:6379/0"


def test_other_variables_with_the_prefix_are_left_alone() -> None:
    config = parse(
        MINIMAL,
        {"DATAGATE_ADMIN_TOKEN": "x", "DATAGATE_REQUIRE_REDIS": "1", "DATAGATE_DATA_DIR": "/d"},
    )
    assert config.data_dir == Path("/d")


def test_environment_overrides_are_validated_too() -> None:
    with pytest.raises(ConfigError, match=r"server\.port: expected an integer"):
        parse(MINIMAL, {"DATAGATE_SERVER__PORT": "eighty"})
    with pytest.raises(ConfigError, match=r"server\.bogus: unknown key"):
        parse(MINIMAL, {"DATAGATE_SERVER__BOGUS": "1"})


def test_relative_paths_resolve_against_the_config_folder() -> None:
    config = parse({**MINIMAL, "data_dir": "data"})
    assert config.data_dir == Path("/srv/dg/data")


def test_config_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("upstreams:\n  demo: {url: [}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:2: invalid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(scalar)


@dataclasses.dataclass(frozen=True)
class WithSecret:
    key: Secret = field(Secret(""))


def test_secrets_come_from_files_or_environment_and_never_print(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "key").write_text("s3cret-from-file\n")
    from_file = build(WithSecret, {"key": {"file": str(tmp_path / "key")}})
    assert from_file.key.reveal() == "s3cret-from-file"
    assert "s3cret" not in repr(from_file) and "s3cret" not in str(from_file.key)
    monkeypatch.setenv("DG_TEST_KEY", "s3cret-env")
    assert build(WithSecret, {"key": {"env": "DG_TEST_KEY"}}).key.reveal() == "s3cret-env"
    with pytest.raises(ConfigError, match="key: environment variable 'DG_NOPE' is not set"):
        build(WithSecret, {"key": {"env": "DG_NOPE"}})
    with pytest.raises(ConfigError, match="key: cannot read secret file"):
        build(WithSecret, {"key": {"file": str(tmp_path / "nope")}})
    with pytest.raises(ConfigError, match="key: expected a secret"):
        build(WithSecret, {"key": {"vault": "x"}})
    # Found by tests/fuzz/test_fuzz_config.py: these raised ValueError, not ConfigError.
    (tmp_path / "binary").write_bytes(b"\xff\xfe\x00")
    for ref in (str(tmp_path / "binary"), "key\x00file"):
        with pytest.raises(ConfigError) as info:
            build(WithSecret, {"key": {"file": ref}})
        assert str(info.value) == f"key: cannot read secret file {ref!r}: not a readable text file"


@given(st.dictionaries(st.text(min_size=1, max_size=8), st.integers() | st.text(), max_size=4))
def test_arbitrary_server_sections_are_accepted_or_refused_with_a_key(data: dict) -> None:
    try:
        parse({**MINIMAL, "server": data})
    except ConfigError as exc:
        assert str(exc).startswith(("server.", "server["))


def test_key_and_secret_files_are_read_from_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Relative key and secret files are found from the config file's folder, whatever the
    working directory (a service manager starts the gateway from `/`)."""
    import yaml
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    folder = tmp_path / "etc"
    (folder / "keys").mkdir(parents=True)
    public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    (folder / "keys" / "issuer.pem").write_bytes(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    (folder / "keys" / "hmac.txt").write_text("s" * 40 + "\n")
    issuers = [
        {
            "issuer": "rsa",
            "audience": "a",
            "algorithms": ["RS256"],
            "public_keys": [{"file": "keys/issuer.pem"}],
        },
        {
            "issuer": "hs",
            "audience": "a",
            "algorithms": ["HS256"],
            "secret": {"file": "keys/hmac.txt"},
        },
    ]
    path = folder / "datagate.yaml"
    path.write_text(yaml.safe_dump({**MINIMAL, "identity": {"issuers": issuers}}))
    monkeypatch.chdir(tmp_path)  # not the config's folder
    config = load_config(path, environ={})
    rsa_issuer, hs_issuer = config.identity.issuers
    assert rsa_issuer.public_keys[0].file == folder / "keys" / "issuer.pem"
    assert hs_issuer.secret is not None and hs_issuer.secret.reveal() == "s" * 40
    (folder / "keys" / "hmac.txt").unlink()
    with pytest.raises(ConfigError, match=r"issuers\[1\]\.secret: cannot read secret file"):
        load_config(path, environ={})
