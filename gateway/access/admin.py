"""Admin-listener endpoints of the workflow: the data officers' queue and the caller's catalog."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from aiohttp import web

from gateway.access.catalog import Decides, Plans, catalog_view
from gateway.access.http import decide, list_params, read_body
from gateway.access.model import AccessError
from gateway.access.service import AccessRequests
from gateway.admin.app import PRINCIPAL, admin_error, json_response, request_id_of
from gateway.errors import StateUnavailable
from gateway.identity.principal import Principal
from gateway.policy.catalog import Catalog

# Paths on the admin listener a data officer may use besides the SOC roles (the officer's
# own department's requests only; the service checks the department).
OFFICER_PATHS = ("/access-requests", "/catalog/access")


def routes(
    requests: AccessRequests,
    *,
    admin_roles: Iterable[str],
    catalog: Callable[[], Catalog],
    decider: Decides,
    plans: Callable[[], Plans],
    clock: Callable[[], float],
) -> web.RouteTableDef:
    table = web.RouteTableDef()
    soc = frozenset(admin_roles)

    def caller(request: web.Request) -> Principal:
        return request[PRINCIPAL]

    def refusal(request: web.Request, exc: AccessError | StateUnavailable) -> web.Response:
        if isinstance(exc, StateUnavailable):
            return admin_error(request, 503, "unavailable", str(exc), reason="state_unavailable")
        return json_response(exc.body(request_id_of(request)), exc.status)

    @table.get("/access-requests")
    async def list_requests(request: web.Request) -> web.Response:
        principal = caller(request)
        try:
            found = await requests.search(
                principal, everything=bool(soc & principal.roles), **list_params(request.query)
            )
        except (AccessError, StateUnavailable) as exc:
            return refusal(request, exc)
        return json_response({"access_requests": found})

    async def decided(request: web.Request, step: str) -> web.Response:
        parts = {"id": request.match_info["id"], "step": step}
        try:
            body = await read_body(request)
            done = await decide(requests, parts, caller(request), body)
        except (AccessError, StateUnavailable) as exc:
            return refusal(request, exc)
        return json_response({"access_request": done})

    @table.post("/access-requests/{id}/approve")
    async def approve(request: web.Request) -> web.Response:
        return await decided(request, "approve")

    @table.post("/access-requests/{id}/reject")
    async def reject(request: web.Request) -> web.Response:
        return await decided(request, "reject")

    @table.get("/catalog/access")
    async def my_catalog(request: web.Request) -> web.Response:
        principal = caller(request)
        view = catalog_view(catalog(), principal, principal.purpose, decider, plans(), clock())
        return json_response(view)

    return table
