"""Minting development tokens with the `signing_key`, for `datagate token` and the demo."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

import jwt

from gateway.errors import ConfigError
from gateway.identity.config import IdentityConfig

MAX_TTL = 30 * 24 * 3600


def mint_token(
    cfg: IdentityConfig,
    *,
    sub: str,
    dept: str,
    clearance: int,
    roles: Iterable[str] = (),
    purpose: str | None = None,
    purposes: Iterable[str] = (),
    ttl: int = 3600,
    now: float | None = None,
    cert_thumbprint: str | None = None,
) -> str:
    """A signed token for `sub` that this config's verifier accepts.

    Raises ConfigError when the config has no signing key, ValueError for a bad argument.
    Claim names follow the signing issuer's claim mapping. `cert_thumbprint` binds the token
    to a client certificate (RFC 8705 `cnf.x5t#S256`).
    """
    key = cfg.signing_key
    issuer = cfg.signing_issuer()
    if key is None or issuer is None:
        raise ConfigError("the config has no signing key (identity.signing_key)")
    if not isinstance(sub, str) or not sub:
        raise ValueError("sub must be a non-empty string")
    if not isinstance(dept, str) or not dept:
        raise ValueError("dept must be a non-empty string")
    if type(clearance) is not int or not 1 <= clearance <= 4:
        raise ValueError(f"clearance must be an integer 1..4, got {clearance!r}")
    if type(ttl) is not int or not 1 <= ttl <= MAX_TTL:
        raise ValueError(f"ttl must be 1..{MAX_TTL} seconds, got {ttl!r}")
    role_list = _texts(roles, "roles")
    purpose_list = _texts(purposes, "purposes")
    if purpose is not None and not (isinstance(purpose, str) and purpose):
        raise ValueError("purpose must be a non-empty string")
    issued = int(time.time() if now is None else now)
    names = issuer.claims
    claims: dict[str, Any] = {
        "iss": issuer.issuer,
        "aud": key.audience or issuer.audiences[0],
        names.subject: sub,
        names.department: dept,
        names.clearance: clearance,
        names.roles: role_list,
        names.jti: uuid.uuid4().hex,
        "iat": issued,
        "nbf": issued,
        "exp": issued + ttl,
    }
    if purpose is not None:
        claims[names.purpose] = purpose
    if purpose_list:
        claims[names.purposes] = purpose_list
    if cert_thumbprint is not None:
        claims["cnf"] = {"x5t#S256": cert_thumbprint}
    headers = {"kid": key.kid} if key.kid else None
    return jwt.encode(claims, key.key.reveal(), algorithm=key.algorithm, headers=headers)


def _texts(values: Iterable[str], name: str) -> list[str]:
    if isinstance(values, str):
        raise ValueError(f"{name} must be a list of strings, not one string")
    out = list(values)
    if not all(isinstance(v, str) and v for v in out):
        raise ValueError(f"{name} must be non-empty strings")
    return out
