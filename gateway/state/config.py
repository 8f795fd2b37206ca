"""The `state` config section: where shared state lives and how writes are made durable."""

from __future__ import annotations

import dataclasses
from typing import Any

from gateway.configtree import Secret, field
from gateway.errors import ConfigError
from gateway.state.topology import parse_url


@dataclasses.dataclass(frozen=True, slots=True)
class StateConfig:
    """`url`: `memory`, `redis://`, `rediss://`, `unix://`, `redis+sentinel://HOST:PORT[,...]
    /MASTER/DB` or `redis+cluster://HOST:PORT[,...]`. `password` is the Redis servers' (it
    wins over one in the URL), `sentinel_password` the Sentinels'. Writes of breakers, grants,
    revocations and incidents wait for `wait_replicas` replicas, at most `wait_timeout` s."""

    url: str = "memory"
    prefix: str = field("datagate:", nonempty=True)
    password: Secret | None = None
    sentinel_password: Secret | None = None
    wait_replicas: int = field(0, min=0, max=16, doc="replicas a durable write waits for")
    wait_timeout: float = field(0.1, min=0.001, max=5.0, doc="seconds a durable write waits")

    def validate(self, path: str) -> None:
        if self.url == "memory":
            for name in ("password", "sentinel_password"):
                if getattr(self, name) is not None:
                    raise ConfigError(f"{path}.{name}: the memory backend takes no password")
            if self.wait_replicas:
                raise ConfigError(f"{path}.wait_replicas: the memory backend has no replicas")
            return
        try:
            topology = parse_url(self.url)
        except ConfigError as exc:
            raise ConfigError(f"{path}.url: {exc}") from None
        if self.sentinel_password is not None and topology.kind != "sentinel":
            raise ConfigError(f"{path}.sentinel_password: only for redis+sentinel:// URLs")
        if self.wait_replicas and topology.kind == "cluster":
            raise ConfigError(f"{path}.wait_replicas: not supported with redis+cluster:// URLs")

    def options(self) -> dict[str, Any]:
        """The backend's keyword arguments beyond the URL and prefix."""
        return {
            "password": None if self.password is None else self.password.reveal(),
            "sentinel_password": (
                None if self.sentinel_password is None else self.sentinel_password.reveal()
            ),
            "wait_replicas": self.wait_replicas,
            "wait_timeout": self.wait_timeout,
        }
