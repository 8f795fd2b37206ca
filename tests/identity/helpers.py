"""Identity test helpers: generated keys, a settable clock, configs and token signing."""

from __future__ import annotations

import dataclasses
import json
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.configtree import build
from gateway.identity.config import IdentityConfig

ISSUER = "https://idp.example.gov"
AUDIENCE = "datagate"
SECRET = "s" * 64  # long enough for HS512
NOW = 1_900_000_000.0


class Clock:
    """Wall-clock seconds that a test sets and advances."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclasses.dataclass(frozen=True)
class KeyPair:
    private: Any
    public: Any

    @property
    def private_pem(self) -> str:
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    @property
    def public_pem(self) -> bytes:
        return self.public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def jwk(self, kid: str | None, alg: str | None = None) -> dict[str, Any]:
        if isinstance(self.public, rsa.RSAPublicKey):
            key = jwt.algorithms.RSAAlgorithm.to_jwk(self.public, as_dict=True)
        elif isinstance(self.public, ec.EllipticCurvePublicKey):
            key = jwt.algorithms.ECAlgorithm.to_jwk(self.public, as_dict=True)
        else:
            key = jwt.algorithms.OKPAlgorithm.to_jwk(self.public, as_dict=True)
        if kid is not None:
            key["kid"] = kid
        if alg is not None:
            key["alg"] = alg
        return dict(key)


def jwks(*keys: dict[str, Any]) -> bytes:
    return json.dumps({"keys": list(keys)}).encode()


def identity_config(issuers: list[dict[str, Any]], **top: Any) -> IdentityConfig:
    return build(IdentityConfig, {"issuers": issuers, **top}, "identity")


def hs_issuer(**over: Any) -> dict[str, Any]:
    return {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "algorithms": ["HS256", "HS384", "HS512"],
        "secret": SECRET,
        **over,
    }


def pem_file(tmp_path: Path, pair: KeyPair) -> str:
    path = tmp_path / f"{uuid.uuid4().hex}.pem"
    path.write_bytes(pair.public_pem)
    return str(path)


def claims(now: float = NOW, **over: Any) -> dict[str, Any]:
    """Valid claims for the default issuer at `now`; keys set to None are left out."""
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "dept": "health",
        "clearance": 3,
        "roles": ["analyst"],
        "jti": uuid.uuid4().hex,
        "iat": int(now),
        "exp": int(now) + 600,
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict[str, Any], key: Any = SECRET, alg: str = "HS256", **headers: Any) -> str:
    return jwt.encode(payload, key, algorithm=alg, headers=headers or None)
