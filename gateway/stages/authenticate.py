"""The authenticate stage: the bearer token becomes `ctx.principal` and `ctx.purpose`."""

from __future__ import annotations

from gateway.context import RequestContext
from gateway.errors import GatewayError
from gateway.identity.purpose import declared_purpose
from gateway.identity.verifier import Verifier, refusal


class AuthenticateStage:
    """Verifies `Authorization: Bearer <JWT>` and sets the principal and the purpose.

    Only the verified token and the `X-Purpose` header (checked against the token's allowed
    purposes) are read; client identity headers (`IDENTITY_HEADERS`) never are.
    """

    name = "authenticate"

    def __init__(self, verifier: Verifier, *, purpose_header: str | None = None) -> None:
        self._verifier = verifier
        self._purpose_header = purpose_header or verifier.purpose_header

    async def __call__(self, ctx: RequestContext) -> None:
        headers = ctx.request.headers
        authorization = headers.getall("Authorization", [])
        if len(authorization) > 1:
            raise refusal(
                "malformed",
                "the request has more than one Authorization header",
                self._verifier.realm,
            )
        principal = await self._verifier.authenticate(authorization[0] if authorization else None)
        purposes = headers.getall(self._purpose_header, [])
        if len(purposes) > 1:
            raise GatewayError(
                "bad_request",
                f"the request has more than one {self._purpose_header} header",
                reason="ambiguous_purpose",
            )
        ctx.principal = principal
        ctx.purpose = declared_purpose(principal, purposes[0] if purposes else None)
