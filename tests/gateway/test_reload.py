"""Config reload (what SIGHUP runs): live keys take effect for the next request, restart keys
are named and keep their running values, an invalid file changes nothing and raises an
incident. The signal itself is tested with real processes in tests/cluster/test_lifecycle.py."""

from __future__ import annotations

import copy
import io
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
import structlog
import yaml

from gateway import logs
from gateway.config import load_config
from gateway.reload import adopt, changed_keys, dotted, is_live, plan
from tests.gateway.conftest import REPO, SECRET, RunningGateway, running_gateway

CATALOG = """
datasets:
  - {id: open, route: /api/open/, upstream: up, owner: ops, level: 1, sharing: unconditional}
  - id: tagged
    route: /api/tagged/
    upstream: up
    owner: ops
    level: 1
    sharing: unconditional
    fields: [{name: holder, level: 2, strategy: pseudonym}]
"""
OTHER_SECRET = "reload-tests-second-issuer-key-0123456789abcdef"


def base(tmp_path: Path, upstream_url: str) -> dict[str, Any]:
    policies = tmp_path / "policies"
    policies.mkdir(exist_ok=True)
    (policies / "catalog.yaml").write_text(CATALOG)
    shutil.copy(REPO / "policies" / "model.conf", policies / "model.conf")
    (policies / "policy.csv").write_text("")
    issuer = {"issuer": "tests", "audience": "datagate", "algorithms": ["HS256"], "secret": SECRET}
    return {
        "upstreams": {"up": {"url": upstream_url}},
        "server": {"host": "127.0.0.1", "port": 0},
        "admin": {"host": "127.0.0.1", "port": 0},
        "identity": {"issuers": [issuer], "signing_key": {"key": SECRET}},
        "policy": {"dir": str(policies), "watch": False},
        "masking": {"pseudonym_secret": "p" * 32},
        "detection": {"off_hours": {"enabled": False}},
        "data_dir": str(tmp_path / "data"),
    }


@pytest.fixture
def log_stream() -> Iterator[io.BytesIO]:
    stream = io.BytesIO()
    logs.configure("info", stream)
    try:
        yield stream
    finally:
        structlog.reset_defaults()


def events(stream: io.BytesIO, name: str) -> list[dict[str, Any]]:
    logs.flush()
    return [e for e in map(orjson.loads, stream.getvalue().splitlines()) if e["event"] == name]


class Reloadable:
    """A running gateway started from a config file that the test rewrites."""

    def __init__(self, path: Path, data: dict[str, Any], gw: RunningGateway) -> None:
        self.path = path
        self.data = data
        self.gw = gw

    async def reload(self, change: dict[str, Any] | str) -> bool:
        if isinstance(change, str):
            self.path.write_text(change)
        else:
            self.data = merge(self.data, change)
            self.path.write_text(yaml.safe_dump(self.data))
        return await self.gw.gateway.reload_config(self.path)

    async def status(self, path: str, token: str | None = None) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {token or self.gw.token()}"}
        async with self.gw.session.get(self.gw.url + path, headers=headers) as resp:
            return resp.status, orjson.loads(await resp.read())


