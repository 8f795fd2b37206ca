"""Fuzzing config parsing: any YAML tree (or text, or environment) gives a valid Config or
one ConfigError that names a key; never another exception, never a config that cannot work.

Trees are generated from the Config dataclasses themselves: each key is left out, given a
value of its type, or given any YAML value; unknown keys are added. Extends the hand-picked
cases of tests/gateway/test_config.py.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import pytest
import yaml
from hypothesis import event, given
from hypothesis import strategies as st

from gateway.config import Config, load_config, parse_config
from gateway.configtree import Secret
from gateway.errors import ConfigError
from tests.fuzz.budget import fuzz

BASE = Path("/srv/datagate")
IDENTITY = {
    "issuers": [
        {"issuer": "t", "audience": "datagate", "algorithms": ["HS256"], "secret": "k" * 32}
    ]
}
MINIMAL = {"upstreams": {"demo": {"url": "http://127.0.0.1:8081"}}, "identity": IDENTITY}
# A key path as the config errors write it: `server.port`, `identity.issuers[0].secret`,
# `server['a b']` (a key that is not a plain name), `config` (the document itself).
KEY_PATH = re.compile(r"^(?P<top>[^\s.:\[\]'\"]+)(?P<rest>[.\[].*?)?: \S")

# Everything yaml.safe_load can produce.
yaml_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70) | st.just(10**400),
    st.floats(),  # with .nan and .inf, which YAML allows
    st.text(max_size=10),
    st.dates(),
    st.datetimes(),
    st.binary(max_size=6),
)
yaml_key = st.one_of(st.text(max_size=8), st.integers(-5, 5), st.booleans(), st.none())
yaml_value = st.recursive(
    yaml_scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(yaml_key, inner, max_size=3),
    max_leaves=4,
)


def typed(tp: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values of type `tp` (nearly valid), mixed with any YAML value (invalid)."""
    return st.one_of(_of_type(tp, depth), _of_type(tp, depth), yaml_value)


def _of_type(tp: Any, depth: int) -> st.SearchStrategy[Any]:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return mapping_for(tp, depth + 1)
    if origin in (Union, types.UnionType):
        return st.one_of([_of_type(a, depth) for a in get_args(tp)])
    if origin is Literal:
        return st.sampled_from(get_args(tp))
    if origin in (list, tuple):
        return st.lists(typed(get_args(tp)[0], depth + 1), max_size=2 if depth < 3 else 0)
    if origin is dict:
        return st.dictionaries(
            st.text(min_size=1, max_size=6), typed(get_args(tp)[1], depth + 1), max_size=2
        )
    if tp is type(None):
        return st.none()
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.integers(-10, 70_000) | st.sampled_from([-(2**63), 2**63, 10**400])
    if tp is float:
        edges = [math.nan, math.inf, -math.inf, -0.0, 1e-300, 1e308, 10**400]
        return st.floats(-10, 1e6) | st.sampled_from(edges)
    if tp is Secret:
        return st.text(max_size=40) | st.fixed_dictionaries(
            {}, optional={"env": st.text(max_size=8), "file": st.text(max_size=8)}
        )
    if tp is Path:
        return st.text(max_size=12)
    if tp is str:
        return st.sampled_from(["http://127.0.0.1:8081", "HS256", "memory", "info", "x"]) | (
            st.text(max_size=12)
        )
    return yaml_value


def mapping_for(cls: type, depth: int = 0) -> st.SearchStrategy[dict[Any, Any]]:
    hints = typing.get_type_hints(cls)
    fields = {f.name: hints[f.name] for f in dataclasses.fields(cls)}
    if depth > 2:
        return st.just({})
    known = st.fixed_dictionaries({}, optional={n: typed(tp, depth) for n, tp in fields.items()})
    unknown = st.dictionaries(yaml_key, yaml_value, max_size=1)
    return st.builds(lambda a, b: {**a, **b}, known, unknown | st.just({}))


