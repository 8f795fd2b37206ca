"""The gateway's one config file: loaded from YAML, overridden by DATAGATE_* variables,
validated into a typed tree before anything starts."""

from __future__ import annotations

import copy
import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from detectors.config import DetectionConfig
from gateway.access.config import AccessConfig
from gateway.audit.config import AuditConfig
from gateway.breaker.config import BreakerConfig
from gateway.configtree import blame_environment, build, env_overrides, field, reading_from
from gateway.errors import ConfigError
from gateway.identity.config import IdentityConfig
from gateway.incidents.config import IncidentsConfig
from gateway.limits import LimitsConfig
from gateway.masking.config import MaskingConfig
from gateway.policy.config import PolicyConfig
from gateway.reports.config import ReportsConfig
from gateway.state.config import StateConfig
from gateway.tls import ListenerTLSConfig, UpstreamTLSConfig, check_files

ENV_PREFIX = "DATAGATE_"


@dataclasses.dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "0.0.0.0"
    port: int = field(8080, min=0, max=65535)
    request_max_bytes: int = field(10 * 1024 * 1024, min=0)
    max_path_length: int = field(2048, min=16, max=65536)
    max_header_bytes: int = field(16384, min=1024, max=1048576)
    # Peers whose X-Forwarded-For is believed (load balancers); everyone else is the client.
    trusted_proxies: list[str] = field([])
    # SIGTERM: stop accepting, give in-flight requests this long to finish, then cut them.
    shutdown_timeout: float = field(10.0, min=0.1, max=3600.0)
    access_log: bool = True
    tls: ListenerTLSConfig | None = None

    def validate(self, path: str) -> None:
        for i, net in enumerate(self.trusted_proxies):
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ConfigError(
                    f"{path}.trusted_proxies[{i}]: not an IP address or network: {net!r}"
                ) from None


@dataclasses.dataclass(frozen=True, slots=True)
class AdminConfig:
    host: str = "127.0.0.1"
    port: int = field(9090, min=0, max=65535)
    roles: list[str] = field(["soc", "security-officer"], nonempty=True)
    tls: ListenerTLSConfig | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class HealthConfig:
    """A listener with /healthz and /readyz only, for a Kubernetes or load-balancer probe: it
    can face the network while the admin listener (the SOC API) stays on loopback."""

    host: str = "0.0.0.0"
    port: int = field(9091, min=0, max=65535)


@dataclasses.dataclass(frozen=True, slots=True)
class UpstreamConfig:
    url: str = field(nonempty=True)
    connect_timeout: float = field(2.0, min=0.01)
    total_timeout: float = field(30.0, min=0.01)
    pool_size: int = field(100, min=1, max=10000)
    tls: UpstreamTLSConfig | None = None  # https:// only; without it, the system's CAs

    def validate(self, path: str) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"{path}.url: must be an http:// or https:// URL, got {self.url!r}")
        if self.tls is not None and not self.url.startswith("https://"):
            raise ConfigError(f"{path}.tls: needs an https:// url, got {self.url!r}")


@dataclasses.dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: str = field("info", choices=("debug", "info", "warning", "error"))
    # json: structlog's keys (`event` is a string); ecs: Elastic Common Schema lines, whose
    # `event` is an object, for an ECS index (docs/siem.md).
    format: str = field("json", choices=("json", "ecs"))


@dataclasses.dataclass(frozen=True, slots=True)
class Config:
    identity: IdentityConfig
    upstreams: dict[str, UpstreamConfig] = field({}, nonempty=True)
    server: ServerConfig = field(ServerConfig())
    admin: AdminConfig = field(AdminConfig())
    # Off (null) by default: the admin listener serves /healthz and /readyz as well.
    health: HealthConfig | None = None
    state: StateConfig = field(StateConfig())
    logging: LoggingConfig = field(LoggingConfig())
    policy: PolicyConfig = field(PolicyConfig())
    masking: MaskingConfig = field(MaskingConfig())
    limits: LimitsConfig = field(LimitsConfig())
    detection: DetectionConfig = field(DetectionConfig())
    breaker: BreakerConfig = field(BreakerConfig())
    incidents: IncidentsConfig = field(IncidentsConfig())
    audit: AuditConfig = field(AuditConfig())
    access: AccessConfig = field(AccessConfig())
    reports: ReportsConfig = field(ReportsConfig())
    data_dir: Path = Path("./datagate-data")


def parse_config(
    data: Any, *, base_dir: Path, environ: Mapping[str, str] | None = None, source: str = "config"
) -> Config:
    """Validate parsed YAML (after env overrides) into a Config; relative paths are resolved
    against `base_dir`, the config file's folder."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the config must be a mapping of sections")
    data = copy.deepcopy(data)
    # data_dir is the one top-level key that is not a section: DATAGATE_DATA_DIR.
    applied = env_overrides(
        data, os.environ if environ is None else environ, ENV_PREFIX, ("data_dir",)
    )
    try:
        with reading_from(base_dir):
            config = build(Config, data)
    except ConfigError as exc:
        raise blame_environment(exc, applied) from None
    # What the gateway writes (audit log, incidents) lives under data_dir; what it reads
    # (policies, keys) is found from the config file's folder.
    data_dir = resolve_paths(config.data_dir, base_dir)
    config = dataclasses.replace(
        config,
        data_dir=data_dir,
        audit=resolve_paths(config.audit, data_dir),
        incidents=resolve_paths(config.incidents, data_dir),
    )
    config = resolve_paths(config, base_dir)
    check_files(config)
    return config


def resolve_paths(obj: Any, base_dir: Path) -> Any:
    """Every Path in the tree, made absolute against `base_dir`."""
    if isinstance(obj, Path):
        return obj if obj.is_absolute() else (base_dir / obj).resolve()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {
            f.name: resolve_paths(getattr(obj, f.name), base_dir) for f in dataclasses.fields(obj)
        }
        return dataclasses.replace(obj, **changes)
    if isinstance(obj, dict):
        return {k: resolve_paths(v, base_dir) for k, v in obj.items()}
    if isinstance(obj, list):
        return [resolve_paths(v, base_dir) for v in obj]
    return obj


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    return parse_config(data, base_dir=path.parent.resolve(), environ=environ, source=str(path))
