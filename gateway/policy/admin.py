"""Admin API handlers for grants, policy reload, the policy version and the catalog."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from gateway.admin.app import PRINCIPAL, admin_error
from gateway.admin.inputs import BadField, bad_request, flag, only_params, read_json
from gateway.errors import ConfigError, StateUnavailable
from gateway.identity.principal import Principal
from gateway.policy.catalog import LEVEL_NAMES
from gateway.policy.distribution import Activation, content_from_json
from gateway.policy.grants import Grant, GrantError, GrantStore, iso
from gateway.policy.store import PolicyStore


def _actor(request: web.Request) -> str | None:
    principal = request.get(PRINCIPAL)
    return principal.subject if isinstance(principal, Principal) else None


def grant_view(grant: Grant, now: float) -> dict[str, Any]:
    if now < grant.not_before:
        state = "pending"
    elif now < grant.expires_at:
        state = "active"
    else:
        state = "expired"
    return {**grant.to_json(), "state": state}


def activation_view(activation: Activation, active: bool) -> dict[str, Any]:
    return {**activation.to_json(), "at": iso(activation.at), "active": active}


def routes(store: PolicyStore, grants: GrantStore, clock: Callable[[], float]) -> web.RouteTableDef:
    """The policy and grant endpoints; the admin app authenticates and sets request[PRINCIPAL]."""
    table = web.RouteTableDef()

    @table.get("/grants")
    async def list_grants(request: web.Request) -> web.Response:
        try:
            only_params(request.query, ["dataset", "all"])
            everything = flag(request.query, "all")
        except BadField as exc:
            return bad_request(request, exc)
        now = clock()
        dataset = request.query.get("dataset")
        items = [
            grant_view(g, now)
            for g in grants.all_grants()
            if dataset is None or g.dataset == dataset
        ]
        if not everything:
            items = [g for g in items if g["state"] != "expired"]
        return web.json_response({"grants": items})

    @table.post("/grants")
    async def add_grant(request: web.Request) -> web.Response:
        actor = _actor(request)
        if actor is None:
            return admin_error(
                request, 403, "forbidden", "no authenticated principal on this request"
            )
        try:
            body = await read_json(request)
        except BadField as exc:
            return bad_request(request, exc)
        try:
            grant = await grants.add(body, actor)
        except GrantError as exc:
            return admin_error(request, 400, "bad_request", str(exc), problems=exc.problems)
        except StateUnavailable as exc:
            return admin_error(request, 503, "unavailable", f"grant not stored: {exc}")
        return web.json_response({"grant": grant_view(grant, clock())}, status=201)

    @table.delete("/grants/{id}")
    async def revoke_grant(request: web.Request) -> web.Response:
        actor = _actor(request)
        if actor is None:
            return admin_error(
                request, 403, "forbidden", "no authenticated principal on this request"
            )
        grant_id = request.match_info["id"]
        try:
            grant = await grants.revoke(grant_id, actor)
        except StateUnavailable as exc:
            return admin_error(request, 503, "unavailable", f"grant not revoked: {exc}")
        if grant is None:
            return admin_error(request, 404, "not_found", f"no grant {grant_id!r}")
        return web.json_response({"revoked": grant_view(grant, clock())})

    @table.post("/policy/reload")
    async def reload_policy(request: web.Request) -> web.Response:
        result = await store.reload("api")
        if result.status == "rejected":
            return admin_error(
                request, 422, "policy_rejected", result.message, version=result.version
            )
        return web.json_response({"status": result.status, "version": result.version})

    @table.post("/policy/bundles")
    async def push_bundle(request: web.Request) -> web.Response:
        actor = _actor(request)
        if actor is None:
            return admin_error(
                request, 403, "forbidden", "no authenticated principal on this request"
            )
        try:
            body = await read_json(request)
            content = content_from_json(body)
            message = body.get("message", "")
            if not isinstance(message, str) or len(message) > 1000:
                raise ValueError("message", "must be text of at most 1000 characters")
        except BadField as exc:
            return bad_request(request, exc)
        except ValueError as exc:
            return bad_request(request, BadField(*exc.args))
        if store.source != "store":
            return admin_error(
                request, 409, "conflict", "policy.source is files: bundles are pushed to a store"
            )
        try:
            activation = await store.push(content, by=actor, message=message)
        except StateUnavailable as exc:
            return admin_error(request, 503, "unavailable", f"bundle not stored: {exc}")
        except ConfigError as exc:
            if str(exc).startswith("policy.signing_key"):
                return admin_error(request, 409, "conflict", str(exc))
            return admin_error(
                request, 422, "policy_rejected", str(exc), version=store.current.version
            )
        return web.json_response(activation_view(activation, True), status=201)

    @table.get("/policy/bundles")
    async def bundle_history(request: web.Request) -> web.Response:
        try:
            only_params(request.query, [])
        except BadField as exc:
            return bad_request(request, exc)
        if store.source != "store":
            return admin_error(
                request, 409, "conflict", "policy.source is files: there is no bundle history"
            )
        try:
            items, active = await store.history()
        except StateUnavailable as exc:
            return admin_error(request, 503, "unavailable", f"history not read: {exc}")
        return web.json_response(
            {
                "active": active[1] if active else None,
                "history": [
                    activation_view(a, active is not None and a.seq == active[0]) for a in items
                ],
            }
        )

    @table.get("/policy")
    async def policy_info(request: web.Request) -> web.Response:
        bundle = store.current
        return web.json_response(
            {
                "version": bundle.version,
                "loaded_at": iso(bundle.loaded_at),
                "directory": str(bundle.directory),
                "datasets": len(bundle.catalog.datasets),
                "rows": len(bundle.rows),
            }
        )

    @table.get("/catalog")
    async def catalog(request: web.Request) -> web.Response:
        bundle = store.current
        datasets = [
            {
                "id": d.id,
                "title": d.title,
                "route": d.route,
                "owner": d.owner,
                "level": d.level,
                "level_name": LEVEL_NAMES[d.level],
                "sharing": d.sharing,
                "masked_from_clearance": d.masked_from_clearance,
                "monitor": d.monitor,
                "fields": [
                    {"name": f.name, "level": f.level, "strategy": f.strategy} for f in d.fields
                ],
            }
            for d in bundle.catalog.datasets.values()
        ]
        return web.json_response(
            {
                "version": bundle.catalog.version,
                "policy_version": bundle.version,
                "datasets": datasets,
            }
        )

    return table