def nudges() -> st.SearchStrategy[dict[str, Any]]:
    """The minimal config with one or two keys of one section set to values of their type:
    mostly valid configs, so the checks on accepted ones run often."""
    hints = typing.get_type_hints(Config)
    sections = {
        f.name: hints[f.name]
        for f in dataclasses.fields(Config)
        if dataclasses.is_dataclass(hints[f.name]) and f.name != "identity"
    }

    def keys_of(name: str) -> st.SearchStrategy[dict[str, Any]]:
        cls = sections[name]
        types_of = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        return st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True).flatmap(
            lambda chosen: st.fixed_dictionaries({n: _of_type(types_of[n], 1) for n in chosen})
        )

    return st.sampled_from(sorted(sections)).flatmap(
        lambda name: keys_of(name).map(lambda values: {**MINIMAL, name: values})
    )


# Trees near a valid config: the minimal one with some sections generated over it.
trees = st.one_of(
    nudges(),
    nudges(),
    nudges(),
    mapping_for(Config),
    st.builds(lambda over: {**MINIMAL, **over}, mapping_for(Config)),
    st.builds(
        lambda section, value: {**MINIMAL, section: value},
        st.sampled_from([f.name for f in dataclasses.fields(Config)]),
        yaml_value,
    ),
    yaml_value,
)


def outcome(data: Any, environ: dict[str, str] | None = None) -> Config | ConfigError:
    try:
        return parse_config(data, base_dir=BASE, environ=environ or {})
    except ConfigError as exc:
        return exc


def assert_names_a_key(exc: ConfigError, data: Any, environ: dict[str, str]) -> None:
    message = str(exc)
    assert "\n" not in message, message
    m = KEY_PATH.match(message)
    assert m is not None, f"no key named: {message!r}"
    top = m.group("top")
    if top == "config":  # the document is not a mapping, or has a key that is not a name
        assert not isinstance(data, dict) or (m.group("rest") or "").startswith("["), message
        return
    sections = {f.name for f in dataclasses.fields(Config)}
    given_keys = {str(k) for k in data} if isinstance(data, dict) else set()
    if top not in sections | given_keys:  # a key the environment made: it says which
        assert any(message.endswith(f"(set by {name})") for name in environ), message


def assert_usable(config: Config) -> None:
    """A config that parsed is one the gateway can run on: every number is finite and
    every path absolute."""

    def walk(value: Any, where: str) -> None:
        if isinstance(value, float):
            assert math.isfinite(value), f"{where} = {value!r} was accepted"
        elif isinstance(value, Path):
            assert value.is_absolute(), where
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            for f in dataclasses.fields(value):
                walk(getattr(value, f.name), f"{where}.{f.name}" if where else f.name)
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{where}.{k}")
        elif isinstance(value, list | tuple):
            for i, v in enumerate(value):
                walk(v, f"{where}[{i}]")

    walk(config, "")


@fuzz(300)
@given(trees)
def test_any_tree_is_a_config_or_one_config_error_naming_a_key(data: Any) -> None:
    result = outcome(data)
    if isinstance(result, ConfigError):
        event("refused")
        assert_names_a_key(result, data, {})
    else:
        event("accepted")
        assert_usable(result)


env_names = st.builds(
    lambda section, key: f"DATAGATE_{section}{key}",
    st.sampled_from(["SERVER__", "ADMIN__", "STATE__", "MASKING__", "IDENTITY__", "", "X__"]),
    st.sampled_from(["PORT", "HOST", "URL", "ROLES", "DATA_DIR", "A__B", "SCANNER_LEVEL", "__"])
    | st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_", min_size=1, max_size=8),
)
env_values = st.sampled_from(["8080", "[a, b]", "{x: 1}", ".nan", "-1", "true", "", "'"]) | (
    st.text(max_size=12)
)


