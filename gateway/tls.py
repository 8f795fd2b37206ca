"""TLS: the listeners' certificates and client-certificate checks, and TLS to the upstreams."""

from __future__ import annotations

import dataclasses
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from gateway.configtree import Secret, field
from gateway.errors import ConfigError

if TYPE_CHECKING:
    from gateway.config import Config

TLS_VERSIONS = {1.2: ssl.TLSVersion.TLSv1_2, 1.3: ssl.TLSVersion.TLSv1_3}
CLIENT_AUTH = ("none", "optional", "required")


@dataclasses.dataclass(frozen=True, slots=True)
class ListenerTLSConfig:
    """TLS on a listener (`server.tls`, `admin.tls`): its certificate chain and key, and
    optionally client certificates (mTLS) verified against `client_ca_file` only."""

    cert_file: Path  # PEM: the certificate, then any intermediates
    key_file: Path  # PEM private key (PKCS#8 or traditional), encrypted if key_password is set
    key_password: Secret | None = None
    min_version: float = field(1.2, choices=tuple(TLS_VERSIONS))
    # none: no client certificate asked for; optional: a presented one must verify;
    # required: the handshake fails without a valid one.
    client_auth: str = field("none", choices=CLIENT_AUTH)
    client_ca_file: Path | None = None  # the CAs that sign client certificates
    # Refuse tokens not bound to the client certificate (RFC 8705 `cnf.x5t#S256`); a token
    # that is bound is always checked against the certificate, whatever this says.
    require_bound_tokens: bool = False

    def validate(self, path: str) -> None:
        if self.client_auth != "none" and self.client_ca_file is None:
            raise ConfigError(
                f"{path}.client_ca_file: is required when client_auth is {self.client_auth!r}"
            )
        if self.client_auth == "none" and self.client_ca_file is not None:
            raise ConfigError(
                f"{path}.client_auth: must be 'optional' or 'required' when client_ca_file is set"
            )
        if self.require_bound_tokens and self.client_auth == "none":
            raise ConfigError(
                f"{path}.require_bound_tokens: needs client_auth 'optional' or 'required'"
            )

    @property
    def asks_for_client_certs(self) -> bool:
        return self.client_auth != "none"


@dataclasses.dataclass(frozen=True, slots=True)
class UpstreamTLSConfig:
    """TLS to one upstream (`upstreams.NAME.tls`, https:// URLs only)."""

    ca_file: Path | None = None  # the CAs the upstream's certificate must chain to; none: system
    cert_file: Path | None = None  # a client certificate, for upstreams that require mTLS
    key_file: Path | None = None
    key_password: Secret | None = None
    min_version: float = field(1.2, choices=tuple(TLS_VERSIONS))
    # false skips certificate and host name checks: logged as a warning at every start.
    verify: bool = True

    def validate(self, path: str) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            missing = "key_file" if self.key_file is None else "cert_file"
            raise ConfigError(f"{path}.{missing}: cert_file and key_file go together")
        if self.key_password is not None and self.key_file is None:
            raise ConfigError(f"{path}.key_password: is set but there is no key_file")
        if not self.verify and self.ca_file is not None:
            raise ConfigError(f"{path}.ca_file: is never used with verify: false; remove one")


def _read(file: Path, key: str) -> bytes:
    try:
        return file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {str(file)!r}: {exc.strerror}") from None


def _certificates(file: Path, key: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(_read(file, key))
    except ValueError:
        certs = []
    if not certs:
        raise ConfigError(f"{key}: {str(file)!r} holds no PEM certificate")
    return certs


def _check_key_pair(cert_file: Path, key_file: Path, password: Secret | None, path: str) -> None:
    """The key file loads (with its password, if any) and belongs to the first certificate."""
    (leaf, *_) = _certificates(cert_file, f"{path}.cert_file")
    data = _read(key_file, f"{path}.key_file")
    secret = password.reveal().encode() if password is not None else None
    try:
        key = load_pem_private_key(data, password=secret)
    except TypeError:
        if secret is None:
            raise ConfigError(
                f"{path}.key_password: {str(key_file)!r} is encrypted; give its key_password"
            ) from None
        raise ConfigError(
            f"{path}.key_password: {str(key_file)!r} is not encrypted; remove key_password"
        ) from None
    except ValueError:
        if secret is not None and b"ENCRYPTED" in data:
            raise ConfigError(
                f"{path}.key_password: cannot decrypt {str(key_file)!r} (wrong password?)"
            ) from None
        raise ConfigError(f"{path}.key_file: {str(key_file)!r} holds no PEM private key") from None
    except UnsupportedAlgorithm:
        raise ConfigError(
            f"{path}.key_file: {str(key_file)!r} holds no usable private key"
        ) from None
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, spki) != leaf.public_key().public_bytes(der, spki):
        raise ConfigError(
            f"{path}.key_file: the key in {str(key_file)!r} does not match the certificate "
            f"in {str(cert_file)!r}"
        )


def _load_chain(
    context: ssl.SSLContext, cert_file: Path, key_file: Path, password: Secret | None, path: str
) -> None:
    _check_key_pair(cert_file, key_file, password, path)
    try:
        context.load_cert_chain(
            cert_file, key_file, password.reveal() if password is not None else None
        )
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"{path}.cert_file: cannot use it: {exc}") from None


def _load_cas(context: ssl.SSLContext, ca_file: Path, key: str) -> None:
    _certificates(ca_file, key)
    try:
        context.load_verify_locations(cafile=ca_file)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"{key}: cannot use it: {exc}") from None


def listener_context(cfg: ListenerTLSConfig, path: str) -> ssl.SSLContext:
    """The server-side context for a listener; ConfigError naming the key on a bad file."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[cfg.min_version]
    # The client certificate is read once per connection: it must not change within one.
    context.options |= ssl.OP_NO_RENEGOTIATION
    _load_chain(context, cfg.cert_file, cfg.key_file, cfg.key_password, path)
    if cfg.client_ca_file is not None:
        # Only these CAs: never the system's, which would accept any public certificate.
        _load_cas(context, cfg.client_ca_file, f"{path}.client_ca_file")
        context.verify_mode = (
            ssl.CERT_REQUIRED if cfg.client_auth == "required" else ssl.CERT_OPTIONAL
        )
    return context


def upstream_context(cfg: UpstreamTLSConfig | None, path: str) -> ssl.SSLContext:
    """The client-side context for an https:// upstream (system CAs when `cfg` is None)."""
    cfg = cfg or UpstreamTLSConfig()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = TLS_VERSIONS[cfg.min_version]
    if not cfg.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif cfg.ca_file is not None:
        _load_cas(context, cfg.ca_file, f"{path}.ca_file")
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if cfg.cert_file is not None and cfg.key_file is not None:
        _load_chain(context, cfg.cert_file, cfg.key_file, cfg.key_password, path)
    return context


def check_files(config: Config) -> None:
    """Load every certificate, key and CA file the config names (paths already resolved), so
    a bad one is a config error naming its key before anything starts."""
    for name, tls in (("server.tls", config.server.tls), ("admin.tls", config.admin.tls)):
        if tls is not None:
            listener_context(tls, name)
    for name, upstream in config.upstreams.items():
        if upstream.url.startswith("https://"):
            upstream_context(upstream.tls, f"upstreams.{name}.tls")
