"""The authenticate stage: the bearer token becomes `ctx.principal` and `ctx.purpose`."""

from __future__ import annotations

from gateway.context import RequestContext
from gateway.errors import GatewayError
from gateway.identity.clientcert import ClientCerts, for_connection
from gateway.identity.purpose import declared_purpose
from gateway.identity.verifier import Verifier, refusal


class AuthenticateStage:
    """Verifies `Authorization: Bearer <JWT>` and sets the principal and the purpose.

    Only the verified token, the `X-Purpose` header (checked against the token's allowed
    purposes) and, on a listener with client certificates, the connection's verified
    certificate are read; client identity headers (`IDENTITY_HEADERS`) never are.
    """

    name = "authenticate"

    def __init__(
        self,
        verifier: Verifier,
        *,
        purpose_header: str | None = None,
        client_certs: ClientCerts | None = None,
    ) -> None:
        self._verifier = verifier
        self._purpose_header = purpose_header or verifier.purpose_header
        self._certs = client_certs

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
        # Without client certificates here and with an unbound token there is nothing to check.
        if self._certs is not None or principal.cert_thumbprint is not None:
            principal = for_connection(principal, self._certs, ctx.request, self._verifier.realm)
        purposes = headers.getall(self._purpose_header, [])
        if len(purposes) > 1:
            raise GatewayError(
                "bad_request",
                f"the request has more than one {self._purpose_header} header",
                reason="ambiguous_purpose",
            )
        ctx.principal = principal
        ctx.purpose = declared_purpose(principal, purposes[0] if purposes else None)
