"""`datagate config check / print / schema`: what `run` would refuse, refused without serving;
the effective config with overrides and no secrets; a JSON Schema that stays in step."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from gateway.cli.config import schema_text
from gateway.config import load_config, parse_config
from gateway.errors import ConfigError
from tests.gateway.conftest import REPO, SECRET
from tests.support import delete_prefix

DATAGATE = str(Path(sys.executable).with_name("datagate"))
REDIS = "redis://127.0.0.1:6379/15"
SCHEMA_FILE = REPO / "deploy" / "datagate.schema.json"


def datagate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DATAGATE_")}
    return subprocess.run(
        [DATAGATE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**environ, **(env or {})},
    )


def write_config(tmp_path: Path, **sections: Any) -> Path:
    data: dict[str, Any] = {
        "upstreams": {"demo": {"url": "http://127.0.0.1:9"}},
        "server": {"host": "127.0.0.1", "port": 0},
        "admin": {"host": "127.0.0.1", "port": 0},
        "identity": {
            "issuers": [
                {"issuer": "t", "audience": "datagate", "algorithms": ["HS256"], "secret": SECRET}
            ]
        },
        "policy": {"dir": str(REPO / "policies"), "watch": False},
        "data_dir": str(tmp_path / "data"),
        **sections,
    }
    path = tmp_path / "datagate.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line that is not a log line (log lines are JSON or start with a date)."""
    lines = [
        line
        for line in result.stderr.splitlines()
        if line.strip() and not line.startswith("{") and not line[:4].isdigit()
    ]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- config check -------------------------------------------------------------------------------


def test_check_passes_a_config_run_would_start_with(tmp_path: Path) -> None:
    prefix = f"test:cfgcheck:{uuid.uuid4().hex}:"
    path = write_config(tmp_path, state={"url": REDIS, "prefix": prefix})
    try:
        result = datagate("config", "check", "--config", str(path))
    finally:
        delete_prefix(REDIS, prefix)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "4 datasets, every upstream and masking strategy known" in out
    assert "state      redis answers" in out
    assert out.endswith(f"{path}: ok\n")
    # Nothing was served and nothing of the audit log was written.
    assert not (tmp_path / "data").exists()


def test_check_json_lists_every_check(tmp_path: Path) -> None:
    result = datagate("config", "check", "--config", str(write_config(tmp_path)), "-o", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert [c["check"] for c in report["checks"]] == [
        "config",
        "policy",
        "upstreams",
        "detection",
        "identity",
        "files",
        "state",
    ]


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"server": {"port": "eighty"}}, "server.port: expected an integer"),
        ({"upstreams": {"other": {"url": "http://127.0.0.1:9"}}}, "names upstream 'demo'"),
        ({"policy": {"dir": "/nonexistent/policies"}}, "/nonexistent/policies"),
        (
            {"masking": {"pseudonym_secret": {"file": "/nonexistent/secret"}}},
            "masking.pseudonym_secret: cannot read secret file '/nonexistent/secret'",
        ),
        (
            {"server": {"tls": {"cert_file": "/nonexistent.pem", "key_file": "/nonexistent.key"}}},
            "server.tls",
        ),
    ],
)
def test_check_refuses_what_run_refuses(
    tmp_path: Path, sections: dict[str, Any], message: str
) -> None:
    path = write_config(tmp_path, **sections)
    checked = datagate("config", "check", "--config", str(path))
    assert checked.returncode == 2, checked.stderr
    assert message in error_line(checked)
    started = datagate("run", "--config", str(path))
    assert started.returncode == 2 and message in error_line(started)


