"""Verification keys: loading PEM and JWKS keys and matching them to token algorithms."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.hazmat.primitives.serialization import load_pem_public_key as _load_pem
from jwt import PyJWK
from jwt.exceptions import PyJWTError

from gateway.configtree import readable
from gateway.errors import ConfigError

PublicKey = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_CURVES = {
    "ES256": "secp256r1",
    "ES384": "secp384r1",
    "ES512": "secp521r1",
    "ES521": "secp521r1",
    "ES256K": "secp256k1",
}
ASYMMETRIC_ALGORITHMS = _RSA_ALGORITHMS | frozenset(_EC_CURVES) | frozenset({"EdDSA"})
_HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}  # RFC 7518 §3.2
MIN_RSA_BITS = 2048
MAX_JWKS_BYTES = 1 << 20


@dataclasses.dataclass(frozen=True, slots=True)
class VerificationKey:
    """A public key, the `kid` it is published under, and the one algorithm it is bound to."""

    key: PublicKey
    kid: str | None = None
    alg: str | None = None  # from the JWK's `alg`; None = any algorithm the key type fits

    def fingerprint(self) -> bytes:
        return self.key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)

    def fits(self, alg: str) -> bool:
        return (self.alg is None or self.alg == alg) and key_fits(alg, self.key)


def key_fits(alg: str, key: object) -> bool:
    """Whether `key` is the kind of key `alg` verifies with (never an HMAC algorithm)."""
    if alg in _RSA_ALGORITHMS:
        return isinstance(key, rsa.RSAPublicKey)
    if alg in _EC_CURVES:
        return isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == _EC_CURVES[alg]
    if alg == "EdDSA":
        return isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)
    return False


def hmac_problem(secret: bytes, alg: str) -> str | None:
    """Why `secret` must not be used with `alg`, or None when it is fine."""
    if b"-----BEGIN" in secret:
        return "looks like a PEM key; an HMAC secret must never be a public key"
    need = _HMAC_MIN_BYTES[alg]
    if len(secret) < need:
        return f"{alg} needs a secret of at least {need} bytes, got {len(secret)}"
    return None


def _key_problem(key: Any) -> str | None:
    if not isinstance(key, PublicKey):
        return f"unsupported key type {type(key).__name__}"
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        return f"RSA key of {key.key_size} bits is too small (minimum {MIN_RSA_BITS})"
    return None


def load_pem_public_key(path: Path, where: str) -> PublicKey:
    """Read a PEM public key or X.509 certificate; errors name the config key `where`."""
    try:
        data = readable(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {str(path)!r}: {exc.strerror}") from None
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            key: Any = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = _load_pem(data)
    except ValueError:
        raise ConfigError(
            f"{where}: {str(path)!r} is not a PEM public key or certificate"
        ) from None
    problem = _key_problem(key)
    if problem:
        raise ConfigError(f"{where}: {problem}")
    return key


def parse_jwks(data: bytes) -> tuple[list[VerificationKey], list[str]]:
    """Parse a JWKS document into verification keys, plus the problems with skipped keys.

    Symmetric (`oct`) and encryption-only keys are skipped: a published key set holds
    only public keys, and an HMAC secret in it would be a public secret.
    """
    if len(data) > MAX_JWKS_BYTES:
        raise ValueError(f"the key set is larger than {MAX_JWKS_BYTES} bytes")
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise ValueError("the key set is not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise ValueError('the key set has no "keys" list')
    keys: list[VerificationKey] = []
    skipped: list[str] = []
    for i, jwk in enumerate(doc["keys"]):
        problem = _jwk_problem(jwk)
        if problem is None:
            try:
                key = PyJWK.from_dict(jwk).key
            except (PyJWTError, ValueError, TypeError) as exc:
                problem = f"cannot be loaded: {exc}"
            else:
                problem = _key_problem(key)
        if problem:
            skipped.append(f"keys[{i}]: {problem}")
            continue
        alg = jwk.get("alg")
        keys.append(VerificationKey(key, jwk.get("kid"), alg))
    return keys, skipped


def _jwk_problem(jwk: Any) -> str | None:
    if not isinstance(jwk, dict):
        return "not a JSON object"
    if jwk.get("kty") == "oct":
        return "symmetric (oct) keys are not accepted from a key set"
    if jwk.get("use", "sig") != "sig":
        return f"use {jwk.get('use')!r} is not for signatures"
    kid = jwk.get("kid")
    if kid is not None and not isinstance(kid, str):
        return "kid must be a string"
    alg = jwk.get("alg")
    if alg is not None and alg not in ASYMMETRIC_ALGORITHMS:
        return f"alg {alg!r} is not an accepted signature algorithm"
    return None


def load_jwks_file(path: Path, where: str) -> list[VerificationKey]:
    """Read a JWKS file; errors (including any unusable key) name the config key `where`."""
    try:
        data = readable(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {str(path)!r}: {exc.strerror}") from None
    try:
        keys, skipped = parse_jwks(data)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if skipped:
        raise ConfigError(f"{where}: {skipped[0]}")
    if not keys:
        raise ConfigError(f"{where}: the key set has no keys")
    return keys
