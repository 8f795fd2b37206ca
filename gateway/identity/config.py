"""The `identity` config: trusted token issuers, their keys and claim names, dev signing key."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.serialization import load_pem_private_key

from gateway.configtree import Secret, field
from gateway.errors import ConfigError
from gateway.identity.keys import (
    ASYMMETRIC_ALGORITHMS,
    HMAC_ALGORITHMS,
    hmac_problem,
    key_fits,
    load_jwks_file,
    load_pem_public_key,
)

SUPPORTED_ALGORITHMS = HMAC_ALGORITHMS | ASYMMETRIC_ALGORITHMS


def _check_algorithm(alg: str, path: str) -> None:
    if alg.lower() == "none":
        raise ConfigError(f"{path}: the 'none' algorithm is never allowed")
    if alg not in SUPPORTED_ALGORITHMS:
        known = ", ".join(sorted(SUPPORTED_ALGORITHMS))
        raise ConfigError(f"{path}: unknown algorithm {alg!r} (known: {known})")


@dataclasses.dataclass(frozen=True, slots=True)
class ClaimNames:
    """Which claim carries each principal attribute (for issuers with other names)."""

    subject: str = field("sub", nonempty=True)
    department: str = field("dept", nonempty=True)
    clearance: str = field("clearance", nonempty=True)
    roles: str = field("roles", nonempty=True)
    jti: str = field("jti", nonempty=True)
    client_id: list[str] = field(["client_id", "azp"])  # the first one present wins
    purpose: str = field("purpose", nonempty=True)
    purposes: str = field("purposes", nonempty=True)


@dataclasses.dataclass(frozen=True, slots=True)
class PemKey:
    """A PEM public key (or X.509 certificate) file, optionally bound to a `kid`."""

    file: Path
    kid: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class JwksConfig:
    """A JSON Web Key Set read from a file or fetched from a URL, cached and refreshed."""

    file: Path | None = None
    url: str | None = None
    cache_ttl: float = field(300.0, min=1.0, max=86400.0)
    # A token with an unknown kid triggers a refresh, at most once per this many seconds,
    # so forged kids cannot turn the gateway into a load generator against the issuer.
    refresh_interval: float = field(30.0, min=0.0, max=3600.0)
    timeout: float = field(5.0, min=0.1, max=60.0)

    def validate(self, path: str) -> None:
        if (self.file is None) == (self.url is None):
            raise ConfigError(f"{path}: give exactly one of file or url")
        if self.file is not None:
            load_jwks_file(self.file, f"{path}.file")
        if self.url is not None:
            _check_jwks_url(self.url, f"{path}.url")


def _check_jwks_url(url: str, path: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(f"{path}: expected an https:// URL, got {url!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigError(f"{path}: keys must be fetched over https (http only for loopback)")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclasses.dataclass(frozen=True, slots=True)
class IssuerConfig:
    """One trusted token issuer (`iss`), its audience, algorithms and keys."""

    issuer: str = field(nonempty=True)
    audience: str | list[str] = field(nonempty=True)  # one or several accepted `aud` values
    algorithms: list[str] = field(nonempty=True)
    secret: Secret | None = None  # for HS256/384/512
    public_keys: list[PemKey] = field([])  # for RS*, PS*, ES*, EdDSA
    jwks: JwksConfig | None = None  # for RS*, PS*, ES*, EdDSA
    leeway: float = field(30.0, min=0.0, max=300.0)
    required_claims: list[str] = field(["exp", "jti"])
    claims: ClaimNames = field(ClaimNames())

    @property
    def audiences(self) -> tuple[str, ...]:
        return (self.audience,) if isinstance(self.audience, str) else tuple(self.audience)

    def validate(self, path: str) -> None:
        for i, alg in enumerate(self.algorithms):
            _check_algorithm(alg, f"{path}.algorithms[{i}]")
        hmac = [a for a in self.algorithms if a in HMAC_ALGORITHMS]
        asym = [a for a in self.algorithms if a in ASYMMETRIC_ALGORITHMS]
        has_public = bool(self.public_keys) or self.jwks is not None
        if hmac and self.secret is None:
            raise ConfigError(f"{path}.secret: is required for {', '.join(hmac)}")
        if self.secret is not None:
            if not hmac:
                raise ConfigError(
                    f"{path}.secret: a secret needs an HMAC algorithm (HS256/384/512) in algorithms"
                )
            for alg in hmac:
                problem = hmac_problem(self.secret.reveal().encode(), alg)
                if problem:
                    raise ConfigError(f"{path}.secret: {problem}")
        if asym and not has_public:
            raise ConfigError(f"{path}.public_keys: {', '.join(asym)} need public_keys or jwks")
        if has_public and not asym:
            raise ConfigError(
                f"{path}.algorithms: public keys need an asymmetric algorithm "
                "(RS*, PS*, ES*, EdDSA)"
            )
        for i, pem in enumerate(self.public_keys):
            where = f"{path}.public_keys[{i}].file"
            key = load_pem_public_key(pem.file, where)
            if not any(key_fits(alg, key) for alg in asym):
                raise ConfigError(f"{where}: the key fits none of {', '.join(asym)}")
        if "exp" not in self.required_claims:
            raise ConfigError(
                f"{path}.required_claims: must include 'exp' (a token without expiry "
                "would be trusted forever)"
            )


@dataclasses.dataclass(frozen=True, slots=True)
class SigningKey:
    """The development key `datagate token` signs with: an HMAC secret or a PEM private key."""

    key: Secret
    algorithm: str = "HS256"
    issuer: str | None = None  # default: the first configured issuer
    audience: str | None = None  # default: that issuer's first audience
    kid: str | None = None

    def validate(self, path: str) -> None:
        _check_algorithm(self.algorithm, f"{path}.algorithm")
        if self.algorithm in HMAC_ALGORITHMS:
            problem = hmac_problem(self.key.reveal().encode(), self.algorithm)
            if problem:
                raise ConfigError(f"{path}.key: {problem}")
            return
        try:
            private = load_pem_private_key(self.key.reveal().encode(), password=None)
        except (ValueError, TypeError):
            raise ConfigError(
                f"{path}.key: {self.algorithm} needs an unencrypted PEM private key"
            ) from None
        if not key_fits(self.algorithm, private.public_key()):
            raise ConfigError(f"{path}.key: the key does not fit {self.algorithm}")


@dataclasses.dataclass(frozen=True, slots=True)
class IdentityConfig:
    """The gateway config key `identity`."""

    issuers: list[IssuerConfig] = field(nonempty=True)
    signing_key: SigningKey | None = None
    token_cache_size: int = field(10_000, min=0, max=1_000_000)
    max_token_length: int = field(8192, min=512, max=65_536)
    purpose_header: str = field("X-Purpose", nonempty=True)
    realm: str = field("datagate", nonempty=True)
    # The local view of revoked token ids is reloaded in full this often (pub/sub keeps it
    # current in between); a failed reload makes it untrusted until the next success.
    revocation_reload: float = field(30.0, min=1.0, max=3600.0)

    def validate(self, path: str) -> None:
        path = path or "identity"
        seen: set[str] = set()
        for i, issuer in enumerate(self.issuers):
            if issuer.issuer in seen:
                raise ConfigError(f"{path}.issuers[{i}].issuer: duplicate issuer {issuer.issuer!r}")
            seen.add(issuer.issuer)
        key = self.signing_key
        if key is None:
            return
        issuer = self.signing_issuer()
        if issuer is None:
            raise ConfigError(
                f"{path}.signing_key.issuer: no issuer {key.issuer!r} in {path}.issuers"
            )
        if key.algorithm not in issuer.algorithms:
            raise ConfigError(
                f"{path}.signing_key.algorithm: {key.algorithm} is not allowed for issuer "
                f"{issuer.issuer!r}"
            )
        if key.algorithm in HMAC_ALGORITHMS and key.key != issuer.secret:
            raise ConfigError(
                f"{path}.signing_key.key: differs from the secret of issuer {issuer.issuer!r}, "
                "so minted tokens would be refused"
            )

    def signing_issuer(self) -> IssuerConfig | None:
        """The issuer that minted tokens claim to come from."""
        if self.signing_key is None or self.signing_key.issuer is None:
            return self.issuers[0]
        for issuer in self.issuers:
            if issuer.issuer == self.signing_key.issuer:
                return issuer
        return None
