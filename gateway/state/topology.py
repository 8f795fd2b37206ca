"""Redis topologies behind a state URL: one server, a Sentinel-watched master, or a Cluster."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from gateway.errors import ConfigError

__all__ = ["SCHEMES", "Topology", "check_url", "connect", "parse_url", "redacted"]

Kind = Literal["single", "sentinel", "cluster"]
SCHEMES: dict[str, Kind] = {
    "redis": "single",
    "rediss": "single",
    "unix": "single",
    "redis+sentinel": "sentinel",
    "rediss+sentinel": "sentinel",
    "redis+cluster": "cluster",
    "rediss+cluster": "cluster",
}
# Query parameters a state URL may carry; anything else is a typo we refuse at start.
_TLS_PARAMS = frozenset(
    {"ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname"}
)
_PARAMS: dict[Kind, frozenset[str]] = {
    "single": _TLS_PARAMS | {"db"},
    "sentinel": _TLS_PARAMS,
    "cluster": _TLS_PARAMS,
}
_USAGE: dict[Kind, str] = {
    "single": "redis://HOST:PORT/DB",
    "sentinel": "redis+sentinel://HOST:PORT[,HOST:PORT]/MASTER/DB",
    "cluster": "redis+cluster://HOST:PORT[,HOST:PORT]",
}


@dataclasses.dataclass(frozen=True, slots=True)
class Topology:
    """A parsed state URL. `nodes` are the server (single), the Sentinels, or the cluster's
    seed nodes; `master` names the Sentinel service."""

    kind: Kind
    url: str
    nodes: tuple[tuple[str, int], ...] = ()
    master: str = ""
    db: int = 0
    tls: bool = False
    username: str | None = None
    password: str | None = None
    params: tuple[tuple[str, str], ...] = ()


def redacted(url: str) -> str:
    """The URL with any password replaced, fit for error messages and logs."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    credentials, at, hosts = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    return f"{scheme}://{credentials.partition(':')[0]}:***@{hosts}"


def _nodes(netloc: str, fail: Callable[[str], ConfigError]) -> tuple[tuple[str, int], ...]:
    nodes = []
    for part in netloc.rpartition("@")[2].split(","):
        if not part:
            raise fail("has an empty host in its host list")
        try:
            parts = urlsplit(f"//{part}")
            host, port = parts.hostname, parts.port
        except ValueError as exc:
            raise fail(f"host {part!r} cannot be parsed ({exc})") from None
        if not host:
            raise fail(f"host {part!r} has no name")
        if port == 0:
            raise fail("port must be from 1 to 65535")
        nodes.append((host, port or 6379))
    return tuple(nodes)


