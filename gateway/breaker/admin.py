"""Admin API for breakers: list, open (or force open), reset; who did it is recorded."""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from gateway.admin.app import admin_error
from gateway.admin.inputs import (
    BadField,
    actor,
    bad_request,
    flag,
    json_body,
    only_params,
    parse_time,
    text,
)
from gateway.breaker.config import SCOPES
from gateway.breaker.core import BreakerState, check_address
from gateway.breaker.store import Breakers
from gateway.errors import StateUnavailable

MODES = ("open", "forced_open")


def view(s: BreakerState, now: float) -> dict[str, Any]:
    out = s.to_dict()
    out["effective"] = s.effective(now)
    out["until_at"] = (
        dt.datetime.fromtimestamp(s.until, dt.UTC).isoformat(timespec="seconds")
        if s.until is not None
        else None
    )
    return out


def routes(breakers: Breakers, clock: Callable[[], float] = time.time) -> web.RouteTableDef:
    """GET /breakers, POST /breakers, POST /breakers/reset; request[PRINCIPAL] is the actor."""
    table = web.RouteTableDef()

    @table.get("/breakers")
    async def list_breakers(request: web.Request) -> web.Response:
        try:
            only_params(request.query, ["all"])
            everything = flag(request.query, "all")
            states = await breakers.list_all()
        except BadField as exc:
            return bad_request(request, exc)
        except StateUnavailable as exc:
            return admin_error(request, 503, "unavailable", f"breaker state is unavailable: {exc}")
        now = clock()
        items = [view(s, now) for s in states]
        if not everything:
            items = [i for i in items if i["effective"] != "closed"]
        return web.json_response({"breakers": items, "view_trusted": breakers.trusted})

    @table.post("/breakers")
    async def open_breaker(request: web.Request) -> web.Response:
        by = actor(request)
        try:
            body = await json_body(request)
            scope, key, note = _target(body)
            mode = body.get("mode", "forced_open")
            if mode not in MODES:
                raise BadField("mode", f"must be one of {', '.join(MODES)}")
            until = _until(body, clock()) if mode == "open" else None
            if mode == "forced_open" and ("until" in body or "duration" in body):
                raise BadField("until", "a forced-open breaker is lifted only by a reset")
            state = await breakers.soc_open(scope, key, by, note, until, mode == "forced_open")
        except BadField as exc:
            return bad_request(request, exc)
        except ValueError as exc:
            field = str(exc).split(":", 1)[0] if ":" in str(exc) else "body"
            return bad_request(request, BadField(field, str(exc).split(": ", 1)[-1]))
        except StateUnavailable as exc:
            return admin_error(request, 503, "unavailable", f"breaker not changed: {exc}")
        return web.json_response({"breaker": view(state, clock())}, status=201)

    @table.post("/breakers/reset")
    async def reset_breaker(request: web.Request) -> web.Response:
        by = actor(request)
        try:
            body = await json_body(request)
            scope, key, note = _target(body)
            state = await breakers.reset(scope, key, by, note)
        except BadField as exc:
            return bad_request(request, exc)
        except StateUnavailable as exc:
            return admin_error(request, 503, "unavailable", f"breaker not changed: {exc}")
        return web.json_response({"breaker": view(state, clock())})

    return table


def _target(body: dict[str, Any]) -> tuple[str, str, str]:
    scope = text(body, "scope")
    if scope not in SCOPES:
        raise BadField("scope", f"must be one of {', '.join(SCOPES)}, got {scope!r}")
    key = text(body, "key")
    if scope == "pair" and (key.count("|") != 1 or "" in key.split("|")):
        raise BadField("key", f"a pair key is PRINCIPAL|DATASET, got {key!r}")
    if scope == "address":
        try:
            check_address(key)
        except ValueError as exc:
            raise BadField("key", str(exc)) from None
    return scope, key, text(body, "note")


def _until(body: dict[str, Any], now: float) -> float:
    if "until" in body and "duration" in body:
        raise BadField("until", "give until or duration, not both")
    if "duration" in body:
        seconds = body["duration"]
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, (int, float))
            or not math.isfinite(seconds)
            or seconds <= 0
        ):
            raise BadField("duration", "must be a positive number of seconds")
        return _shown(now + float(seconds), "duration", "must end before the year 10000")
    if "until" not in body:
        raise BadField("until", "is required for mode open (or give duration)")
    until = parse_time(body["until"], "until")
    if until <= now:
        raise BadField("until", "must be in the future")
    return _shown(until, "until", "must be before the year 10000 (UTC)")


def _shown(ts: float, name: str, problem: str) -> float:
    """`ts` if `view` can write it as a time: a breaker that cannot be shown would break the
    breaker list for every SOC user until it is reset."""
    try:
        dt.datetime.fromtimestamp(ts, dt.UTC)
    except (OverflowError, ValueError, OSError):
        raise BadField(name, problem) from None
    return ts
