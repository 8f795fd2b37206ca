"""The demo's sample data API: the four synthetic datasets over paged JSON, CSV and NDJSON."""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from gateway.demo.data import Record, make_demo_data

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "make_upstream_app", "start_upstream"]

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
PERSON_CSV_COLUMNS = ("id", "name", "id_card", "phone", "address", "birth_date", "gender")
JSON = "application/json"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, code: str, message: str) -> web.Response:
    return web.Response(
        status=status,
        body=orjson.dumps({"error": code, "message": message}),
        content_type=JSON,
    )


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int | str:
    """The integer query parameter, or the message explaining why it is unacceptable."""
    raw = request.query.getall(name, [])
    if not raw:
        return default
    if len(raw) > 1:
        return f"{name} must be given once"
    text = raw[0]
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        return f"{name} must be an integer between {low} and {high}"
    value = int(text)
    if not low <= value <= high:
        return f"{name} must be an integer between {low} and {high}"
    return value


class _Collection:
    """One dataset's records, serialised once so that serving a page is a bytes join."""

    def __init__(self, records: list[Record]) -> None:
        self.encoded = [orjson.dumps(record) for record in records]
        self.by_id = {
            record["id"]: body for record, body in zip(records, self.encoded, strict=True)
        }

    async def page(self, request: web.Request) -> web.Response:
        page = _int_param(request, "page", 1, 1, 10**9)
        if isinstance(page, str):
            return _error(400, "bad_request", page)
        size = _int_param(request, "size", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
        if isinstance(size, str):
            return _error(400, "bad_request", size)
        start = (page - 1) * size
        items = b",".join(self.encoded[start : start + size])
        tail = f'],"page":{page},"size":{size},"total":{len(self.encoded)}}}'.encode()
        return web.Response(body=b'{"items":[' + items + tail, content_type=JSON)

    async def item(self, request: web.Request) -> web.Response:
        text = request.match_info["id"]
        if not (text.isascii() and text.isdigit()) or len(text) > 9:
            return _error(400, "bad_request", "id must be an integer")
        body = self.by_id.get(int(text))
        if body is None:
            return _error(404, "not_found", f"no record with id {int(text)}")
        return web.Response(body=body, content_type=JSON)


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own errors (unknown path, wrong method) in the same JSON shape as ours."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "bad_request")
        response = _error(exc.status, code, exc.reason)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response


def _fixed(body: bytes, content_type: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=content_type, charset="utf-8")

    return handler


def _persons_csv(persons: list[Record]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(PERSON_CSV_COLUMNS)
    writer.writerows([person[column] for column in PERSON_CSV_COLUMNS] for person in persons)
    return out.getvalue().encode()


def _ndjson(records: list[Record]) -> bytes:
    return b"".join(orjson.dumps(record) + b"\n" for record in records)


def make_upstream_app(seed: int = 7, size: int = 500) -> web.Application:
    """The sample data API with `size` records per dataset generated from `seed`."""
    data = make_demo_data(seed, size)
    app = web.Application(middlewares=[_json_errors])
    routes: list[tuple[str, list[Record], dict[str, Handler]]] = [
        (
            "/api/population/persons",
            data.persons,
            {".csv": _fixed(_persons_csv(data.persons), "text/csv")},
        ),
        ("/api/enterprise/companies", data.companies, {}),
        (
            "/api/social-security/accounts",
            data.accounts,
            {".ndjson": _fixed(_ndjson(data.accounts), "application/x-ndjson")},
        ),
        ("/api/medical/records", data.medical_records, {}),
    ]
    for path, records, exports in routes:
        collection = _Collection(records)
        app.router.add_get(path, collection.page)
        app.router.add_get(path + "/{id}", collection.item)
        for suffix, handler in exports.items():
            app.router.add_get(path + suffix, handler)
    return app


async def start_upstream(
    host: str = "127.0.0.1", port: int = 8081, seed: int = 7, size: int = 500
) -> web.AppRunner:
    """Serve the sample data API on host:port; the caller ends it with `runner.cleanup()`."""
    runner = web.AppRunner(make_upstream_app(seed, size), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