@fuzz(300)
@given(st.dictionaries(env_names, env_values, max_size=3))
def test_any_environment_overrides_give_a_config_or_one_config_error(
    environ: dict[str, str],
) -> None:
    result = outcome(MINIMAL, environ)
    if isinstance(result, ConfigError):
        event("refused")
        assert_names_a_key(result, MINIMAL, environ)
    else:
        event("accepted")
        assert_usable(result)


yaml_text = st.one_of(
    st.text(max_size=80),
    trees.map(lambda t: yaml.safe_dump(t, allow_unicode=True, default_flow_style=None)),
    st.sampled_from(
        [
            "server: {port: 8080",
            "!!python/object:os.system {}",
            "a: &x [*x]",
            "upstreams: !!binary aGVsbG8=",
            "\t- tab",
            "server:\n  port: 1\n  port: 2\n",
            "? [a, b]\n: c\n",
        ]
    ),
)


@fuzz(200)
@given(text=yaml_text)
def test_any_config_file_is_a_config_or_one_config_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "datagate.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        config = load_config(path, environ={})
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith(str(path)) or KEY_PATH.match(message), message
        return
    assert_usable(config)


def float_keys(cls: type, data: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The key path of every float setting, through the lists and mappings of `data`."""
    hints = typing.get_type_hints(cls)
    found: list[tuple[Any, ...]] = []
    for f in dataclasses.fields(cls):
        tp, here = hints[f.name], (*path, f.name)
        args = [a for a in get_args(tp) if a is not type(None)]
        inner = args[0] if get_origin(tp) in (Union, types.UnionType) and len(args) == 1 else tp
        sub = data.get(f.name) if isinstance(data, dict) else None
        if inner is float:
            found.append(here)
        elif dataclasses.is_dataclass(inner) and sub is not None:
            found += float_keys(inner, sub, here)
        elif get_origin(inner) is list and dataclasses.is_dataclass(get_args(inner)[0]) and sub:
            found += float_keys(get_args(inner)[0], sub[0], (*here, 0))
        elif get_origin(inner) is dict and dataclasses.is_dataclass(get_args(inner)[1]) and sub:
            key = next(iter(sub))
            found += float_keys(get_args(inner)[1], sub[key], (*here, key))
    return found


def plain(value: Any) -> Any:
    """A parsed config as the YAML tree that gives it back."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, Path):
        return str(value)
    return value


# Every setting written out, so that a changed one is the only thing wrong.
COMPLETE = plain(parse_config(MINIMAL, base_dir=BASE, environ={}))
FLOAT_KEYS = float_keys(Config, COMPLETE)


def with_value(keys: tuple[Any, ...], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(COMPLETE)
    node: Any = data
    for key in keys[:-1]:
        node = node.setdefault(key, {}) if isinstance(node, dict) else node[key]
    node[keys[-1]] = value
    return data


def shown(keys: tuple[Any, ...]) -> str:
    return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in keys)[1:]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 10**400])
def test_no_float_setting_takes_a_number_that_is_not_finite(value: Any) -> None:
    """Found by the tree fuzz: `.nan` passed every min/max check (audit.flush_interval:
    .nan made a config), and an integer too large for a float raised OverflowError."""
    assert len(FLOAT_KEYS) > 25  # the walk reaches the nested sections
    for keys in FLOAT_KEYS:
        result = outcome(with_value(keys, value))
        assert isinstance(result, ConfigError), shown(keys)
        assert str(result) == f"{shown(keys)}: expected a finite number, got {value!r}"


def test_yaml_dates_and_binary_are_refused_by_key() -> None:
    """Positive control of the generators' more unusual YAML values."""
    result = outcome({**MINIMAL, "server": {"host": dt.date(2026, 1, 1)}})
    assert isinstance(result, ConfigError)
    assert str(result) == "server.host: expected a string, got datetime.date(2026, 1, 1)"
