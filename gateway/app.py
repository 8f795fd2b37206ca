"""App wiring: builds the stages from the config, the data and admin listeners, start and stop."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from gateway.clientip import client_ip_resolver
from gateway.config import Config
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.pipeline import PassThrough, Pipeline
from gateway.stages.forward import ForwardStage, Upstream
from gateway.stages.record import RecordStage
from gateway.stages.route import RouteStage


class ListenError(Exception):
    """A listener could not bind its address (e.g. the port is in use)."""


@dataclasses.dataclass
class Listener:
    name: str
    app: web.Application
    host: str
    port: int
    runner: web.AppRunner | None = None
    bound_port: int | None = None


def upstreams_from(config: Config) -> dict[str, Upstream]:
    return {
        name: Upstream(name, u.url, u.connect_timeout, u.total_timeout, u.pool_size)
        for name, u in config.upstreams.items()
    }


async def start_listener(listener: Listener, **server_args: Any) -> None:
    runner = web.AppRunner(listener.app, access_log=None, **server_args)
    await runner.setup()
    site = web.TCPSite(runner, listener.host, listener.port, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ListenError(
            f"cannot listen on {listener.host}:{listener.port} for the {listener.name} "
            f"listener: {exc.strerror or exc}"
        ) from None
    listener.runner = runner
    server = getattr(site, "_server", None)
    sockets = getattr(server, "sockets", None) or []
    listener.bound_port = sockets[0].getsockname()[1] if sockets else listener.port


def data_app(pipeline: Pipeline) -> web.Application:
    app = web.Application(client_max_size=0)
    # One catch-all route: the route stage, not aiohttp's router, decides what is served.
    app.router.add_route("*", "/{tail:.*}", pipeline.handle)
    return app


class Gateway:
    """One gateway process: its stages, its state, its two listeners."""

    def __init__(self, config: Config, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.metrics = Metrics()
        self.log = get_logger("datagate")
        self.ready = False
        self._tasks: list[asyncio.Task[Any]] = []
        self.listeners: list[Listener] = []
        self.components: dict[str, Any] = {}

    def server_args(self) -> dict[str, Any]:
        limit = self.config.server.max_header_bytes
        return {"max_line_size": limit, "max_field_size": limit, "max_headers": 100}

    def build_pipeline(self, catalog: Callable[[], Any], **stages: Any) -> Pipeline:
        server = self.config.server
        forward = ForwardStage(
            upstreams_from(self.config),
            request_max_bytes=server.request_max_bytes,
            strip_headers=stages.pop("strip_headers", ()),
        )
        record = RecordStage(
            self.metrics,
            policy_version=stages.pop("policy_version", lambda: "-"),
            log_requests=server.access_log,
        )
        self.components["forward"] = forward
        self.components["record"] = record
        return Pipeline(
            route=RouteStage(catalog, server.max_path_length),
            authenticate=stages.pop("authenticate", PassThrough("authenticate")),
            suspension=stages.pop("suspension", PassThrough("suspension")),
            authorise=stages.pop("authorise", PassThrough("authorise")),
            observe=stages.pop("observe", PassThrough("observe")),
            forward=forward,
            mask=stages.pop("mask", PassThrough("mask")),
            record=record,
            client_ip=client_ip_resolver(server.trusted_proxies),
            clock=self.clock,
        )
