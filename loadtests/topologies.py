"""Real Redis topologies for the benchmark and the tests, from redis-server on loopback: a master
with a replica watched by three Sentinels, and a three-master Redis Cluster."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
MASTER = "datagate"  # the Sentinel service name
PATIENCE = 30.0  # seconds a topology may take to form; a hang guard, not a timing assertion


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_cluster_port() -> int:
    """A free port whose cluster bus port (10,000 higher) is free too."""
    for _ in range(200):
        port = random.randint(20000, 45000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def _until(done: object, what: str, patience: float = PATIENCE) -> None:
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        try:
            if done():  # type: ignore[operator]
                return
        except (redis.RedisError, OSError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what}: not within {patience:.0f} s")


class Server:
    """One redis-server process (a data node or a Sentinel)."""

    def __init__(
        self,
        folder: Path,
        port: int,
        args: list[str],
        *,
        sentinel: bool = False,
        password: str | None = None,
    ):
        assert REDIS_SERVER is not None
        self.port = port
        folder.mkdir(parents=True, exist_ok=True)
        conf = folder / f"{port}.conf"
        lines = [f"port {port}", "bind 127.0.0.1", f'dir "{folder}"', 'save ""']
        conf.write_text("\n".join([*lines, *args]) + "\n")
        command = [REDIS_SERVER, str(conf)] + (["--sentinel"] if sentinel else [])
        self.log = (folder / f"{port}.log").open("wb")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        self.client = redis.Redis(
            port=port, password=password, socket_timeout=2, socket_connect_timeout=2
        )
        _until(self.client.ping, f"redis-server on port {port} answering")

    def kill(self) -> None:
        """SIGKILL: the server is gone at once, as when its host fails."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        self.kill()
        self.client.close()
        self.log.close()


class SentinelTopology:
    """A master, one replica and three Sentinels (quorum 2) that fail over within seconds;
    with `password` the data nodes require it, with `sentinel_password` the Sentinels."""

    def __init__(
        self, folder: Path, password: str | None = None, sentinel_password: str | None = None
    ) -> None:
        self.servers: list[Server] = []
        auth = [f"requirepass {password}", f"masterauth {password}"] if password else []
        try:
            self.master = self._add(folder / "master", free_port(), auth, password)
            self.replica = self._add(
                folder / "replica",
                free_port(),
                [*auth, f"replicaof 127.0.0.1 {self.master.port}"],
                password,
            )
            watching = [f"sentinel auth-pass {MASTER} {password}"] if password else []
            if sentinel_password:
                watching += [
                    f"requirepass {sentinel_password}",
                    f"sentinel sentinel-pass {sentinel_password}",
                ]
            monitor = [
                f"sentinel monitor {MASTER} 127.0.0.1 {self.master.port} 2",
                f"sentinel down-after-milliseconds {MASTER} 1000",
                f"sentinel failover-timeout {MASTER} 5000",
                f"sentinel parallel-syncs {MASTER} 1",
                *watching,
            ]
            self.sentinels = [
                self._add(
                    folder / f"sentinel{n}", free_port(), monitor, sentinel_password, sentinel=True
                )
                for n in range(3)
            ]
            _until(self._formed, "the Sentinels seeing the replica and each other")
        except BaseException:
            self.stop()
            raise

    def _add(
        self,
        folder: Path,
        port: int,
        args: list[str],
        password: str | None = None,
        *,
        sentinel: bool = False,
    ) -> Server:
        server = Server(folder, port, args, sentinel=sentinel, password=password)
        self.servers.append(server)
        return server

    def _formed(self) -> bool:
        for s in self.sentinels:
            info = s.client.sentinel_master(MASTER)
            if int(info["num-slaves"]) < 1 or int(info["num-other-sentinels"]) < 2:
                return False
        return self.replica.client.info("replication")["master_link_status"] == "up"

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{MASTER}/0"

    def master_port(self) -> int:
        """The port the Sentinels now name as master."""
        _host, port = self.sentinels[0].client.sentinel_get_master_addr_by_name(MASTER)
        return int(port)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


class ClusterTopology:
    """Three masters sharing the 16384 slots, no replicas."""

    def __init__(self, folder: Path) -> None:
        assert REDIS_CLI is not None
        self.servers: list[Server] = []
        try:
            for _ in range(3):
                port = free_cluster_port()
                args = [
                    "cluster-enabled yes",
                    f"cluster-config-file nodes-{port}.conf",
                    "cluster-node-timeout 2000",
                    "appendonly no",
                ]
                self.servers.append(Server(folder / str(port), port, args))
            nodes = [f"127.0.0.1:{s.port}" for s in self.servers]
            subprocess.run(
                [REDIS_CLI, "--cluster", "create", *nodes, "--cluster-yes"],
                check=True,
                capture_output=True,
                timeout=PATIENCE,
            )
            _until(self._formed, "the cluster's state becoming ok")
        except BaseException:
            self.stop()
            raise

    def _formed(self) -> bool:
        return all(s.client.cluster("info")["cluster_state"] == "ok" for s in self.servers)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{s.port}" for s in self.servers)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
