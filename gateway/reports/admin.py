"""Admin-listener report endpoints for the dashboard: live usage, incident handling, quality."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from aiohttp import web

from gateway.access.service import AccessRequests
from gateway.admin.app import PRINCIPAL, admin_error, json_response
from gateway.admin.inputs import BadField, bad_request, only_params
from gateway.errors import StateUnavailable
from gateway.identity.principal import Principal
from gateway.incidents.service import Incidents
from gateway.policy.bundle import PolicyBundle
from gateway.policy.grants import GrantStore
from gateway.reports.incidents import incident_report
from gateway.reports.quality import Quality
from gateway.reports.usage import DAY, Usage, day_of, parse_day

# The quality page is open to the owners' data officers too (their own samples only).
OFFICER_PATHS = ("/reports/quality",)


def period(request: web.Request, now: float, days: int = 7) -> tuple[float, float]:
    """`from` and `to` (dates or ISO times; default: the last `days` UTC days up to now)."""
    only_params(request.query, ("from", "to"))
    try:
        end = parse_day(request.query["to"], "to") if "to" in request.query else now
        start = (
            parse_day(request.query["from"], "from")
            if "from" in request.query
            else parse_day(day_of(now - (days - 1) * DAY), "from")
        )
    except ValueError as exc:
        name = str(exc).partition(":")[0]
        raise BadField(name, str(exc).partition(": ")[2]) from None
    if end <= start:
        raise BadField("to", "must be later than from")
    return start, end


def routes(
    *,
    usage: Usage,
    quality: Quality | None,
    incidents: Incidents,
    bundle: Callable[[], PolicyBundle],
    grants: GrantStore,
    access: AccessRequests,
    officer_role: str,
    admin_roles: Iterable[str],
    clock: Callable[[], float],
) -> web.RouteTableDef:
    table = web.RouteTableDef()
    soc = frozenset(admin_roles)

    @table.get("/reports/usage")
    async def usage_report(request: web.Request) -> web.Response:
        try:
            start, end = period(request, clock())
        except BadField as exc:
            return bad_request(request, exc)
        # Departments holding a grant in the period: a department grant's own, or the
        # requester's department for a grant an access request was approved into.
        try:
            asked = {
                r["grant_id"]: r["department"]
                for r in await access.search(request[PRINCIPAL], everything=True)
                if r.get("grant_id")
            }
        except StateUnavailable as exc:
            return admin_error(request, 503, "unavailable", f"access requests not readable: {exc}")
        held: dict[str, set[str]] = {}
        for grant in grants.all_grants():
            department = grant.department or asked.get(grant.id)
            if department and grant.not_before < end and grant.expires_at > start:
                held.setdefault(grant.dataset, set()).add(department)
        return json_response(usage.report(start, end, bundle(), held))

    @table.get("/reports/incidents")
    async def incidents_report(request: web.Request) -> web.Response:
        now = clock()
        try:
            start, end = period(request, now)
        except BadField as exc:
            return bad_request(request, exc)
        try:
            found = await incidents.search()
        except StateUnavailable as exc:
            return admin_error(request, 503, "unavailable", f"incidents not readable: {exc}")
        return json_response(incident_report(found, start, end, now))

    @table.get("/reports/quality")
    async def quality_report(request: web.Request) -> web.Response:
        try:
            only_params(request.query, ())
        except BadField as exc:
            return bad_request(request, exc)
        if quality is None:
            return json_response({"fields": [], "enabled": False})
        principal: Principal = request[PRINCIPAL]
        catalog = bundle().catalog

        def owned(dataset_id: str) -> bool:
            # Samples go to the owner department's data officers only: not even the SOC.
            dataset = catalog.datasets.get(dataset_id)
            return (
                dataset is not None
                and officer_role in principal.roles
                and principal.department == dataset.owner
            )

        view = quality.snapshot(owned)
        if not soc & principal.roles:
            # A data officer sees its own department's datasets only.
            view["fields"] = [row for row in view["fields"] if owned(row["dataset"])]
        return json_response({**view, "enabled": True})

    return table
