"""Certificates for the TLS tests, made with `cryptography`: CAs, a server certificate for
127.0.0.1/localhost, client certificates; PEM files, client SSL contexts, thumbprints."""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.identity.clientcert import client_cert

_NOW = dt.datetime.now(dt.UTC)


@dataclasses.dataclass(frozen=True)
class Issued:
    """One certificate and its key, as PEM files."""

    cert: Path
    key: Path
    der: bytes

    @property
    def subject(self) -> str:
        return client_cert(self.der).subject

    @property
    def thumbprint(self) -> str:
        return client_cert(self.der).thumbprint


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "CN")]
    if org is not None:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path, password: str | None) -> None:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode())
        if password is not None
        else serialization.NoEncryption()
    )
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )


class CA:
    """A certificate authority writing its certificates into `folder`."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder = folder
        self.name = name
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.subject = _name(f"{name} root", "DataGate tests")
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.subject)
            .issuer_name(self.subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_NOW - dt.timedelta(days=1))
            .not_valid_after(_NOW + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        self.file = folder / f"{name}-ca.pem"
        self.file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def _issue(
        self,
        file: str,
        subject: x509.Name,
        usage: x509.ObjectIdentifier,
        sans: list[x509.GeneralName],
        password: str | None = None,
    ) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_NOW - dt.timedelta(days=1))
            .not_valid_after(_NOW + dt.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        cert_path = self.folder / f"{file}.pem"
        key_path = self.folder / f"{file}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, key_path, password)
        return Issued(cert_path, key_path, cert.public_bytes(serialization.Encoding.DER))

    def server(self, file: str = "server", password: str | None = None) -> Issued:
        sans: list[x509.GeneralName] = [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]
        return self._issue(
            file, _name("localhost"), ExtendedKeyUsageOID.SERVER_AUTH, sans, password
        )

    def client(self, file: str, cn: str, org: str = "Tax Bureau") -> Issued:
        return self._issue(file, _name(cn, org), ExtendedKeyUsageOID.CLIENT_AUTH, [])


@dataclasses.dataclass(frozen=True)
class PKI:
    """Everything the TLS tests use, made once per session."""

    folder: Path
    ca: CA
    other_ca: CA
    server: Issued  # by `ca`, for 127.0.0.1 and localhost
    other_server: Issued  # by `other_ca`, for 127.0.0.1 and localhost
    client: Issued  # CN=etl-01,O=Tax Bureau,C=CN by `ca`
    colleague: Issued  # CN=etl-02 by `ca`
    rogue: Issued  # the same subject as `client`, by `other_ca`
    gateway_client: Issued  # the gateway's own client certificate for upstream mTLS


def make_pki(folder: Path) -> PKI:
    ca, other = CA(folder, "datagate"), CA(folder, "other")
    return PKI(
        folder=folder,
        ca=ca,
        other_ca=other,
        server=ca.server(),
        other_server=other.server("other-server"),
        client=ca.client("client", "etl-01"),
        colleague=ca.client("colleague", "etl-02"),
        rogue=other.client("rogue", "etl-01"),
        gateway_client=ca.client("gateway-client", "datagate-gateway", "DataGate"),
    )


def client_context(
    ca: Path, cert: Issued | None = None, maximum: ssl.TLSVersion | None = None
) -> ssl.SSLContext:
    """What a consumer uses: trusts `ca`, presents `cert` if given."""
    context = ssl.create_default_context(cafile=str(ca))
    if maximum is not None:
        context.maximum_version = maximum
    if cert is not None:
        context.load_cert_chain(cert.cert, cert.key)
    return context
