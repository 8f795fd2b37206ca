"""Admin API for incidents: list with filters, show, acknowledge, resolve."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.admin.app import admin_error
from gateway.admin.inputs import BadField, actor, bad_request, json_body, parse_time, text
from gateway.errors import StateUnavailable
from gateway.incidents.model import WORKFLOW, WorkflowError
from gateway.incidents.service import IncidentNotFound, Incidents


def routes(incidents: Incidents) -> web.RouteTableDef:
    """GET /incidents, GET /incidents/{id}, POST /incidents/{id}/ack, POST .../resolve."""
    table = web.RouteTableDef()

    @table.get("/incidents")
    async def list_incidents(request: web.Request) -> web.Response:
        try:
            filters = _filters(request.query)
        except BadField as exc:
            return bad_request(request, exc)
        try:
            items = await incidents.search(**filters)
        except StateUnavailable as exc:
            return admin_error(request, 503, "unavailable", f"incidents are unavailable: {exc}")
        return web.json_response({"incidents": items})

    @table.get("/incidents/{id}")
    async def show(request: web.Request) -> web.Response:
        incident_id = request.match_info["id"]
        try:
            return web.json_response({"incident": await incidents.get(incident_id)})
        except IncidentNotFound:
            return admin_error(request, 404, "not_found", f"no incident {incident_id!r}")
        except StateUnavailable as exc:
            return admin_error(request, 503, "unavailable", f"incidents are unavailable: {exc}")

    async def step(request: web.Request, resolve: bool) -> web.Response:
        by = actor(request)
        incident_id = request.match_info["id"]
        try:
            body = await json_body(request) if request.can_read_body else {}
            note = text(body, "note", required=resolve)
            if resolve:
                incident = await incidents.resolve(incident_id, by, note)
            else:
                incident = await incidents.acknowledge(incident_id, by, note)
        except BadField as exc:
            return bad_request(request, exc)
        except IncidentNotFound:
            return admin_error(request, 404, "not_found", f"no incident {incident_id!r}")
        except WorkflowError as exc:
            return admin_error(request, 409, "conflict", str(exc))
        except StateUnavailable as exc:
            return admin_error(request, 503, "unavailable", f"incident not changed: {exc}")
        return web.json_response({"incident": incident})

    @table.post("/incidents/{id}/ack")
    async def ack(request: web.Request) -> web.Response:
        return await step(request, resolve=False)

    @table.post("/incidents/{id}/resolve")
    async def resolve(request: web.Request) -> web.Response:
        return await step(request, resolve=True)

    return table


def _filters(query: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    unknown = set(query) - {"status", "severity", "principal", "dataset", "since"}
    if unknown:
        raise BadField(sorted(unknown)[0], "unknown filter")
    if "status" in query:
        if query["status"] not in WORKFLOW:
            raise BadField("status", f"must be one of {', '.join(WORKFLOW)}")
        out["status"] = query["status"]
    if "severity" in query:
        raw = query["severity"]
        if raw not in ("1", "2", "3", "4", "5"):
            raise BadField("severity", f"must be 1..5, got {raw!r}")
        out["min_severity"] = int(raw)
    for name in ("principal", "dataset"):
        if name in query:
            out[name] = query[name]
    if "since" in query:
        out["since"] = parse_time(query["since"], "since")
    return out
