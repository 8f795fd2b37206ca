"""The request path: the stage sequence of PRODUCT.md, fixed in this one place."""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import orjson
from aiohttp import web
from multidict import CIMultiDict

from gateway.context import RequestContext
from gateway.errors import GatewayError, StateUnavailable
from gateway.logs import get_logger
from gateway.masking.codecs import BodyTransform
from gateway.stages.forward import ForwardStage
from gateway.stages.record import RecordStage

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

STAGE_ORDER = (
    "route",
    "authenticate",
    "suspension",
    "authorise",
    "observe",
    "forward",
    "mask",
    "record",
)


class CheckStage(Protocol):
    """A stage before forwarding: it reads the context, adds its result, or refuses."""

    name: str

    def __call__(self, ctx: RequestContext) -> Awaitable[None]: ...


class MaskStage(Protocol):
    """The mask stage: a pre-forward query guard, then a body transform per response."""

    name: str

    def __call__(self, ctx: RequestContext) -> Awaitable[None]: ...

    def body_transform(
        self, ctx: RequestContext, status: int, headers: object
    ) -> BodyTransform | None: ...

    def gateway_error(self, exc: Exception) -> GatewayError | None: ...

    def mask_headers(self, ctx: RequestContext, headers: CIMultiDict[str]) -> None: ...


def request_id(candidate: str | None) -> str:
    """Keep a client's request id only if it is a safe short token."""
    if candidate and _SAFE_REQUEST_ID.match(candidate):
        return candidate
    return os.urandom(16).hex()


def error_response(ctx: RequestContext, exc: GatewayError) -> web.Response:
    headers = {"X-Request-ID": ctx.request_id, **exc.headers}
    return web.Response(
        status=exc.status,
        body=orjson.dumps(exc.body(ctx.request_id)),
        content_type="application/json",
        headers=headers,
    )


class Pipeline:
    """Runs route → authenticate → suspension → authorise → observe → forward → mask → record."""

    def __init__(
        self,
        *,
        route: CheckStage,
        authenticate: CheckStage,
        suspension: CheckStage,
        authorise: CheckStage,
        observe: CheckStage,
        forward: ForwardStage,
        mask: MaskStage,
        record: RecordStage,
        client_ip: Callable[[web.BaseRequest], str],
        clock: Callable[[], float] = time.time,
        on_unmaskable: Callable[[RequestContext, GatewayError], Awaitable[None]] | None = None,
    ) -> None:
        self.checks: Sequence[CheckStage] = (route, authenticate, suspension, authorise, observe)
        # The mask stage's pre-forward checks (the query guard) run after the policy decision.
        self.mask = mask
        self.forward = forward
        self.record = record
        self._client_ip = client_ip
        self._clock = clock
        self._on_unmaskable = on_unmaskable
        self._log = get_logger("datagate.pipeline")
        self.running = 0  # requests between arrival and their record (shutdown waits for 0)

    def rewire(self, new: Pipeline) -> None:
        """Take the stages of `new`, built from a reloaded config, for the stages still to run:
        the data listener keeps calling this pipeline's `handle`."""
        self.checks, self.mask, self.record = new.checks, new.mask, new.record
        self._client_ip = new._client_ip

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        ctx = RequestContext(
            request=request,
            request_id=request_id(request.headers.get("X-Request-ID")),
            ts=self._clock(),
            started=time.perf_counter(),
            client_ip=self._client_ip(request),
            method=request.method,
        )
        response: web.StreamResponse
        self.running += 1
        try:
            for stage in self.checks:
                await stage(ctx)
            response = await self._forward(ctx)
        except GatewayError as exc:
            response = self._refuse(ctx, exc)
        except StateUnavailable:
            response = self._refuse(
                ctx, GatewayError("unavailable", "the state backend is unavailable; refusing")
            )
        except asyncio.CancelledError:
            # Only a shutdown cancels a request (one still running after
            # server.shutdown_timeout): it is cut, and recorded as cut.
            ctx.error, ctx.reason = "unavailable", "shutdown"
            raise
        except Exception:
            self._log.exception("stage_failed", request_id=ctx.request_id)
            response = self._refuse(
                ctx, GatewayError("unavailable", "the gateway could not decide safely")
            )
        finally:
            try:
                await self.record(ctx)
            finally:
                self.running -= 1
        seq = self.record.seq_header(ctx)
        if seq is not None and not response.prepared:
            response.headers["X-Audit-Seq"] = seq
        return response

    def _before_stream(self, ctx: RequestContext, response: web.StreamResponse) -> None:
        self.record.begin(ctx)
        seq = self.record.seq_header(ctx)
        if seq is not None:
            response.headers["X-Audit-Seq"] = seq

    def _refuse(self, ctx: RequestContext, exc: GatewayError) -> web.Response:
        ctx.status = exc.status
        ctx.error = exc.code
        ctx.reason = exc.reason or exc.message
        if "incident_id" in exc.extra:
            ctx.incident_id = exc.extra["incident_id"]
        return error_response(ctx, exc)

    async def _forward(self, ctx: RequestContext) -> web.StreamResponse:
        await self.mask(ctx)
        self.record.guard(ctx)
        upstream = await self.forward.open(ctx)
        try:
            try:
                transform = self.mask.body_transform(ctx, upstream.status, upstream.headers)
                return await self.forward.relay(
                    ctx, upstream, transform, self._before_stream, self.mask.mask_headers
                )
            except GatewayError:
                raise
            except Exception as exc:
                mapped = self.mask.gateway_error(exc)
                if mapped is None:
                    raise
                if self._on_unmaskable is not None:
                    await self._on_unmaskable(ctx, mapped)
                raise mapped from None
        finally:
            upstream.release()
