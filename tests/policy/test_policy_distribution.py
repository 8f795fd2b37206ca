"""Policy from the store: `policy push / history / rollback` and a PolicyStore with
`policy.source: store` on a real Redis, refusing unsigned, wrongly signed, corrupt and
test-failing bundles while the last good one stays in force."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.admin.app import PRINCIPAL
from gateway.audit.keys import load_private, public_path
from gateway.cli import main
from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.identity.principal import Principal
from gateway.policy.admin import routes
from gateway.policy.distribution import (
    BUNDLES_HASH,
    Distribution,
    read_directory,
    sign_bundle,
)
from gateway.policy.grants import GrantStore
from gateway.policy.store import PolicyStore
from gateway.state import open_backend
from tests.gateway.conftest import identity_section
from tests.support import delete_prefix

SHIPPED = Path(__file__).resolve().parents[2] / "policies"
OWNER_CASE = "expect: {decision: allow, reason: owner, mask_clearance: 3}"


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    value = f"datagate-test:bundles:{uuid.uuid4().hex}:"
    yield value
    delete_prefix(redis_url, value)


def write_config(tmp: Path, redis_url: str, prefix: str, **policy: Any) -> Path:
    config = {
        "upstreams": {"demo": {"url": "http://127.0.0.1:9"}},
        "state": {"url": redis_url, "prefix": prefix},
        "identity": identity_section(),
        "masking": {"pseudonym_secret": "p" * 32},
        "policy": {"dir": str(SHIPPED), **policy},
    }
    path = tmp / f"config-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "policy-key.pem"
    load_private(path, True)
    return path


@pytest.fixture
def config(tmp_path: Path, redis_url: str, prefix: str, key: Path) -> Path:
    return write_config(
        tmp_path,
        redis_url,
        prefix,
        source="store",
        signing_key=str(key),
        public_keys=[str(public_path(key))],
    )


def variant(tmp: Path, name: str, comment: str = "", failing: bool = False) -> Path:
    """A copy of the shipped policy; `comment` changes its version, `failing` breaks a case."""
    target = tmp / name
    shutil.copytree(SHIPPED, target)
    if comment:
        with (target / "policy.csv").open("a") as fh:
            fh.write(f"# {comment}\n")
    if failing:
        cases = target / "tests" / "demo.yaml"
        cases.write_text(cases.read_text().replace(OWNER_CASE, "expect: deny", 1))
    return target


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["policy", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_push_history_rollback(
    tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = variant(tmp_path, "a", "one"), variant(tmp_path, "b", "two")
    code, out, _ = cli(capsys, "push", str(first), "--config", str(config), "-m", "first")
    assert code == 0, out
    v1 = out.split()[1]
    code, out, _ = cli(capsys, "push", str(second), "--config", str(config), "--by", "ops")
    assert code == 0
    v2 = out.split()[1]
    assert v1 != v2
    code, out, _ = cli(capsys, "rollback", v1, "--config", str(config), "-m", "undo")
    assert (code, out) == (0, f"rolled back to {v1} (sequence 3)\n")

    code, out, _ = cli(capsys, "history", "--config", str(config), "-o", "json")
    assert code == 0
    doc = orjson.loads(out)
    assert doc["active"] == v1
    assert [(h["seq"], h["version"], h["action"], h["active"]) for h in doc["history"]] == [
        (1, v1, "push", False),
        (2, v2, "push", False),
        (3, v1, "rollback", True),
    ]
    assert doc["history"][0]["message"] == "first"
    assert doc["history"][1]["by"] == "ops"
    code, out, _ = cli(capsys, "history", "--config", str(config))
    lines = out.splitlines()
    assert lines[0].split() == ["SEQ", "VERSION", "ACTION", "BY", "AT", "ACTIVE", "MESSAGE"]
    assert lines[3].split()[:3] == ["3", v1, "rollback"] and "*" in lines[3].split()


def test_push_refuses_a_failing_or_invalid_directory(
    tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    failing = variant(tmp_path, "f", failing=True)
    code, _, err = cli(capsys, "push", str(failing), "--config", str(config))
    assert code == 1
    assert "refused: policy test failed:" in err
    broken = variant(tmp_path, "x")
    (broken / "model.conf").write_text("[request_definition]\nnonsense\n")
    code, _, err = cli(capsys, "push", str(broken), "--config", str(config))
    assert code == 1 and f"{broken}: refused: " in err and "model.conf" in err
    code, _, err = cli(capsys, "push", str(tmp_path / "nowhere"), "--config", str(config))
    assert (code, err) == (2, f"datagate: {tmp_path / 'nowhere'}: not a directory\n")
    # Nothing refused reached the store.
    code, out, _ = cli(capsys, "history", "--config", str(config), "-o", "json")
    assert orjson.loads(out) == {"active": None, "history": []}


def test_bad_inputs_have_exact_errors(
    tmp_path: Path, redis_url: str, prefix: str, key: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = write_config(tmp_path, redis_url, prefix, signing_key=str(tmp_path / "no.pem"))
    code, _, err = cli(capsys, "push", str(SHIPPED), "--config", str(missing))
    assert (code, err) == (
        2,
        f"datagate: policy.signing_key: {tmp_path / 'no.pem'} does not exist\n",
    )

    public_only = write_config(tmp_path, redis_url, prefix, signing_key=str(public_path(key)))
    code, _, err = cli(capsys, "push", str(SHIPPED), "--config", str(public_only))
    assert code == 2 and err.startswith(
        f"datagate: policy.signing_key: cannot load {public_path(key)}"
    )

    rsa = tmp_path / "rsa.pem"
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa as rsa_keys

    rsa.write_bytes(
        rsa_keys.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    wrong_type = write_config(tmp_path, redis_url, prefix, signing_key=str(rsa))
    code, _, err = cli(capsys, "push", str(SHIPPED), "--config", str(wrong_type))
    assert (code, err) == (
        2,
        f"datagate: policy.signing_key: {rsa} is not an Ed25519 private key\n",
    )

    unset = write_config(tmp_path, redis_url, prefix)
    code, _, err = cli(capsys, "push", str(SHIPPED), "--config", str(unset))
    assert code == 2 and "policy.signing_key: not set" in err
    code, _, err = cli(capsys, "rollback", "abc", "--config", str(unset))
    assert code == 2 and "policy.public_keys: not set" in err

    keyed = write_config(tmp_path, redis_url, prefix, public_keys=[str(public_path(key))])
    code, _, err = cli(capsys, "rollback", "0123456789abcdef", "--config", str(keyed))
    assert (code, err) == (
        1,
        "datagate: unknown version '0123456789abcdef' (see `datagate policy history`)\n",
    )

    bad_key = write_config(tmp_path, redis_url, prefix, public_keys=[str(tmp_path / "x.pub")])
    code, _, err = cli(capsys, "rollback", "abc", "--config", str(bad_key))
    assert code == 2 and f"policy.public_keys: cannot read {tmp_path / 'x.pub'}" in err

    store_without_keys = write_config(tmp_path, redis_url, prefix, source="store")
    code, _, err = cli(capsys, "history", "--config", str(store_without_keys))
    assert code == 2 and "policy.public_keys: is required when source is store" in err

    down = write_config(tmp_path, "redis://127.0.0.1:1/0", prefix, signing_key=str(key))
    code, _, err = cli(capsys, "push", str(SHIPPED), "--config", str(down))
    assert code == 3 and err.startswith("datagate: state backend unreachable:")


@pytest.fixture
async def backend(redis_url: str, prefix: str) -> AsyncIterator[Any]:
    state = open_backend(redis_url, prefix)
    await state.start()
    yield state
    await state.close()


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for `check()` (a hang guard, not a timing assertion)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def signed(directory: Path, key: Ed25519PrivateKey, by: str = "tests") -> dict[str, Any]:
    return sign_bundle(read_directory(directory), key, by=by, at=1.0, message="")


async def test_gateway_store_refuses_bad_bundles_and_keeps_the_last_good(
    tmp_path: Path, config: Path, key: Path, backend: Any
) -> None:
    cfg = load_config(config, environ={}).policy
    rejected: list[str] = []
    store = PolicyStore(cfg, backend=backend, on_rejected=rejected.append)
    with pytest.raises(ConfigError, match="no policy bundle in the store"):
        await store.start()

    dist = Distribution(backend, cfg.reload_channel)
    private = load_private(key, False)
    good = signed(variant(tmp_path, "good", "good"), private)
    await dist.push(good)
    store = PolicyStore(cfg, backend=backend, on_rejected=rejected.append)
    await store.start()
    try:
        assert (store.current.version, store.seq, store.source) == (good["version"], 1, "store")

        unsigned = {**signed(variant(tmp_path, "u", "unsigned"), private), "signature": ""}
        other = signed(variant(tmp_path, "o", "other key"), Ed25519PrivateKey.generate())
        forged = signed(variant(tmp_path, "g", "forged"), private)
        forged["files"]["policy.csv"] += "p, *, *, read, allow, *, *, *, 1\n"
        failing = signed(variant(tmp_path, "t", "failing", failing=True), private)
        expected = {
            unsigned["version"]: f"bundle {unsigned['version']} is unsigned",
            other["version"]: "is signed by unknown key",
            forged["version"]: "signature does not verify",
            failing["version"]: "policy test failed:",
        }
        # The pub/sub notice or the periodic check picks each one up; a reload here races them.
        for n, record in enumerate((unsigned, other, forged, failing), 1):
            await dist.push(record)
            await until(lambda n=n: len(rejected) == n)
            assert expected[record["version"]] in rejected[-1]
            assert store.current.version == good["version"]
        await backend.hset(BUNDLES_HASH, "feedfacefeedface", b"{not json")
        await dist._activate("feedfacefeedface", "push", "tests", 2.0, "")
        await until(lambda: len(rejected) == 5)
        assert "bundle is corrupt: not JSON" in rejected[-1]
        assert store.current.version == good["version"]
        # A refused activation is not retried on every check.
        assert (await store.reload("check")).status == "unchanged"

        with pytest.raises(Exception, match="signature does not verify"):
            await dist.rollback(forged["version"], store._public_keys, by="t", at=3.0, message="")
        await dist.rollback(good["version"], store._public_keys, by="t", at=3.0, message="")
        await until(lambda: store.seq == 7)
        assert store.current.version == good["version"]
        newer = signed(variant(tmp_path, "n", "newer"), private)
        await dist.push(newer)
        await until(lambda: store.seq == 8)
        assert store.current.version == newer["version"]
        assert len(rejected) == 5
        assert store.current.directory.name == newer["version"]
    finally:
        await store.close()


async def test_admin_api_push_and_history(
    tmp_path: Path,
    config: Path,
    key: Path,
    backend: Any,
    aiohttp_client: Callable[[web.Application], Awaitable[TestClient]],
) -> None:
    cfg = load_config(config, environ={}).policy
    await Distribution(backend, cfg.reload_channel).push(
        signed(variant(tmp_path, "base", "base"), load_private(key, False))
    )
    store = PolicyStore(cfg, backend=backend)
    await store.start()
    grants = GrantStore(
        backend,
        catalog=lambda: store.current.catalog,
        lifetimes=cfg.grant_max_lifetime,
        clock=time.time,
    )

    @web.middleware
    async def authenticated(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        request[PRINCIPAL] = Principal("sec-officer", "security", 4, frozenset({"soc"}))
        return await handler(request)

    app = web.Application(middlewares=[authenticated])
    app.add_routes(routes(store, grants, time.time))
    client = await aiohttp_client(app)
    try:
        base = store.current.version
        body = read_directory(variant(tmp_path, "api", "from the api"))
        resp = await client.post("/policy/bundles", json={**body, "message": "via api"})
        assert resp.status == 201, await resp.text()
        pushed = await resp.json()
        assert (pushed["seq"], pushed["action"], pushed["by"]) == (2, "push", "sec-officer")
        await until(lambda: store.current.version == pushed["version"])

        failing = read_directory(variant(tmp_path, "api-f", "failing", failing=True))
        resp = await client.post("/policy/bundles", json=failing)
        answer = await resp.json()
        assert resp.status == 422 and answer["error"] == "policy_rejected"
        assert "policy test failed:" in answer["message"]
        assert answer["version"] == pushed["version"]
        for bad, field in (
            ({"files": {"policy.csv": ""}}, "files"),
            ({**body, "tests": {"../x.yaml": ""}}, "tests.../x.yaml"),
            ({**body, "extra": 1}, "extra"),
            ({**body, "message": 5}, "message"),
        ):
            resp = await client.post("/policy/bundles", json=bad)
            assert (resp.status, (await resp.json())["field"]) == (400, field)

        resp = await client.get("/policy/bundles")
        doc = await resp.json()
        assert doc["active"] == pushed["version"]
        assert [(h["version"], h["active"]) for h in doc["history"]] == [
            (base, False),
            (pushed["version"], True),
        ]
        assert doc["history"][1]["message"] == "via api"
    finally:
        await store.close()


def test_a_gateway_on_an_empty_store_does_not_start(tmp_path: Path, config: Path) -> None:
    from tests.cluster.conftest import DATAGATE, free_port, process_env

    doc = yaml.safe_load(config.read_text())
    doc["server"] = {"host": "127.0.0.1", "port": free_port()}
    doc["admin"] = {"host": "127.0.0.1", "port": free_port()}
    doc["data_dir"] = str(tmp_path / "data")
    config.write_text(yaml.safe_dump(doc))
    done = subprocess.run(
        [str(DATAGATE), "run", "--config", str(config)],
        capture_output=True,
        text=True,
        env=process_env(),
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        "datagate: policy.source store: no policy bundle in the store "
        "(push one with `datagate policy push DIR`)"
    )
