"""The SOC dashboard: its page and static files, and the statistics it draws (GET /stats)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from gateway.admin.app import STATIC_DIR, error_json, json_response
from gateway.admin.stats import DashboardStats
from gateway.errors import GatewayError

CONTENT_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}

# The page loads only its own files and calls only this listener; nothing inline, no framing.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _load(directory: Path) -> dict[str, tuple[bytes, str]]:
    """Every servable file of `directory`, read once: a request can only name one of these,
    so no path it sends can reach outside the directory."""
    files: dict[str, tuple[bytes, str]] = {}
    for path in sorted(directory.iterdir()):
        content_type = CONTENT_TYPES.get(path.suffix)
        if path.is_file() and content_type is not None:
            files[path.name] = (path.read_bytes(), content_type)
    return files


def routes(
    stats: DashboardStats,
    *,
    static_dir: Path = STATIC_DIR,
    clock: Callable[[], float] = time.time,
) -> web.RouteTableDef:
    """`/` (the page) and `/static/{name}` are open like the other dashboard files;
    `/stats` is behind the admin listener's token and role check."""
    files = _load(static_dir)
    table = web.RouteTableDef()

    def serve(request: web.Request, name: str) -> web.Response:
        found = files.get(name)
        if found is None:
            return error_json(request, GatewayError("not_found", f"no dashboard file {name!r}"))
        body, content_type = found
        response = web.Response(body=body, content_type=content_type, charset="utf-8")
        response.headers.update(PAGE_HEADERS)
        return response

    @table.get("/")
    async def page(request: web.Request) -> web.Response:
        return serve(request, "index.html")

    @table.get("/static/{name}")
    async def static(request: web.Request) -> web.Response:
        return serve(request, request.match_info["name"])

    @table.get("/stats")
    async def snapshot(_: web.Request) -> web.Response:
        return json_response(stats.snapshot(clock()))

    return table
