"""TLS config: every bad certificate, key, password or CA file is one config error naming its
key, before anything starts; paths are found from the config file's folder."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import load_config, parse_config
from gateway.errors import ConfigError
from tests.tls.pki import PKI

SECRET = "tls-config-tests-signing-key-0123456789abcdef"


def data(**sections: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "upstreams": {"up": {"url": "https://127.0.0.1:9443"}},
        "identity": {
            "issuers": [
                {"issuer": "t", "audience": "datagate", "algorithms": ["HS256"], "secret": SECRET}
            ]
        },
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return base


def refused(tmp_path: Path, **sections: Any) -> str:
    with pytest.raises(ConfigError) as err:
        parse_config(data(**sections), base_dir=tmp_path, environ={})
    return str(err.value)


@pytest.fixture
def files(tmp_path: Path, pki: PKI) -> dict[str, str]:
    """The session's certificates, plus a garbage file and an encrypted copy of the key."""
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    encrypted = pki.ca.server("encrypted-server", password="s3cret")
    return {
        "cert": str(pki.server.cert),
        "key": str(pki.server.key),
        "other_key": str(pki.colleague.key),
        "ca": str(pki.ca.file),
        "garbage": str(garbage),
        "missing": str(tmp_path / "missing.pem"),
        "enc_cert": str(encrypted.cert),
        "enc_key": str(encrypted.key),
        "client_cert": str(pki.gateway_client.cert),
        "client_key": str(pki.gateway_client.key),
    }


def listener(files: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"tls": {"cert_file": files["cert"], "key_file": files["key"], **extra}}


def test_a_good_listener_and_upstream_config_loads(tmp_path: Path, files: dict[str, str]) -> None:
    config = parse_config(
        data(
            server=listener(files, client_auth="required", client_ca_file=files["ca"]),
            admin=listener(files, min_version=1.3),
            upstreams={"up": {"url": "https://127.0.0.1:9443", "tls": {"ca_file": files["ca"]}}},
        ),
        base_dir=tmp_path,
        environ={},
    )
    assert config.server.tls is not None and config.server.tls.client_auth == "required"
    assert config.admin.tls is not None and config.admin.tls.min_version == 1.3
    assert config.upstreams["up"].tls is not None


@pytest.mark.parametrize(
    "tls, message",
    [
        ({"key_file": "{key}"}, "server.tls.cert_file: is required"),
        ({"cert_file": "{cert}"}, "server.tls.key_file: is required"),
        (
            {"cert_file": "{missing}", "key_file": "{key}"},
            "server.tls.cert_file: cannot read '{missing}': No such file or directory",
        ),
        (
            {"cert_file": "{garbage}", "key_file": "{key}"},
            "server.tls.cert_file: '{garbage}' holds no PEM certificate",
        ),
        (
            {"cert_file": "{cert}", "key_file": "{missing}"},
            "server.tls.key_file: cannot read '{missing}': No such file or directory",
        ),
        (
            {"cert_file": "{cert}", "key_file": "{garbage}"},
            "server.tls.key_file: '{garbage}' holds no PEM private key",
        ),
        (
            # A certificate where the key should be.
            {"cert_file": "{cert}", "key_file": "{cert}"},
            "server.tls.key_file: '{cert}' holds no PEM private key",
        ),
        (
            {"cert_file": "{cert}", "key_file": "{other_key}"},
            "server.tls.key_file: the key in '{other_key}' does not match the certificate "
            "in '{cert}'",
        ),
        (
            {"cert_file": "{enc_cert}", "key_file": "{enc_key}"},
            "server.tls.key_password: '{enc_key}' is encrypted; give its key_password",
        ),
        (
            {"cert_file": "{enc_cert}", "key_file": "{enc_key}", "key_password": "wrong"},
            "server.tls.key_password: cannot decrypt '{enc_key}' (wrong password?)",
        ),
        (
            {"cert_file": "{cert}", "key_file": "{key}", "key_password": "s3cret"},
            "server.tls.key_password: '{key}' is not encrypted; remove key_password",
        ),
        (
            {"cert_file": "{cert}", "key_file": "{key}", "key_password": {"env": "NOPE_TLS_PW"}},
            "server.tls.key_password: environment variable 'NOPE_TLS_PW' is not set",
        ),
        (
            {"cert_file": "{cert}", "key_file": "{key}", "min_version": 1.1},
            "server.tls.min_version: must be one of 1.2, 1.3, got 1.1",
        ),
        (
            {"cert_file": "{cert}", "key_file": "{key}", "min_version": "1.2"},
            "server.tls.min_version: expected a number, got '1.2'",
        ),
        (
            {"cert_file": "{cert}", "key_file": "{key}", "client_auth": "sometimes"},
            "server.tls.client_auth: must be one of 'none', 'optional', 'required', "
            "got 'sometimes'",
        ),
        (
            {"cert_file": "{cert}", "key_file": "{key}", "client_auth": "required"},
            "server.tls.client_ca_file: is required when client_auth is 'required'",
        ),
        (
            {"cert_file": "{cert}", "key_file": "{key}", "client_ca_file": "{ca}"},
            "server.tls.client_auth: must be 'optional' or 'required' when client_ca_file is set",
        ),
        (
            {
                "cert_file": "{cert}",
                "key_file": "{key}",
                "client_auth": "optional",
                "client_ca_file": "{garbage}",
            },
            "server.tls.client_ca_file: '{garbage}' holds no PEM certificate",
        ),
        (
            {
                "cert_file": "{cert}",
                "key_file": "{key}",
                "client_auth": "optional",
                "client_ca_file": "{missing}",
            },
            "server.tls.client_ca_file: cannot read '{missing}': No such file or directory",
        ),
        (
            {"cert_file": "{cert}", "key_file": "{key}", "require_bound_tokens": True},
            "server.tls.require_bound_tokens: needs client_auth 'optional' or 'required'",
        ),
        (
            {"cert_file": "{cert}", "key_file": "{key}", "ca_file": "{ca}"},
            "server.tls.ca_file: unknown key (known keys: cert_file, client_auth, "
            "client_ca_file, key_file, key_password, min_version, require_bound_tokens)",
        ),
    ],
)
def test_bad_listener_tls_is_one_error_naming_the_key(
    tmp_path: Path, files: dict[str, str], tls: dict[str, Any], message: str
) -> None:
    filled = {k: v.format(**files) if isinstance(v, str) else v for k, v in tls.items()}
    assert refused(tmp_path, server={"tls": filled}) == message.format(**files)


