"""The admin/SOC listener's app: open health/readiness/metrics, role-checked SOC API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.errors import GatewayError
from gateway.identity.principal import Principal
from gateway.metrics import Metrics

# Paths anyone on the admin network may read: probes, scrapers and the dashboard's files.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/", "/openapi.json"})
OPEN_PREFIXES = ("/static/",)
STATIC_DIR = Path(__file__).parent / "static"

# Where the admin app leaves the verified caller for the handlers (the actor of an action).
PRINCIPAL = web.RequestKey("principal", Principal)

Authenticator = Callable[[web.Request], Awaitable[Principal]]
AuditAction = Callable[[Principal, web.Request, int], None]


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def error_json(exc: GatewayError, request_id: str = "-") -> web.Response:
    response = json_response(exc.body(request_id), exc.status)
    response.headers.update(exc.headers)
    return response


def admin_app(
    *,
    metrics: Metrics,
    readiness: Callable[[], dict[str, Any]],
    authenticate: Authenticator,
    roles: Iterable[str],
    route_tables: Iterable[web.RouteTableDef] = (),
    on_action: AuditAction | None = None,
) -> web.Application:
    """The admin app. Every path outside OPEN_PATHS needs a verified token with one of `roles`;
    every state-changing call is reported to `on_action` (the audit log)."""
    allowed_roles = frozenset(roles)

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path in OPEN_PATHS or request.path.startswith(OPEN_PREFIXES):
            return await handler(request)
        try:
            principal = await authenticate(request)
        except GatewayError as exc:
            return error_json(exc)
        if not allowed_roles & principal.roles:
            return error_json(
                GatewayError(
                    "forbidden",
                    f"the admin API needs one of the roles: {', '.join(sorted(allowed_roles))}",
                    reason="missing_role",
                )
            )
        request[PRINCIPAL] = principal
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status >= 400 and not exc.text.startswith("{"):
                code = {404: "not_found", 405: "bad_request"}.get(exc.status, "bad_request")
                return error_json(GatewayError(code, exc.reason))
            raise
        if on_action is not None and request.method not in ("GET", "HEAD"):
            on_action(principal, request, response.status)
        return response

    async def healthz(_: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        state = readiness()
        return json_response(state, 200 if state.get("ready") else 503)

    async def metrics_page(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    app = web.Application(middlewares=[guard], client_max_size=1024 * 1024)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)
    for table in route_tables:
        app.router.add_routes(table)
    return app
