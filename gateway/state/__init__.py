"""State shared between requests and gateway processes: pick a backend from a URL."""

from __future__ import annotations

from typing import Any

from gateway.errors import ConfigError, StateUnavailable
from gateway.state.base import MessageHandler, StateBackend
from gateway.state.memory import MemoryBackend
from gateway.state.redis import RedisBackend

__all__ = [
    "MemoryBackend",
    "MessageHandler",
    "RedisBackend",
    "StateBackend",
    "StateUnavailable",
    "open_backend",
]


def open_backend(url: str, prefix: str = "datagate:", **options: Any) -> StateBackend:
    """`"memory"` for one process, or `redis://`, `rediss://`, `unix://`, `redis+sentinel://`
    or `redis+cluster://` for shared state; `options` are RedisBackend's (passwords, durable
    writes: `StateConfig.options()`).

    Nothing connects here: call `start()` on the result. A URL that cannot work raises
    ConfigError naming the problem (passwords are never shown).
    """
    if not isinstance(url, str) or not url.strip():
        raise ConfigError("state URL is empty; expected 'memory' or a redis:// URL")
    if not isinstance(prefix, str) or not prefix:
        raise ConfigError("state prefix must be a non-empty string")
    if url == "memory":
        return MemoryBackend()
    return RedisBackend(url, prefix, **options)
