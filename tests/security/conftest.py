"""Fixtures for the adversarial suite: the hostile upstream, an RS256 key, the gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.gateway.conftest import RunningGateway, running_gateway
from tests.security.helpers import HostileUpstream, security_config


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def rsa_public_pem(tmp_path_factory: pytest.TempPathFactory, rsa_key: rsa.RSAPrivateKey) -> Path:
    """The RS256 issuer's public key file (the attacker knows it: it is public)."""
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path = tmp_path_factory.mktemp("keys") / "rsa.pem"
    path.write_bytes(pem)
    return path


@pytest.fixture
async def hostile(aiohttp_server: Any) -> HostileUpstream:
    rec = HostileUpstream()
    server = await aiohttp_server(rec.app)
    rec.url = str(server.make_url("")).rstrip("/")
    return rec


@pytest.fixture
async def gw(
    tmp_path: Path, hostile: HostileUpstream, rsa_public_pem: Path
) -> AsyncIterator[RunningGateway]:
    async with running_gateway(security_config(tmp_path, hostile, rsa_public_pem)) as running:
        yield running
