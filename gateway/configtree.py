"""Typed config trees: YAML data validated into dataclasses, every error naming its key."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
import os
import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin
from urllib.parse import urlsplit, urlunsplit

import yaml

from gateway.errors import ConfigError

T = TypeVar("T")

__all__ = [
    "Secret",
    "blame_environment",
    "build",
    "check",
    "env_overrides",
    "field",
    "json_schema",
    "to_data",
]


class Secret:
    """A secret value that never prints. Written in YAML as a literal string,
    `{file: PATH}` or `{env: NAME}`; read when the config is loaded."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str = "inline") -> None:
        self._value = value
        self.source = source

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(<{self.source}>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def field(default: Any = dataclasses.MISSING, *, doc: str = "", **checks: Any) -> Any:
    """A dataclass field with validation checks: `min`, `max`, `choices`, `nonempty`."""
    meta = {"doc": doc, **checks}
    if isinstance(default, (list, dict, set)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=meta)
    if dataclasses.is_dataclass(default) and not isinstance(default, type):
        value = default
        return dataclasses.field(default_factory=lambda: dataclasses.replace(value), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


_PLAIN_KEY = re.compile(r"[^\s.\[\]:'\"\\]+")


def _fail(path: str, problem: str) -> typing.NoReturn:
    raise ConfigError(f"{path or 'config'}: {problem}")


def _key_path(path: str, key: Any) -> str:
    """`path.key`; a key that is not a plain name (empty, spaces, dots, not a string) is
    shown quoted, `path['a b']`, so the message names it unmistakably on one line."""
    if isinstance(key, str) and _PLAIN_KEY.fullmatch(key) and key.isprintable():
        return f"{path}.{key}" if path else key
    return f"{path or 'config'}[{key!r}]"


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if origin is not None:
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in get_args(tp))}]"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


# The folder relative paths are read from while a config is built: the config file's.
_READ_BASE: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "datagate_config_folder", default=None
)


@contextlib.contextmanager
def reading_from(folder: Path) -> Iterator[None]:
    """While building a config, find the files it names (keys, secrets) from `folder`."""
    token = _READ_BASE.set(folder)
    try:
        yield
    finally:
        _READ_BASE.reset(token)


def readable(path: Path) -> Path:
    """`path` as a file to read while a config is built (see `reading_from`)."""
    folder = _READ_BASE.get()
    return folder / path if folder is not None and not path.is_absolute() else path


def _secret(value: Any, path: str) -> Secret:
    if isinstance(value, Secret):
        return value
    if isinstance(value, str):
        return Secret(value)
    if isinstance(value, dict) and len(value) == 1:
        ((kind, ref),) = value.items()
        if kind == "file":
            try:
                return Secret(readable(Path(str(ref))).read_text().strip(), f"file {ref}")
            except OSError as exc:
                _fail(path, f"cannot read secret file {ref!r}: {exc.strerror}")
            except ValueError:  # a NUL in the name, or a file that is not text
                _fail(path, f"cannot read secret file {ref!r}: not a readable text file")
        if kind == "env":
            if str(ref) not in os.environ:
                _fail(path, f"environment variable {ref!r} is not set")
            return Secret(os.environ[str(ref)], f"env {ref}")
    _fail(path, "expected a secret: a string, {file: PATH} or {env: NAME}")


