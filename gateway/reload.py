"""Config reload (SIGHUP): which keys changed, which apply live, which wait for a restart."""

from __future__ import annotations

import dataclasses
from typing import Any

from gateway.config import Config

Key = tuple[str, ...]

# Keys a running gateway applies on reload: each names a key and everything below it; `*`
# stands for one name (an upstream). Everything else needs a restart.
LIVE: tuple[Key, ...] = (
    ("limits",),
    ("detection",),
    ("breaker",),
    ("masking",),
    ("identity",),
    ("server", "trusted_proxies"),
    ("server", "access_log"),
    ("server", "max_path_length"),
    ("upstreams", "*", "connect_timeout"),
    ("upstreams", "*", "total_timeout"),
)
# Inside the live sections, what is held by long-lived parts: the loaded model, whether the
# detector exists at all, and the revocation list's reload loop.
RESTART: tuple[Key, ...] = (
    ("detection", "enabled"),
    ("detection", "model"),
    ("identity", "revocation_reload"),
)


@dataclasses.dataclass(frozen=True, slots=True)
class ReloadPlan:
    """What a new config changes: `live` keys are applied, `restart` keys are not (yet)."""

    live: tuple[Key, ...]
    restart: tuple[Key, ...]

    def sections(self) -> frozenset[str]:
        """The top-level sections with a live change."""
        return frozenset(key[0] for key in self.live)


def dotted(key: Key) -> str:
    return ".".join(key)


def changed_keys(old: Any, new: Any, prefix: Key = ()) -> list[Key]:
    """The keys whose values differ, as deep as both trees have the same shape."""
    if dataclasses.is_dataclass(old) and not isinstance(old, type) and type(old) is type(new):
        out: list[Key] = []
        for f in dataclasses.fields(old):
            out += changed_keys(getattr(old, f.name), getattr(new, f.name), (*prefix, f.name))
        return out
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for name in sorted(old.keys() | new.keys()):
            if name not in old or name not in new:
                out.append((*prefix, name))
            else:
                out += changed_keys(old[name], new[name], (*prefix, name))
        return out
    return [] if old == new else [prefix]


def _covers(pattern: Key, key: Key) -> bool:
    head = key[: len(pattern)]
    return len(head) == len(pattern) and all(
        p in ("*", k) for p, k in zip(pattern, head, strict=True)
    )


def is_live(key: Key) -> bool:
    return any(_covers(p, key) for p in LIVE) and not any(_covers(p, key) for p in RESTART)


def plan(running: Config, new: Config) -> ReloadPlan:
    keys = changed_keys(running, new)
    return ReloadPlan(
        tuple(k for k in keys if is_live(k)), tuple(k for k in keys if not is_live(k))
    )


def adopt(running: Config, new: Config, keys: tuple[Key, ...]) -> Config:
    """`running` with the values of `keys` taken from `new`: the config now in force."""
    out: Any = running
    for key in keys:
        out = _replace(out, new, key)
    return out


def _replace(obj: Any, new: Any, key: Key) -> Any:
    name, rest = key[0], key[1:]
    value = new[name] if isinstance(new, dict) else getattr(new, name)
    if rest:
        value = _replace(obj[name] if isinstance(obj, dict) else getattr(obj, name), value, rest)
    if isinstance(obj, dict):
        return {**obj, name: value}
    return dataclasses.replace(obj, **{name: value})