def merge(data: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(data)
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


@pytest.fixture
async def reloadable(
    tmp_path: Path, upstream: Any, log_stream: io.BytesIO
) -> AsyncIterator[Reloadable]:
    data = base(tmp_path, upstream.url)
    path = tmp_path / "datagate.yaml"
    path.write_text(yaml.safe_dump(data))
    async with running_gateway(load_config(path, environ={})) as gw:
        yield Reloadable(path, data, gw)


def test_the_plan_sorts_changed_keys_into_live_and_restart(tmp_path: Path) -> None:
    data = base(tmp_path, "http://127.0.0.1:9")
    path = tmp_path / "a.yaml"
    path.write_text(yaml.safe_dump(data))
    old = load_config(path, environ={})
    changed = merge(
        data,
        {
            "limits": {"per_principal": {"requests": 5}},
            "server": {"port": 8443, "trusted_proxies": ["10.0.0.0/8"]},
            "upstreams": {"up": {"total_timeout": 3}, "new": {"url": "http://127.0.0.1:10"}},
            "detection": {"enabled": False, "high_frequency": {"per_minute": 7}},
            "state": {"url": "redis://127.0.0.1:6379/0"},
        },
    )
    path.write_text(yaml.safe_dump(changed))
    new = load_config(path, environ={})
    keys = [dotted(k) for k in changed_keys(old, new)]
    assert keys == [
        "upstreams.new",
        "upstreams.up.total_timeout",
        "server.port",
        "server.trusted_proxies",
        "state.url",
        "limits.per_principal.requests",
        "detection.enabled",
        "detection.high_frequency.per_minute",
    ]
    found = plan(old, new)
    assert [dotted(k) for k in found.live] == [
        "upstreams.up.total_timeout",
        "server.trusted_proxies",
        "limits.per_principal.requests",
        "detection.high_frequency.per_minute",
    ]
    assert [dotted(k) for k in found.restart] == [
        "upstreams.new",
        "server.port",
        "state.url",
        "detection.enabled",
    ]
    running = adopt(old, new, found.live)
    assert running.limits == new.limits and running.upstreams["up"].total_timeout == 3
    assert running.server.port == old.server.port and running.state == old.state
    assert "new" not in running.upstreams and running.detection.enabled is True
    assert running.detection.high_frequency.per_minute == 7
    assert not is_live(("identity", "revocation_reload")) and is_live(("identity", "issuers"))
    assert not is_live(("detection", "model", "path")) and not is_live(("logging", "level"))


async def test_live_keys_apply_to_the_next_request(
    reloadable: Reloadable, log_stream: io.BytesIO
) -> None:
    gateway = reloadable.gw.gateway
    before = gateway.readiness()["config_loaded_at"]
    for _ in range(3):
        assert (await reloadable.status("/api/open/1"))[0] == 200
    assert await reloadable.reload(
        {
            "limits": {"per_principal": {"requests": 2, "window": 60}},
            "upstreams": {"up": {"total_timeout": 0.3}},
            "breaker": {"cooldown_base": 7, "cooldown_cap": 70},
            "detection": {"high_frequency": {"per_minute": 1000}},
        }
    )
    token = reloadable.gw.token(sub="bob")
    statuses = [(await reloadable.status("/api/open/1", token))[0] for _ in range(3)]
    assert statuses == [200, 200, 429]
    status, body = await reloadable.status("/api/open/slow", reloadable.gw.token(sub="carol"))
    assert (status, body["error"]) == (504, "upstream_timeout")
    assert gateway.breakers.config.cooldown_base == 7
    assert gateway.responder.config.cooldown_base == gateway.suspension.config.cooldown_base == 7
    assert gateway.detector is not None
    assert gateway.detector.config.high_frequency.per_minute == 1000
    assert gateway.readiness()["config_loaded_at"] >= before
    (reloaded,) = events(log_stream, "config_reloaded")
    assert reloaded["keys"] == [
        "upstreams.up.total_timeout",
        "limits.per_principal.requests",
        "detection.high_frequency.per_minute",
        "breaker.cooldown_base",
        "breaker.cooldown_cap",
    ]
    assert events(log_stream, "config_restart_required") == []


async def test_restart_keys_are_named_and_keep_their_running_values(
    reloadable: Reloadable, log_stream: io.BytesIO
) -> None:
    gateway = reloadable.gw.gateway
    port = gateway.listeners[0].bound_port
    assert await reloadable.reload(
        {"server": {"port": 18443}, "state": {"prefix": "other:"}, "logging": {"level": "debug"}}
    )
    (warning,) = events(log_stream, "config_restart_required")
    assert warning["level"] == "warning"
    assert warning["keys"] == ["server.port", "state.prefix", "logging.level"]
    assert warning["path"] == str(reloadable.path)
    assert gateway.config.server.port == 0 and gateway.config.state.prefix == "datagate:"
    assert gateway.listeners[0].bound_port == port
    assert (await reloadable.status("/api/open/1"))[0] == 200
    assert events(log_stream, "config_reloaded") == [], "nothing live changed"


async def test_a_new_issuer_is_trusted_after_a_reload_and_a_removed_one_is_not(
    reloadable: Reloadable,
) -> None:
    def other_token() -> str:
        claims = {"iss": "partner", "aud": "datagate", "sub": "p1", "dept": "tax"}
        claims |= {"clearance": 1, "jti": "j1", "exp": 4_000_000_000}
        return jwt.encode(claims, OTHER_SECRET, algorithm="HS256")

    old_token = reloadable.gw.token(sub="alice")
    assert (await reloadable.status("/api/open/1", old_token))[0] == 200
    status, body = await reloadable.status("/api/open/1", other_token())
    assert (status, body["reason"]) == (401, "unknown_issuer")
    partner = {"issuer": "partner", "audience": "datagate", "algorithms": ["HS256"]}
    partner["secret"] = OTHER_SECRET
    data = reloadable.data
    data["identity"] = {"issuers": [partner]}
    assert await reloadable.reload({})
    assert (await reloadable.status("/api/open/1", other_token()))[0] == 200
    # The old issuer's token was cached as verified: the reload dropped that cache too.
    status, body = await reloadable.status("/api/open/1", old_token)
    assert (status, body["reason"]) == (401, "unknown_issuer")


async def test_an_invalid_file_keeps_the_running_config_and_raises_an_incident(
    reloadable: Reloadable, log_stream: io.BytesIO
) -> None:
    gateway = reloadable.gw.gateway
    running = gateway.config
    good = reloadable.data
    assert not await reloadable.reload({"limits": {"per_principal": {"requests": "many"}}})
    assert not await reloadable.reload("limits: [unclosed\n")
    reloadable.data = good
    # Valid YAML and keys, but the catalog's pseudonym field needs the secret it removes.
    assert not await reloadable.reload({"masking": {"pseudonym_secret": None}})
    assert gateway.config is running
    errors = [e["error"] for e in events(log_stream, "config_rejected")]
    assert errors == [
        "limits.per_principal.requests: expected an integer, got 'many'",
        f"{reloadable.path}:2: invalid YAML: expected ',' or ']', but got '<stream end>'",
        "dataset 'tagged' field 'holder': strategy 'pseudonym' needs masking.pseudonym_secret",
    ]
    stored = [orjson.loads(v) for v in (await gateway.state.hgetall("incidents")).values()]
    rejected = [i for i in stored if i["finding_info"]["analytic"]["name"] == "config_rejected"]
    assert len(rejected) == 1, "repeats update one incident"
    assert rejected[0]["severity_id"] == 2 and rejected[0]["count"] == 3
    assert (await reloadable.status("/api/tagged/1"))[0] == 200
