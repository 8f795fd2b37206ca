"""The purpose a request declares: the token's own, or one the token allows, via a header."""

from __future__ import annotations

from gateway.errors import GatewayError
from gateway.identity.principal import Principal


def declared_purpose(principal: Principal, requested: str | None) -> str | None:
    """The purpose of this request.

    Without a requested purpose (the `X-Purpose` header) it is the token's `purpose`
    claim. A requested purpose is accepted only when the token names it as its purpose or
    among its allowed `purposes`; anything else is refused (403 `purpose_not_allowed`).
    """
    if requested is None or not requested.strip():
        return principal.purpose
    requested = requested.strip()
    if requested == principal.purpose or requested in principal.purposes:
        return requested
    raise GatewayError(
        "forbidden",
        "the token does not allow the purpose declared in the request",
        reason="purpose_not_allowed",
    )
