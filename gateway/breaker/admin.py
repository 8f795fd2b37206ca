"""Admin API for breakers: list, open (or force open), reset; who did it is recorded."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from gateway.admin.app import PRINCIPAL, admin_error
from gateway.breaker.config import SCOPES
from gateway.breaker.core import BreakerState
from gateway.breaker.store import Breakers
from gateway.errors import StateUnavailable
from gateway.identity.principal import Principal

MODES = ("open", "forced_open")


class BadField(ValueError):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


def bad_request(request: web.Request, exc: BadField) -> web.Response:
    return admin_error(request, 400, "bad_request", str(exc), field=exc.field)


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object, or BadField naming `body`."""
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadField("body", "is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadField("body", "must be a JSON object")
    return body


def text(body: dict[str, Any], name: str, required: bool = True) -> str:
    value = body.get(name, "" if not required else None)
    if value is None:
        raise BadField(name, "is required")
    if not isinstance(value, str):
        raise BadField(name, "must be a string")
    if required and not value.strip():
        raise BadField(name, "must not be empty")
    return value


def actor(request: web.Request) -> str:
    principal = request.get(PRINCIPAL)
    if not isinstance(principal, Principal):
        raise web.HTTPForbidden(
            text='{"error": "forbidden", "message": "no authenticated principal"}',
            content_type="application/json",
        )
    return principal.subject


def parse_time(value: Any, name: str) -> float:
    """An ISO 8601 time with offset, as epoch seconds."""
    if not isinstance(value, str):
        raise BadField(name, "must be an ISO 8601 time with offset")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise BadField(name, f"is not an ISO 8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        raise BadField(name, "needs a UTC offset, e.g. 2026-01-01T08:00:00+08:00")
    return parsed.timestamp()


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
            states = await breakers.list_all()
        except StateUnavailable as exc:
            return admin_error(request, 503, "unavailable", f"breaker state is unavailable: {exc}")
        now = clock()
        items = [view(s, now) for s in states]
        if request.query.get("all") not in ("1", "true"):
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
    return scope, key, text(body, "note")


def _until(body: dict[str, Any], now: float) -> float:
    if "until" in body and "duration" in body:
        raise BadField("until", "give until or duration, not both")
    if "duration" in body:
        seconds = body["duration"]
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
            raise BadField("duration", "must be a positive number of seconds")
        return now + float(seconds)
    if "until" not in body:
        raise BadField("until", "is required for mode open (or give duration)")
    until = parse_time(body["until"], "until")
    if until <= now:
        raise BadField("until", "must be in the future")
    return until