def test_the_admin_listener_names_its_own_keys(tmp_path: Path, files: dict[str, str]) -> None:
    tls = {"cert_file": files["missing"], "key_file": files["key"]}
    assert refused(tmp_path, admin={"tls": tls}) == (
        f"admin.tls.cert_file: cannot read {files['missing']!r}: No such file or directory"
    )


@pytest.mark.parametrize(
    "upstream, message",
    [
        (
            {"url": "http://127.0.0.1:9", "tls": {"ca_file": "{ca}"}},
            "upstreams.up.tls: needs an https:// url, got 'http://127.0.0.1:9'",
        ),
        (
            {"url": "https://127.0.0.1:9", "tls": {"ca_file": "{missing}"}},
            "upstreams.up.tls.ca_file: cannot read '{missing}': No such file or directory",
        ),
        (
            {"url": "https://127.0.0.1:9", "tls": {"ca_file": "{garbage}"}},
            "upstreams.up.tls.ca_file: '{garbage}' holds no PEM certificate",
        ),
        (
            {"url": "https://127.0.0.1:9", "tls": {"cert_file": "{client_cert}"}},
            "upstreams.up.tls.key_file: cert_file and key_file go together",
        ),
        (
            {"url": "https://127.0.0.1:9", "tls": {"key_file": "{client_key}"}},
            "upstreams.up.tls.cert_file: cert_file and key_file go together",
        ),
        (
            {"url": "https://127.0.0.1:9", "tls": {"key_password": "x"}},
            "upstreams.up.tls.key_password: is set but there is no key_file",
        ),
        (
            {
                "url": "https://127.0.0.1:9",
                "tls": {"cert_file": "{client_cert}", "key_file": "{key}"},
            },
            "upstreams.up.tls.key_file: the key in '{key}' does not match the certificate "
            "in '{client_cert}'",
        ),
        (
            {"url": "https://127.0.0.1:9", "tls": {"verify": False, "ca_file": "{ca}"}},
            "upstreams.up.tls.ca_file: is never used with verify: false; remove one",
        ),
        (
            {"url": "https://127.0.0.1:9", "tls": {"verify": "no"}},
            "upstreams.up.tls.verify: expected true or false, got 'no'",
        ),
    ],
)
def test_bad_upstream_tls_is_one_error_naming_the_key(
    tmp_path: Path, files: dict[str, str], upstream: dict[str, Any], message: str
) -> None:
    tls = {k: v.format(**files) if isinstance(v, str) else v for k, v in upstream["tls"].items()}
    entry = {"url": upstream["url"], "tls": tls}
    assert refused(tmp_path, upstreams={"up": entry}) == message.format(**files)


def test_a_shutdown_timeout_of_zero_is_refused(tmp_path: Path) -> None:
    # aiohttp reads 0 as "wait forever": the key would mean the opposite of what it says.
    assert refused(tmp_path, server={"shutdown_timeout": 0}) == (
        "server.shutdown_timeout: must be >= 0.1, got 0.0"
    )


def test_tls_files_are_found_from_the_config_files_folder(
    tmp_path: Path, pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc"
    (folder / "tls").mkdir(parents=True)
    for src, name in ((pki.server.cert, "server.pem"), (pki.server.key, "server.key")):
        shutil.copy(src, folder / "tls" / name)
    shutil.copy(pki.ca.file, folder / "tls" / "ca.pem")
    tls = {"cert_file": "tls/server.pem", "key_file": "tls/server.key"}
    path = folder / "datagate.yaml"
    path.write_text(
        yaml.safe_dump(
            data(
                server={"tls": {**tls, "client_auth": "optional", "client_ca_file": "tls/ca.pem"}},
                upstreams={"up": {"url": "https://127.0.0.1:9", "tls": {"ca_file": "tls/ca.pem"}}},
            )
        )
    )
    monkeypatch.chdir(tmp_path)  # not the config's folder
    config = load_config(path, environ={})
    assert config.server.tls is not None
    assert config.server.tls.cert_file == folder / "tls" / "server.pem"
    assert config.server.tls.client_ca_file == folder / "tls" / "ca.pem"


def test_datagate_run_with_a_bad_tls_file_exits_2_with_one_line(
    tmp_path: Path, files: dict[str, str]
) -> None:
    path = tmp_path / "datagate.yaml"
    tls = {"cert_file": files["cert"], "key_file": files["other_key"]}
    path.write_text(yaml.safe_dump(data(server={"tls": tls})))
    result = subprocess.run(
        [str(Path(sys.executable).with_name("datagate")), "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"datagate: server.tls.key_file: the key in {files['other_key']!r} does not match "
        f"the certificate in {files['cert']!r}\n"
    )