def parse_url(url: str) -> Topology:
    """Raise ConfigError naming the problem unless `url` is a usable Redis state URL."""
    shown = redacted(url)

    def fail(problem: str) -> ConfigError:
        return ConfigError(f"state URL {shown!r}: {problem}")

    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme = ""
    kind = SCHEMES.get(scheme)
    if kind is None:
        raise fail(
            f"unsupported scheme {scheme!r}; expected 'memory', redis://, rediss://, unix://, "
            "redis+sentinel:// or redis+cluster://"
        )
    # urlsplit reads one host only; the host list is taken apart by hand below.
    try:
        parts = urlsplit(url if kind == "single" else f"redis://{rest}")
        port = parts.port if kind == "single" else None
    except ValueError as exc:
        raise fail(f"cannot be parsed ({exc})") from None
    if parts.fragment:
        raise fail("must not have a #fragment")
    params = parse_qsl(parts.query, keep_blank_values=True)
    for name, value in params:
        if name not in _PARAMS[kind]:
            known = ", ".join(sorted(_PARAMS[kind]))
            raise fail(f"unknown parameter {name!r} (known: {known})")
        if name == "db" and not value.isdigit():
            raise fail(f"db must be a database number, got {value!r}")

    def topology(kind: Kind, **where: Any) -> Topology:
        return Topology(
            kind,
            url,
            tls=scheme.startswith("rediss"),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            params=tuple(params),
            **where,
        )

    if scheme == "unix":
        if not parts.path:
            raise fail("has no socket path (unix:///path/to/redis.sock)")
        return topology("single")
    if not parts.netloc.rpartition("@")[2]:
        raise fail(f"has no host ({_USAGE[kind]})")
    path = [p for p in parts.path.split("/") if p]
    if kind == "single":
        if not parts.hostname:
            raise fail(f"has no host ({_USAGE[kind]})")
        if port == 0:
            raise fail("port must be from 1 to 65535")
        db = parts.path.strip("/")
        if db and not db.isdigit():
            raise fail(f"the path must be a database number such as /15, got {parts.path!r}")
        return topology("single", nodes=((parts.hostname, port or 6379),), db=int(db or 0))
    nodes = _nodes(parts.netloc, fail)
    if kind == "cluster":
        if path:
            raise fail(f"a cluster has one database and no path; got {parts.path!r}")
        return topology("cluster", nodes=nodes)
    if not path or len(path) > 2:
        raise fail(f"the path must be /MASTER or /MASTER/DB ({_USAGE[kind]}), got {parts.path!r}")
    if len(path) == 2 and not path[1].isdigit():
        raise fail(f"the database must be a number, got {path[1]!r}")
    # `//0` or `/%20/0` would otherwise read as master "0" or " ": a master name is never blank.
    master = unquote(parts.path.split("/")[1])
    if not master.strip():
        raise fail(f"the master name is empty ({_USAGE[kind]}), got {parts.path!r}")
    db_number = int(path[1]) if len(path) == 2 else 0
    return topology("sentinel", nodes=nodes, master=master, db=db_number)


def check_url(url: str) -> None:
    """Raise ConfigError naming the problem unless `url` is a usable Redis state URL."""
    parse_url(url)


def connect(
    topology: Topology,
    *,
    timeout: float,
    max_connections: int,
    password: str | None = None,
    sentinel_password: str | None = None,
) -> Redis | RedisCluster:
    """A client for the topology. Nothing connects yet. Commands are never retried, so a
    dead server gives an error promptly; a Sentinel client asks the Sentinels for the
    master on each new connection, a Cluster client follows the slot map."""
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
    }
    secret = password if password is not None else topology.password
    if topology.username:
        options["username"] = topology.username
    if secret is not None:
        options["password"] = secret
    tls = {name: value for name, value in topology.params if name in _TLS_PARAMS}
    if topology.tls:
        options["ssl"] = True
        options.update(tls)
        if "ssl_check_hostname" in tls:
            options["ssl_check_hostname"] = tls["ssl_check_hostname"].lower() in ("1", "true")
    try:
        if topology.kind == "single":
            pool = BlockingConnectionPool.from_url(
                topology.url,
                max_connections=max_connections,
                timeout=timeout,
                **{k: v for k, v in options.items() if k != "ssl"},
            )
            return Redis.from_pool(pool)
        if topology.kind == "sentinel":
            sentinel_options = {
                "socket_timeout": timeout,
                "socket_connect_timeout": timeout,
            }
            if sentinel_password is not None:
                sentinel_options["password"] = sentinel_password
            sentinels = Sentinel(topology.nodes, sentinel_kwargs=sentinel_options)
            return sentinels.master_for(
                topology.master,
                redis_class=Redis,
                db=topology.db,
                max_connections=max_connections,
                **options,
            )
        # A few attempts without delay: enough to follow MOVED and ASK redirections after
        # a slot moves, few enough that a dead node still fails the call promptly.
        options["retry"] = Retry(NoBackoff(), 3)
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in topology.nodes],
            max_connections=max_connections,
            **options,
        )
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"state URL {redacted(topology.url)!r}: {exc}") from None
