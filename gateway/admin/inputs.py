"""Admin request input: strict JSON bodies, fields, query parameters and times, and the error
that names the bad one (shared by the breaker, grant and incident endpoints)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from aiohttp import web

from gateway.admin.app import PRINCIPAL, admin_error
from gateway.identity.principal import Principal

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