def test_check_tells_a_missing_model_as_run_does(tmp_path: Path) -> None:
    # `run` starts without it (rules and baselines only, and a warning): so does the check,
    # saying so in its report.
    path = write_config(tmp_path, detection={"model": {"path": "/nonexistent/model.json"}})
    result = datagate("config", "check", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert "rules and baselines only: the model /nonexistent/model.json is MISSING" in (
        result.stdout
    )


def test_check_refuses_a_jwks_file_without_keys(tmp_path: Path) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text('{"keys": []}')
    issuer = {"issuer": "t", "audience": "datagate", "algorithms": ["RS256"]}
    path = write_config(tmp_path, identity={"issuers": [{**issuer, "jwks": {"file": str(jwks)}}]})
    result = datagate("config", "check", "--config", str(path))
    assert result.returncode == 2, result.stderr
    assert "identity.issuers[0].jwks.file: the key set has no keys" in error_line(result)
    jwks.write_text("not json")
    result = datagate("config", "check", "--config", str(path))
    assert result.returncode == 2
    assert "identity.issuers[0].jwks" in error_line(result)


def test_check_says_an_unreachable_jwks_url_is_unreachable(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/jwks.json"
    issuer = {"issuer": "t", "audience": "datagate", "algorithms": ["RS256"], "jwks": {"url": url}}
    path = write_config(tmp_path, identity={"issuers": [issuer]})
    result = datagate("config", "check", "--config", str(path))
    assert result.returncode == 3, result.stderr
    assert f"cannot load the key set from {url}" in error_line(result)
    offline = datagate("config", "check", "--config", str(path), "--offline")
    assert offline.returncode == 0, offline.stderr
    assert "JWKS URLs not fetched (--offline)" in offline.stdout


def test_check_says_redis_down_is_unreachable(tmp_path: Path) -> None:
    path = write_config(tmp_path, state={"url": f"redis://127.0.0.1:{closed_port()}/0"})
    result = datagate("config", "check", "--config", str(path))
    assert result.returncode == 3, result.stderr
    assert "state.url: the state backend does not answer" in error_line(result)
    offline = datagate("config", "check", "--config", str(path), "--offline")
    assert offline.returncode == 0 and "not contacted (--offline)" in offline.stdout


def test_check_refuses_a_data_dir_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    path = write_config(tmp_path, data_dir=str(blocker / "data"))
    result = datagate("config", "check", "--config", str(path))
    assert result.returncode == 2, result.stderr
    assert f"data_dir: cannot create {blocker / 'data'}: {blocker} is not a directory" in (
        error_line(result)
    )
    path = write_config(tmp_path, audit={"path": str(tmp_path)})
    result = datagate("config", "check", "--config", str(path))
    assert result.returncode == 2
    assert f"audit.path: {tmp_path} is a directory, not a file" in error_line(result)


def test_check_refuses_a_missing_audit_key_it_may_not_generate(tmp_path: Path) -> None:
    key = tmp_path / "none.pem"
    path = write_config(tmp_path, audit={"signing_key": str(key), "generate_key": False})
    result = datagate("config", "check", "--config", str(path))
    assert result.returncode == 2
    assert f"audit.signing_key: {key} does not exist" in error_line(result)


def test_check_names_the_variable_of_a_bad_override(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    result = datagate("config", "check", "--config", str(path), env={"DATAGATE_SERVER__PORT": "x"})
    assert result.returncode == 2
    assert "server.port: expected an integer, got 'x' (set by DATAGATE_SERVER__PORT)" in (
        error_line(result)
    )


# --- config print -------------------------------------------------------------------------------


def test_print_applies_overrides_and_redacts_every_secret(tmp_path: Path) -> None:
    secret_file = tmp_path / "pseudonym.txt"
    secret_file.write_text("pseudonym-secret-from-a-file-0123456789")
    path = write_config(
        tmp_path,
        masking={"pseudonym_secret": {"file": str(secret_file)}},
        incidents={"webhook": {"url": "https://soc.example/hook", "token": {"env": "HOOK_TOKEN"}}},
    )
    env = {
        "DATAGATE_SERVER__PORT": "8443",
        "DATAGATE_STATE__URL": "redis://:hunter2-password@10.0.0.5:6379/0",
        "HOOK_TOKEN": "webhook-token-value",
    }
    result = datagate("config", "print", "--config", str(path), env=env)
    assert result.returncode == 0, result.stderr
    for secret in (SECRET, "pseudonym-secret-from-a-file", "hunter2-password", "webhook-token"):
        assert secret not in result.stdout
    printed = yaml.safe_load(result.stdout)
    assert printed["server"]["port"] == 8443
    assert printed["state"]["url"] == "redis://:<redacted>@10.0.0.5:6379/0"
    assert printed["identity"]["issuers"][0]["secret"] == "<redacted>"
    assert printed["masking"]["pseudonym_secret"] == {"file": str(secret_file)}
    assert printed["incidents"]["webhook"]["token"] == {"env": "HOOK_TOKEN"}
    # Every section, defaults filled in; paths resolved.
    for section in ("limits", "detection", "breaker", "audit", "incidents", "logging", "health"):
        assert section in printed
    assert printed["audit"]["path"] == str(tmp_path / "data" / "var/audit/audit.jsonl")
    as_json = datagate("config", "print", "--config", str(path), "-o", "json", env=env)
    assert json.loads(as_json.stdout) == printed


def test_printed_config_loads_back_to_the_same_config(tmp_path: Path) -> None:
    secret_file = tmp_path / "hs.txt"
    secret_file.write_text(SECRET)
    issuer = {"issuer": "t", "audience": "d", "algorithms": ["HS256"], "secret": {"file": "hs.txt"}}
    path = write_config(tmp_path, identity={"issuers": [issuer]})
    result = datagate("config", "print", "--config", str(path))
    again = tmp_path / "again.yaml"
    again.write_text(result.stdout)
    assert load_config(again, environ={}) == load_config(path, environ={})


# --- config schema ------------------------------------------------------------------------------


def test_the_shipped_schema_is_the_generated_one() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(), (
        "deploy/datagate.schema.json is out of date: "
        "datagate config schema --write deploy/datagate.schema.json"
    )
    result = datagate("config", "schema")
    assert result.returncode == 0 and result.stdout == schema_text()


def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_shipped_configs_follow_the_schema() -> None:
    validator = _validator()
    configmap = yaml.safe_load((REPO / "deploy/kubernetes/configmap.yaml").read_text())
    for data in (
        yaml.safe_load((REPO / "deploy/datagate.yaml").read_text()),
        yaml.safe_load((REPO / "gateway/demo/config.yaml").read_text()),
        yaml.safe_load(configmap["data"]["datagate.yaml"]),
        yaml.safe_load(datagate("demo", "--print-config").stdout),
    ):
        assert list(validator.iter_errors(data)) == []


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"sever": {}}, []),
        ({"server": {"port": "eighty"}}, ["server", "port"]),
        ({"server": {"port": 70000}}, ["server", "port"]),
        ({"logging": {"level": "loud"}}, ["logging", "level"]),
        ({"identity": {"issuers": []}}, ["identity", "issuers"]),
        ({"masking": {"pseudonym_secret": {"vault": "x"}}}, ["masking", "pseudonym_secret"]),
        ({"limits": {"per_principal": {"window": 60}}}, ["limits", "per_principal"]),
    ],
)
def test_the_schema_refuses_what_the_loader_refuses(
    tmp_path: Path, change: dict[str, Any], where: list[str]
) -> None:
    data = yaml.safe_load(write_config(tmp_path).read_text())
    assert list(_validator().iter_errors(data)) == []
    data.update(change)
    errors = list(_validator().iter_errors(data))
    assert errors and list(errors[0].absolute_path)[: len(where)] == where
    with pytest.raises(ConfigError):
        parse_config(data, base_dir=tmp_path, environ={})
