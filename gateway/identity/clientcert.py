"""The verified client certificate of a TLS connection (mTLS), read once per connection, and
the RFC 8705 check that a certificate-bound token is used with its own certificate."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import weakref
from typing import Any

from aiohttp import web
from cryptography import x509

from gateway.identity.principal import Principal
from gateway.identity.verifier import refusal


@dataclasses.dataclass(frozen=True, slots=True)
class ClientCert:
    subject: str  # RFC 4514, most specific first: "CN=etl-01,O=Tax Bureau,C=CN"
    thumbprint: str  # RFC 8705 x5t#S256: base64url(SHA-256(DER)), no padding


def client_cert(der: bytes) -> ClientCert:
    subject = x509.load_der_x509_certificate(der).subject.rfc4514_string()
    digest = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
    return ClientCert(subject, digest)


class _Connection:
    """What is known about one TLS connection: its certificate (None: it presented none), and
    the last principal seen on it with that principal bound to the certificate."""

    __slots__ = ("bound", "cert", "principal")

    def __init__(self, cert: ClientCert | None) -> None:
        self.cert = cert
        self.principal: Principal | None = None
        self.bound: Principal | None = None


class ClientCerts:
    """The verified client certificate of each connection, parsed on the connection's first
    request and remembered until the connection is gone.

    Used only on listeners that ask for client certificates (`tls.client_auth` optional or
    required): there the TLS handshake has verified any certificate presented against
    `client_ca_file`, and renegotiation is off, so it cannot change within the connection.
    Nothing here reads a header.
    """

    def __init__(self, require_bound_tokens: bool = False) -> None:
        self.require_bound_tokens = require_bound_tokens
        self._seen: weakref.WeakKeyDictionary[Any, _Connection] = weakref.WeakKeyDictionary()

    def of(self, request: web.BaseRequest) -> ClientCert | None:
        return self._connection(request).cert

    def bind(self, principal: Principal, request: web.BaseRequest, realm: str) -> Principal:
        """`principal` with this connection's certificate (see `bind`). The verified-token
        cache hands out the same principal object for a token, so keep-alive requests with
        one token reuse the bound principal instead of building it again."""
        conn = self._connection(request)
        if conn.principal is principal and conn.bound is not None:
            return conn.bound
        bound = bind(principal, conn.cert, self.require_bound_tokens, realm)
        conn.principal, conn.bound = principal, bound
        return bound

    def _connection(self, request: web.BaseRequest) -> _Connection:
        transport = request.transport
        if transport is None:  # the connection is gone: nothing to vouch for the caller
            return _Connection(None)
        conn = self._seen.get(transport)
        if conn is None:
            conn = self._seen[transport] = _Connection(_read(transport))
        return conn


def _read(transport: Any) -> ClientCert | None:
    # `peercert` is empty unless the handshake verified the certificate.
    if not transport.get_extra_info("peercert"):
        return None
    ssl_object = transport.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return client_cert(der) if der else None


def for_connection(
    principal: Principal, certs: ClientCerts | None, request: web.BaseRequest, realm: str
) -> Principal:
    """The principal as this connection presents it: with its verified certificate's subject
    (on a listener with `certs`), after the RFC 8705 check that a token bound to a
    certificate (`cnf.x5t#S256`) comes with that certificate."""
    if certs is not None:
        return certs.bind(principal, request, realm)
    if principal.cert_thumbprint is None:
        return principal
    return bind(principal, None, False, realm)


def bind(
    principal: Principal, cert: ClientCert | None, require_bound: bool, realm: str
) -> Principal:
    """The principal with `cert`'s subject, or a 401 when the token's binding says no."""
    bound = principal.cert_thumbprint
    if bound is not None:
        if cert is None:
            raise refusal(
                "certificate_required",
                "the token is bound to a client certificate; present it",
                realm,
            )
        if cert.thumbprint != bound:
            raise refusal(
                "certificate_mismatch",
                "the token is bound to another client certificate",
                realm,
            )
    elif require_bound:
        raise refusal(
            "unbound_token",
            "this listener accepts only tokens bound to the client certificate (cnf.x5t#S256)",
            realm,
        )
    if cert is None:
        return principal
    return dataclasses.replace(principal, cert_subject=cert.subject)
