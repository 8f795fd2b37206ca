"""The principal: who is calling, built only from verified token claims."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    department: str
    clearance: int  # 1..4, compared with dataset and field levels
    roles: frozenset[str] = frozenset()
    token_id: str | None = None  # jti
    client_id: str | None = None
    issuer: str = ""
    purposes: frozenset[str] = frozenset()  # purposes the token allows
    purpose: str | None = None  # the purpose declared for this token (claim)
    expires_at: float | None = None
    cert_subject: str | None = None  # from the connection's verified client certificate (mTLS)
    cert_thumbprint: str | None = None  # the token's cnf "x5t#S256" (RFC 8705 binding)
