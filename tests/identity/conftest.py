"""Identity fixtures: keys generated once per session, a settable clock."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tests.identity.helpers import Clock, KeyPair


def _pair(private: object) -> KeyPair:
    return KeyPair(private, private.public_key())  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def rsa_key() -> KeyPair:
    return _pair(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="session")
def rsa_key2() -> KeyPair:
    return _pair(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="session")
def ec_key() -> KeyPair:
    return _pair(ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture(scope="session")
def ed_key() -> KeyPair:
    return _pair(ed25519.Ed25519PrivateKey.generate())


@pytest.fixture
def clock() -> Clock:
    return Clock()
