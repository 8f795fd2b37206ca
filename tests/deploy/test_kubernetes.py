"""deploy/kubernetes: valid Kubernetes objects whose probes and ports are the config's, and
whose config passes `datagate config check`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.config import Config, parse_config
from tests.support import delete_prefix

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "deploy" / "kubernetes"
DATAGATE = str(Path(sys.executable).with_name("datagate"))
REDIS = "redis://127.0.0.1:6379/15"
KUBERNETES = "1.30.0"
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def objects() -> list[dict[str, Any]]:
    found = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            found += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def one(kind: str, name: str) -> dict[str, Any]:
    (obj,) = [o for o in objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def gateway_container() -> dict[str, Any]:
    (container,) = one("Deployment", "datagate")["spec"]["template"]["spec"]["containers"]
    return container


def config_path_in_pod(container: dict[str, Any]) -> str:
    args = container["args"]
    return args[args.index("--config") + 1]


def environ(container: dict[str, Any], secrets: dict[str, str]) -> dict[str, str]:
    """The container's environment as the kubelet would set it: secrets from `secrets`,
    the pod's name made up, `$(VAR)` expanded from the variables before it."""
    env: dict[str, str] = {}
    for var in container["env"]:
        if "value" in var:
            env[var["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], var["value"])
        elif "secretKeyRef" in var["valueFrom"]:
            env[var["name"]] = secrets[var["valueFrom"]["secretKeyRef"]["key"]]
        else:
            assert var["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
            env[var["name"]] = "datagate-7d9f-x2k4p"
    return env


SECRETS = {"jwt-secret": "k" * 64, "pseudonym-secret": "p" * 64}


def config_text() -> str:
    return one("ConfigMap", "datagate-config")["data"]["datagate.yaml"]


def pod_config(base_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    env = environ(gateway_container(), SECRETS)
    for name, value in env.items():  # {env: NAME} secrets are read from the process
        monkeypatch.setenv(name, value)
    return parse_config(yaml.safe_load(config_text()), base_dir=base_dir, environ=env)


@pytest.fixture
def policies_beside(tmp_path: Path) -> Path:
    """The config's folder as in the pod: the config file and the policies ConfigMap."""
    (tmp_path / "policies").symlink_to(REPO / "policies")
    return tmp_path


@pytest.mark.parametrize("obj", objects(), ids=lambda o: f"{o['kind']}/{o['metadata']['name']}")
def test_every_manifest_is_a_valid_kubernetes_object(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, KUBERNETES, strict=True)


def test_the_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())["resources"]
    shipped = [p.name for p in MANIFESTS.glob("*.yaml") if p.name != "kustomization.yaml"]
    assert sorted(listed) == sorted(shipped)


def test_probes_and_ports_are_the_configs(
    policies_beside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = pod_config(policies_beside, monkeypatch)
    deployment = one("Deployment", "datagate")
    assert deployment["spec"]["replicas"] == 2
    container = gateway_container()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    # Data traffic on the server port, probes on the health listener, which is bound where
    # the kubelet reaches it; the admin (SOC) port is on loopback and not a container port.
    assert ports == {"http": config.server.port, "health": config.health.port}
    assert config.server.host == "0.0.0.0" and config.health.host == "0.0.0.0"
    assert config.admin.host in LOOPBACK and config.admin.port not in ports.values()
    probes = {
        kind: container[kind]["httpGet"]
        for kind in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert probes["startupProbe"]["path"] == probes["livenessProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert {ports[p["port"]] for p in probes.values()} == {config.health.port}
    # Over twice the shutdown timeout: in-flight requests end and the audit log is flushed.
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > 2 * config.server.shutdown_timeout
    # The Service sends data traffic to the server port, and only that.
    service = one("Service", "datagate")
    (port,) = service["spec"]["ports"]
    assert ports[port["targetPort"]] == config.server.port
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    # The ConfigMap is mounted where --config says.
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "config"]
    assert mount["mountPath"] == config_path_in_pod(container)
    assert mount["subPath"] == "datagate.yaml"


def test_both_replicas_share_state_in_the_shipped_redis(
    policies_beside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = pod_config(policies_beside, monkeypatch)
    match = re.fullmatch(r"redis://([\w.-]+):(\d+)/\d+", config.state.url)
    assert match is not None, config.state.url
    redis = one("Service", match.group(1))
    assert [p["port"] for p in redis["spec"]["ports"]] == [int(match.group(2))]
    pods = one("Deployment", "datagate-redis")["spec"]["template"]["metadata"]["labels"]
    assert redis["spec"]["selector"].items() <= pods.items()
    # Each pod writes its own audit log under the shared volume.
    assert config.data_dir == Path("/var/lib/datagate/datagate-7d9f-x2k4p")


def test_the_init_container_checks_the_config_the_gateway_runs() -> None:
    spec = one("Deployment", "datagate")["spec"]["template"]["spec"]
    (check,) = spec["initContainers"]
    gateway = gateway_container()
    assert check["args"][:2] == ["config", "check"]
    assert config_path_in_pod(check) == config_path_in_pod(gateway)
    assert check["image"] == gateway["image"]
    assert check["env"] == gateway["env"] and check["volumeMounts"] == gateway["volumeMounts"]


def test_config_check_passes_the_configmaps_config(tmp_path: Path, policies_beside: Path) -> None:
    path = policies_beside / "datagate.yaml"
    path.write_text(config_text())
    prefix = f"test:k8s:{uuid.uuid4().hex}:"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAGATE_")}
    env.update(environ(gateway_container(), SECRETS))
    # The cluster's names are not resolvable here: Redis and the data dir are the test's.
    env.update(
        DATAGATE_STATE__URL=REDIS,
        DATAGATE_STATE__PREFIX=f'"{prefix}"',  # a YAML scalar: quoted, for the colons
        DATAGATE_DATA_DIR=str(tmp_path / "data"),
    )
    try:
        result = subprocess.run(
            [DATAGATE, "config", "check", "--config", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=env,
        )
    finally:
        delete_prefix(REDIS, prefix)
    assert result.returncode == 0, result.stderr
    assert "listeners data 0.0.0.0:8080, admin 127.0.0.1:9090, health 0.0.0.0:9091" in (
        result.stdout
    )
    assert "state      redis answers" in result.stdout
