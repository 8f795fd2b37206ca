"""Admin API for breakers: list, open (or force open), reset; who did it is recorded."""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson
from aiohttp import web

from gateway.admin.app import PRINCIPAL, admin_error
from gateway.breaker.config import SCOPES
from gateway.breaker.core import BreakerState
from gateway.breaker.store import Breakers
from gateway.errors import StateUnavailable
from gateway.identity.principal import Principal

MODES = ("open", "forced_open")
FLAGS = ("1", "true", "0", "false")


class BadField(ValueError):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


def bad_request(request: web.Request, exc: BadField) -> web.Response:
    return admin_error(request, 400, "bad_request", str(exc), field=exc.field)


async def read_json(request: web.Request) -> Any:
    """The request body as strict JSON (RFC 8259: no NaN or Infinity), or BadField naming
    `body`."""
    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise BadField("body", "is not valid JSON") from None


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object, or BadField naming `body`."""
    body = await read_json(request)
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


def only_params(query: Mapping[str, str], known: Iterable[str]) -> None:
    """Refuse a query parameter the endpoint does not read (a typo must not widen a list)."""
    unknown = set(query) - set(known)
    if unknown:
        raise BadField(sorted(unknown)[0], "unknown query parameter")


def flag(query: Mapping[str, str], name: str) -> bool:
    """A yes/no query parameter: 1/true or 0/false; absent is false."""
    value = query.get(name, "0")
    if value not in FLAGS:
        raise BadField(name, f"must be one of {', '.join(FLAGS)}, got {value!r}")
    return value in ("1", "true")


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