def _convert(tp: Any, value: Any, path: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if tp is Secret:
        return _secret(value, path)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            _fail(path, f"must not be null (expected {_type_name(tp)})")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, path)
            except ConfigError as exc:
                errors.append(str(exc))
        if len(errors) == 1:
            raise ConfigError(errors[0])
        _fail(path, f"expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value in get_args(tp):
            return value
        _fail(path, f"must be one of {', '.join(repr(a) for a in get_args(tp))}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        return build(tp, value, path)
    if origin in (list, tuple):
        if not isinstance(value, list):
            _fail(path, f"expected a list, got {type(value).__name__}")
        (item,) = get_args(tp)[:1]
        items = [_convert(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            _fail(path, f"expected a mapping, got {type(value).__name__}")
        _, vt = get_args(tp)
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                _fail(path, f"keys must be strings, got {k!r}")
            out[k] = _convert(vt, v, _key_path(path, k))
        return out
    if tp is bool:
        if isinstance(value, bool):
            return value
        _fail(path, f"expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        _fail(path, f"expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:
                number = math.inf
            if not math.isfinite(number):  # .nan passes every min/max check; .inf never ends
                _fail(path, f"expected a finite number, got {value!r}")
            return number
        _fail(path, f"expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        _fail(path, f"expected a string, got {value!r}")
    if tp is Path:
        if isinstance(value, str) and value and "\x00" not in value:  # no OS takes a NUL
            return Path(value)
        _fail(path, f"expected a path, got {value!r}")
    _fail(path, f"unsupported type {_type_name(tp)}")


def check(meta: typing.Mapping[str, Any], value: Any, path: str) -> None:
    """Apply a field's `min`/`max`/`choices`/`nonempty` checks."""
    if value is None:
        return
    if "min" in meta and value < meta["min"]:
        _fail(path, f"must be >= {meta['min']}, got {value!r}")
    if "max" in meta and value > meta["max"]:
        _fail(path, f"must be <= {meta['max']}, got {value!r}")
    if "choices" in meta and value not in meta["choices"]:
        _fail(path, f"must be one of {', '.join(map(repr, meta['choices']))}, got {value!r}")
    if meta.get("nonempty") and not value:
        _fail(path, "must not be empty")


def _required(f: dataclasses.Field[Any]) -> bool:
    """No default, or a `nonempty` field whose default is empty."""
    if f.default is not dataclasses.MISSING:
        return bool(f.metadata.get("nonempty")) and not f.default
    if f.default_factory is not dataclasses.MISSING:
        return bool(f.metadata.get("nonempty")) and not f.default_factory()
    return True


def build(cls: type[T], data: Any, path: str = "") -> T:
    """Validate `data` (parsed YAML) into the dataclass `cls`; unknown keys are errors.

    A dataclass may define `validate(self, path)` for checks across fields.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        _fail(path, f"expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    # Fields with init=False are derived by the dataclass itself, never read from config.
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    for key in data:
        if key not in fields:
            known = ", ".join(sorted(fields))
            _fail(_key_path(path, key), f"unknown key (known keys: {known})")
    kwargs = {}
    for name, f in fields.items():
        sub = f"{path}.{name}" if path else name
        if name in data:
            value = _convert(hints[name], data[name], sub)
            check(f.metadata, value, sub)
            kwargs[name] = value
        elif _required(f):
            _fail(sub, "is required")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate(path)
    return obj


def env_overrides(
    data: dict[str, Any],
    environ: typing.Mapping[str, str],
    prefix: str,
    top_level: typing.Collection[str] = (),
) -> dict[str, str]:
    """Apply `PREFIX_SECTION__KEY=value` overrides in place; values parse as YAML scalars.
    Returns the key paths set (`server.port`) and the variable that set each.

    A name without `__` overrides only a key in `top_level` (`PREFIX_DATA_DIR`), so other
    variables that share the prefix (a CLI's `PREFIX_ADMIN_TOKEN`) are left alone."""
    applied: dict[str, str] = {}
    for name, raw in environ.items():
        if not name.startswith(prefix):
            continue
        keys = [k.lower() for k in name[len(prefix) :].split("__") if k]
        if not keys or (len(keys) == 1 and keys[0] not in top_level):
            continue
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        node = data
        for key in keys[:-1]:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"{name}: {'.'.join(keys)} does not name a config key")
            node = child
        node[keys[-1]] = value
        applied[".".join(keys)] = name
    return applied


def blame_environment(exc: ConfigError, applied: typing.Mapping[str, str]) -> ConfigError:
    """`exc`, naming the variable when its key was set (or created) from the environment:
    `sever: unknown key` alone would send the user looking through the config file."""
    message = str(exc)
    where = message.split(": ", 1)[0]
    for key, name in applied.items():
        if key == where or key.startswith((where + ".", where + "[")):
            return ConfigError(f"{message} (set by {name})")
    return exc


# --- the tree as data: `datagate config print` ------------------------------------------------

REDACTED = "<redacted>"


def to_data(obj: Any, public: typing.Collection[str] = ()) -> Any:
    """A built config tree as plain YAML/JSON data that `build` reads back, with every secret
    redacted: an inline secret as `<redacted>`, a `{file: ...}` or `{env: ...}` one as that
    reference (a path or a variable name is not the secret), and a URL's password. Secrets
    whose value is in `public` (the demo's published keys) are shown as they are."""
    if isinstance(obj, Secret):
        kind, _, ref = obj.source.partition(" ")
        if kind in ("file", "env") and ref:
            return {kind: ref}
        return obj.reveal() if obj.reveal() in public else REDACTED
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: to_data(getattr(obj, f.name), public) for f in dataclasses.fields(obj) if f.init
        }
    if isinstance(obj, dict):
        return {k: to_data(v, public) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_data(v, public) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, str):
        return _without_password(obj)
    return obj


def _without_password(text: str) -> str:
    """`scheme://user:password@host/...` with the password redacted (a Redis or webhook URL)."""
    if "://" not in text or "@" not in text:
        return text
    try:
        parts = urlsplit(text)
        password = parts.password
    except ValueError:
        return text
    if not password:
        return text
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{REDACTED}@{host}"))


# --- the tree as a JSON Schema: editors and `datagate config schema` ---------------------------

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def json_schema(cls: type, *, title: str = "", schema_id: str = "") -> dict[str, Any]:
    """The JSON Schema (2020-12) of what `build(cls, ...)` accepts: types, required keys,
    defaults, `min`/`max`/`choices`/`nonempty`, and no unknown keys. Checks across fields (a
    dataclass's `validate`) are not expressible here: `datagate config check` makes them."""
    defs: dict[str, Any] = {}
    root = _object_schema(cls, defs)
    head: dict[str, Any] = {"$schema": SCHEMA_DIALECT}
    if schema_id:
        head["$id"] = schema_id
    if title:
        head["title"] = title
    return {**head, **root, "$defs": dict(sorted(defs.items()))}


def _object_schema(cls: type, defs: dict[str, Any]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        prop = _type_schema(hints[f.name], defs)
        meta = f.metadata
        if meta.get("doc"):
            prop = {"description": meta["doc"], **prop}
        for key, word in (("min", "minimum"), ("max", "maximum")):
            if key in meta:
                prop[word] = meta[key]
        if "choices" in meta:
            prop["enum"] = list(meta["choices"])
        if meta.get("nonempty"):
            prop.update(_nonempty(hints[f.name]))
        default = _default(f)
        if default is not dataclasses.MISSING:
            prop["default"] = default
        properties[f.name] = prop
        if _required(f):
            required.append(f.name)
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    schema["additionalProperties"] = False
    doc = (cls.__doc__ or "").strip()
    if doc and not doc.startswith(f"{cls.__name__}("):  # not the dataclass's generated one
        schema = {"description": " ".join(doc.split()), **schema}
    return schema


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return dataclasses.MISSING
    if _required(f):
        return dataclasses.MISSING
    return to_data(value)


def _nonempty(tp: Any) -> dict[str, Any]:
    if get_origin(tp) in (Union, types.UnionType):
        tp = next(a for a in get_args(tp) if a is not type(None))
    origin = get_origin(tp) or tp
    if origin is str:
        return {"minLength": 1}
    if origin in (list, tuple):
        return {"minItems": 1}
    if origin is dict:
        return {"minProperties": 1}
    return {}


_SECRET_SCHEMA = {
    "description": "a secret: the value itself, {file: PATH} or {env: NAME}",
    "anyOf": [
        {"type": "string"},
        {
            "type": "object",
            "properties": {"file": {"type": "string", "minLength": 1}},
            "required": ["file"],
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {"env": {"type": "string", "minLength": 1}},
            "required": ["env"],
            "additionalProperties": False,
        },
    ],
}


def _type_schema(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    origin = get_origin(tp)
    if tp is Any:
        return {}
    if tp is Secret:
        return dict(_SECRET_SCHEMA)
    if tp is type(None):
        return {"type": "null"}
    if origin in (Union, types.UnionType):
        return {"anyOf": [_type_schema(a, defs) for a in get_args(tp)]}
    if origin is Literal:
        return {"enum": list(get_args(tp))}
    if dataclasses.is_dataclass(tp):
        # The qualified name: each detector rule's settings class is a nested `Config`.
        name = tp.__qualname__.replace(".", "_")
        if name not in defs:
            defs[name] = {}  # a placeholder first: a tree that refers to itself terminates
            defs[name] = _object_schema(tp, defs)
        return {"$ref": f"#/$defs/{name}"}
    if origin in (list, tuple):
        return {"type": "array", "items": _type_schema(get_args(tp)[0], defs)}
    if origin is dict:
        return {"type": "object", "additionalProperties": _type_schema(get_args(tp)[1], defs)}
    simple = {bool: "boolean", int: "integer", float: "number", str: "string", Path: "string"}
    if tp in simple:
        schema: dict[str, Any] = {"type": simple[tp]}
        if tp is Path:
            schema["minLength"] = 1
        return schema
    raise TypeError(f"no JSON Schema for config type {_type_name(tp)}")
