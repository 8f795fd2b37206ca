"""The consumers' API on the data listener, under the reserved prefix /.well-known/datagate/:
the catalog and access requests. Authenticated like any data request, never forwarded."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from gateway.access.catalog import Decides, Plans, catalog_view
from gateway.access.model import STATES, AccessError, bad
from gateway.access.service import AccessRequests
from gateway.context import RequestContext
from gateway.errors import ConfigError, GatewayError, StateUnavailable
from gateway.identity.principal import Principal
from gateway.pipeline import CheckStage, request_id
from gateway.policy.bundle import PolicyBundle
from gateway.policy.catalog import Catalog
from gateway.stages.record import iso

# RFC 8615 reserves /.well-known/ for metadata about the whole origin: a data API has no
# dataset there, and the catalog may not put one there (`check_reserved`).
PREFIX = "/.well-known/datagate/"
MAX_BODY = 64 * 1024
_ID = r"access-requests/(?P<id>[A-Za-z0-9_-]{1,64})"
_ROUTES: tuple[tuple[re.Pattern[str], dict[str, str]], ...] = (
    (re.compile(r"catalog"), {"GET": "catalog"}),
    (re.compile(r"access-requests"), {"GET": "list", "POST": "create"}),
    (re.compile(_ID), {"GET": "show"}),
    (re.compile(_ID + r"/(?P<step>approve|reject|withdraw)"), {"POST": "step"}),
)
_LIST_PARAMS = frozenset({"state", "dataset"})

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


def check_reserved(bundle: PolicyBundle) -> None:
    """A catalog whose route would cover the reserved prefix (or lie under it) is refused."""
    check_catalog(bundle.catalog)


def check_catalog(catalog: Catalog) -> None:
    for dataset in catalog.datasets.values():
        if PREFIX.startswith(dataset.route) or dataset.route.startswith(PREFIX):
            raise ConfigError(
                f"catalog: dataset {dataset.id!r} route {dataset.route!r} covers the gateway's "
                f"reserved path {PREFIX} (the consumers' catalog and access requests)"
            )


def _json(status: int, body: Any, rid: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=orjson.dumps(body),
        content_type="application/json",
        headers={"X-Request-ID": rid, "Cache-Control": "no-store", **(headers or {})},
    )


def list_params(query: Any) -> dict[str, str | None]:
    unknown = sorted(set(query) - _LIST_PARAMS)
    if unknown:
        raise bad("unknown_parameter", f"{unknown[0]}: unknown query parameter")
    state = query.get("state")
    if state is not None and state not in STATES:
        raise bad("bad_state", f"state: expected one of {', '.join(STATES)}, got {state!r}")
    return {"state": state, "dataset": query.get("dataset")}


def note_of(body: Any) -> str:
    if body is None:
        return ""
    if not isinstance(body, dict) or set(body) - {"note"}:
        raise bad("bad_body", "body: expected a JSON object with at most a 'note'")
    note = body.get("note", "")
    if not isinstance(note, str) or len(note) > 2000:
        raise bad("bad_body", "note: expected a string of at most 2000 characters")
    return note.strip()


class ConsumerAPI:
    """Serves PREFIX on the data listener; everything else goes to the pipeline."""

    def __init__(
        self,
        *,
        authenticate: Callable[[], CheckStage],
        suspension: CheckStage,
        catalog: Callable[[], Catalog],
        decider: Decides,
        plans: Callable[[], Plans],
        requests: AccessRequests,
        client_ip: Callable[[web.BaseRequest], str],
        clock: Callable[[], float] = time.time,
        audit: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        self._authenticate = authenticate
        self._suspension = suspension
        self._catalog = catalog
        self._decider = decider
        self._plans = plans
        self.requests = requests
        self._client_ip = client_ip
        self._clock = clock
        self._audit = audit

    def wrap(self, pipeline: Handler) -> Handler:
        """The data listener's handler. The raw path decides: a request for PREFIX (however
        it is spelt otherwise) never reaches the pipeline, and anything else never reaches
        this API (an encoded spelling of PREFIX gets the route stage's 400 or 404)."""

        async def handle(request: web.BaseRequest) -> web.StreamResponse:
            if request.raw_path.startswith(PREFIX):
                return await self.handle(request)
            return await pipeline(request)

        return handle

    async def handle(self, request: web.BaseRequest) -> web.Response:
        rid = request_id(request.headers.get("X-Request-ID"))
        ctx = RequestContext(
            request=request,
            request_id=rid,
            ts=self._clock(),
            started=time.perf_counter(),
            client_ip=self._client_ip(request),
            method=request.method,
        )
        try:
            response = await self._serve(ctx)
        except GatewayError as exc:
            response = _json(exc.status, exc.body(rid), rid, exc.headers)
            ctx.reason = exc.reason or exc.code
        except AccessError as exc:
            response = _json(exc.status, exc.body(rid), rid)
            ctx.reason = exc.reason
        except StateUnavailable as exc:
            body = GatewayError("unavailable", f"the state backend is unavailable: {exc}")
            response = _json(503, body.body(rid), rid)
            ctx.reason = "state_unavailable"
        if self._audit is not None:
            principal = ctx.principal
            self._audit(
                {
                    "type": "consumer_api",
                    "ts": iso(ctx.ts),
                    "request_id": rid,
                    "principal": principal.subject if principal else None,
                    "department": principal.department if principal else None,
                    "client_ip": ctx.client_ip,
                    "method": request.method,
                    "path": request.raw_path.partition("?")[0][:512],
                    "status": response.status,
                    "reason": ctx.reason,
                }
            )
        return response

    async def _serve(self, ctx: RequestContext) -> web.Response:
        request = ctx.request
        path, _, _ = request.raw_path.partition("?")
        rest = path[len(PREFIX) :]
        for pattern, methods in _ROUTES:
            match = pattern.fullmatch(rest)
            if match is None:
                continue
            name = methods.get(request.method)
            if name is None:
                allow = ", ".join(methods)
                return _json(
                    405,
                    {
                        "error": "method_not_allowed",
                        "message": f"{request.method} is not allowed here; use {allow}",
                        "reason": "method_not_allowed",
                        "request_id": ctx.request_id,
                    },
                    ctx.request_id,
                    {"Allow": allow},
                )
            await self._authenticate()(ctx)
            await self._suspension(ctx)
            assert ctx.principal is not None
            return await self._dispatch(ctx, name, match.groupdict())
        raise GatewayError("not_found", f"no such path under {PREFIX}", reason="no_route")

    async def _dispatch(
        self, ctx: RequestContext, name: str, parts: dict[str, str]
    ) -> web.Response:
        principal, rid, query = ctx.principal, ctx.request_id, ctx.request.query
        assert principal is not None
        if name == "catalog":
            if query:
                raise bad("unknown_parameter", f"{sorted(query)[0]}: unknown query parameter")
            view = catalog_view(
                self._catalog(), principal, ctx.purpose, self._decider, self._plans(), ctx.ts
            )
            return _json(200, view, rid)
        if name == "list":
            found = await self.requests.search(principal, **list_params(query))
            return _json(200, {"access_requests": found}, rid)
        if name == "show":
            return _json(
                200, {"access_request": await self.requests.get(parts["id"], principal)}, rid
            )
        body = await read_body(ctx.request)
        if name == "create":
            created = await self.requests.create(body, principal)
            return _json(201, {"access_request": created}, rid)
        return _json(
            200, {"access_request": await decide(self.requests, parts, principal, body)}, rid
        )


async def read_body(request: web.BaseRequest) -> Any:
    """The JSON body (None when empty); strict JSON, at most MAX_BODY bytes."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise AccessError(413, "payload_too_large", "body_too_large", f"body over {MAX_BODY} bytes")
    data = await request.content.read(MAX_BODY + 1)
    if len(data) > MAX_BODY:
        raise AccessError(413, "payload_too_large", "body_too_large", f"body over {MAX_BODY} bytes")
    if not data.strip():
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise bad("bad_body", "body: is not valid JSON") from None


async def decide(
    requests: AccessRequests, parts: dict[str, str], principal: Principal, body: Any
) -> dict[str, Any]:
    """approve / reject / withdraw, the same on both listeners."""
    note = note_of(body)
    step, request_id_ = parts["step"], parts["id"]
    if step == "approve":
        return await requests.approve(request_id_, principal, note)
    if step == "reject":
        return await requests.reject(request_id_, principal, note)
    return await requests.withdraw(request_id_, principal, note)
