"""The admin/SOC listener's app: open health/readiness/metrics, role-checked SOC API; and the
probe-only app of the optional health listener."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.errors import GatewayError
from gateway.identity.principal import Principal
from gateway.metrics import Metrics, PeerUnavailable
from gateway.pipeline import request_id

# Paths anyone on the admin network may read: probes, scrapers, the API description and the
# dashboard's files (the description names routes, never data).
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/", "/openapi.json"})
OPEN_PREFIXES = ("/static/",)
STATIC_DIR = Path(__file__).parent / "static"
OPENAPI_FILE = Path(__file__).parent / "openapi.yaml"

# Where the admin app leaves the verified caller for the handlers (the actor of an action).
PRINCIPAL = web.RequestKey("principal", Principal)
# The request's id: in its error body, its X-Request-ID header and its audit record.
REQUEST_ID = web.RequestKey("request_id", str)
# aiohttp's own refusals (no route, wrong method, body too large) as error codes.
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}

Authenticator = Callable[[web.Request], Awaitable[Principal]]
AuditAction = Callable[[Principal, web.Request, int], None]


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def request_id_of(request: web.Request) -> str:
    """The request's id: the caller's X-Request-ID when it is a safe short token."""
    rid = request.get(REQUEST_ID)
    if rid is None:
        rid = request[REQUEST_ID] = request_id(request.headers.get("X-Request-ID"))
    return rid


def admin_error(
    request: web.Request, status: int, code: str, message: str, **extra: Any
) -> web.Response:
    """An admin API refusal, in the data path's shape: `{"error", "message", "reason"?,
    "request_id"}` plus `extra` (`field`, `problems`, `version`)."""
    body = {"error": code, "message": message, **extra, "request_id": request_id_of(request)}
    return json_response({k: v for k, v in body.items() if v is not None}, status)


def error_json(request: web.Request, exc: GatewayError) -> web.Response:
    response = json_response(exc.body(request_id_of(request)), exc.status)
    response.headers.update(exc.headers)
    return response


def openapi_document() -> dict[str, Any]:
    """The admin API's OpenAPI description (gateway/admin/openapi.yaml)."""
    document = yaml.safe_load(OPENAPI_FILE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def admin_app(
    *,
    metrics: Metrics,
    readiness: Callable[[], dict[str, Any]],
    authenticate: Authenticator,
    roles: Iterable[str],
    route_tables: Iterable[web.RouteTableDef] = (),
    on_action: AuditAction | None = None,
    scoped_roles: Mapping[str, Iterable[str]] | None = None,
) -> web.Application:
    """The admin app. Every path outside OPEN_PATHS needs a verified token with one of `roles`
    (or, on a path under a prefix of `scoped_roles`, one of that prefix's roles); every
    state-changing call is reported to `on_action` (the audit log)."""
    allowed_roles = frozenset(roles)
    scoped = [(prefix, frozenset(r)) for prefix, r in (scoped_roles or {}).items()]

    def roles_for(path: str) -> frozenset[str]:
        for prefix, extra in scoped:
            if path == prefix or path.startswith(prefix + "/"):
                return allowed_roles | extra
        return allowed_roles

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response = await checked(request, handler)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = _http_error(request, exc)
        response.headers["X-Request-ID"] = request_id_of(request)
        return response

    async def checked(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path in OPEN_PATHS or request.path.startswith(OPEN_PREFIXES):
            return await handler(request)
        try:
            principal = await authenticate(request)
        except GatewayError as exc:
            return error_json(request, exc)
        needed = roles_for(request.path)
        if not needed & principal.roles:
            return error_json(
                request,
                GatewayError(
                    "forbidden",
                    f"the admin API needs one of the roles: {', '.join(sorted(needed))}",
                    reason="missing_role",
                ),
            )
        request[PRINCIPAL] = principal
        response = await handler(request)
        if on_action is not None and request.method not in ("GET", "HEAD"):
            on_action(principal, request, response.status)
        return response

    async def healthz(_: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        state = readiness()
        return json_response(state, 200 if state.get("ready") else 503)

    async def metrics_page(request: web.Request) -> web.Response:
        try:
            body = await metrics.exposition()
        except PeerUnavailable as exc:
            return admin_error(request, 503, "unavailable", f"metrics incomplete: {exc}")
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    description = orjson.dumps(openapi_document())

    async def openapi(_: web.Request) -> web.Response:
        return web.Response(body=description, content_type="application/json")

    app = web.Application(middlewares=[guard], client_max_size=1024 * 1024)
    app.router.add_routes(probe_routes(readiness))
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/openapi.json", openapi)
    for table in route_tables:
        app.router.add_routes(table)
    return app


def probe_routes(readiness: Callable[[], dict[str, Any]]) -> web.RouteTableDef:
    """`/healthz` (the process answers) and `/readyz` (200 when ready, else 503)."""
    routes = web.RouteTableDef()

    @routes.get("/healthz")
    async def healthz(_: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    @routes.get("/readyz")
    async def readyz(_: web.Request) -> web.Response:
        state = readiness()
        return json_response(state, 200 if state.get("ready") else 503)

    return routes


def health_app(readiness: Callable[[], dict[str, Any]]) -> web.Application:
    """The health listener: the probes and nothing else (no SOC API, metrics or dashboard), so
    it can be bound where a kubelet or load balancer reaches it. Small bodies only."""

    @web.middleware
    async def refusals(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _http_error(request, exc)

    app = web.Application(middlewares=[refusals], client_max_size=1024)
    app.router.add_routes(probe_routes(readiness))
    return app


def _http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    """aiohttp's own refusal (no route, wrong method, body too large) as an admin error."""
    if exc.text.startswith("{"):  # a handler's own JSON refusal
        response = web.Response(status=exc.status, text=exc.text, content_type="application/json")
    else:
        code = _HTTP_CODES.get(exc.status, "bad_request")
        response = admin_error(request, exc.status, code, exc.reason)
    if "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    return response
