"""Forward stage: send the request to the dataset's upstream over pooled connections and relay
the answer back, through the mask stage's body transform when there is one."""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import AsyncGenerator, Callable, Mapping

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.context import RequestContext
from gateway.errors import GatewayError
from gateway.masking.codecs import BodyTransform
from gateway.policy.catalog import EXPORT_MEDIA_TYPES, Timeouts
from gateway.request_headers import HOP_BY_HOP
from gateway.upstream import UpstreamFailure, UpstreamPool, UpstreamResponse

CHUNK = 64 * 1024
# Called just before a streamed response sends its headers (the record stage's `begin`).
BeforeStream = Callable[[RequestContext, web.StreamResponse], None]
# Masks identifiers in the response headers (the mask stage's `mask_headers`).
HeaderMask = Callable[[RequestContext, CIMultiDict[str]], None]
# Bodies up to this size are read whole and answered with an exact Content-Length.
BUFFER_LIMIT = 256 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class Upstream:
    name: str
    url: str
    connect_timeout: float
    total_timeout: float
    pool_size: int
    ssl: ssl.SSLContext | None = None  # https:// upstreams: the context that verifies them


def connection_listed(headers: Mapping[str, str]) -> set[str]:
    """Header names a sender listed in `Connection`: they are hop-by-hop too."""
    listed = set()
    for value in headers.getall("connection", []):  # type: ignore[attr-defined]
        listed.update(token.strip().lower() for token in value.split(",") if token.strip())
    return listed


def upstream_request_headers(ctx: RequestContext) -> list[tuple[str, str]]:
    """The headers sent upstream: the client's that the route's allow-list names (built when
    the catalog loaded: the default end-to-end list plus the route's `forward_headers`),
    the caller's token only with `forward_authorization`, then the gateway's own."""
    request = ctx.request
    incoming = request.headers
    dataset = ctx.dataset
    assert dataset is not None, "route stage runs first"
    allow = dataset.request_headers
    if "connection" in incoming:
        allow = allow - connection_listed(incoming)
    out = [(name, value) for name, value in incoming.items() if name.lower() in allow]
    if dataset.forward_authorization and "authorization" in incoming:
        out.append(("Authorization", incoming["Authorization"]))
    if dataset.classified:
        out.append(("Accept-Encoding", "identity"))
    out.append(("X-Forwarded-For", ctx.client_ip))
    out.append(("X-Forwarded-Proto", request.scheme))
    out.append(("X-Forwarded-Host", request.host))
    out.append(("X-Request-ID", ctx.request_id))
    return out


def client_response_headers(
    upstream_headers: CIMultiDictProxy[str], request_id: str, transformed: bool
) -> CIMultiDict[str]:
    drop = HOP_BY_HOP | {"content-length", "x-request-id"}
    if "connection" in upstream_headers:
        drop = drop | connection_listed(upstream_headers)
    if transformed:
        drop = drop | TRANSFORMED_DROP
    out: CIMultiDict[str] = CIMultiDict(
        (k, v) for k, v in upstream_headers.items() if k.lower() not in drop
    )
    out["X-Request-ID"] = request_id
    return out


# Upstream response headers that do not describe a masked body (identity-encoded, of another
# length and digest, without ranges, not the upstream's representation to validate).
TRANSFORMED_DROP = frozenset(
    {
        "content-encoding",
        "content-type",
        "etag",
        "last-modified",
        # Digests of the unmasked body would let a caller confirm guesses of what was masked.
        "content-md5",
        "digest",
        "content-digest",
        "repr-digest",
        "accept-ranges",
        "content-range",
    }
)


class ForwardStage:
    name = "forward"

    def __init__(
        self,
        upstreams: Mapping[str, Upstream],
        *,
        request_max_bytes: int,
    ) -> None:
        self._upstreams = dict(upstreams)
        self._request_max = request_max_bytes
        self._pools: dict[str, UpstreamPool] = {}
        self._timeouts = {
            up.name: Timeouts(up.connect_timeout, up.total_timeout)
            for up in self._upstreams.values()
        }

    async def start(self) -> None:
        for up in self._upstreams.values():
            self._pools[up.name] = UpstreamPool(up.name, up.url, up.pool_size, ssl_context=up.ssl)

    def retime(self, timeouts: Mapping[str, tuple[float, float]]) -> None:
        """New (connect, total) timeouts per upstream name, kept on the pooled connections
        (a config reload); the next request uses them."""
        for name, (connect, total) in timeouts.items():
            self._upstreams[name] = dataclasses.replace(
                self._upstreams[name], connect_timeout=connect, total_timeout=total
            )
            self._timeouts[name] = Timeouts(connect, total)

    async def close(self) -> None:
        for pool in self._pools.values():
            await pool.close()
        self._pools.clear()

    def _body(self, ctx: RequestContext) -> AsyncGenerator[bytes, None] | None:
        request = ctx.request
        if not request.body_exists:
            return None
        limit = self._request_max
        declared = request.content_length
        if declared is not None and declared > limit:
            raise GatewayError("payload_too_large", f"request body is over {limit} bytes")
        expect = request.headers.get("Expect")
        if expect is not None and expect.lower() != "100-continue":
            raise GatewayError(
                "bad_request", f"Expect: {expect} is not supported", reason="bad_expect"
            )

        async def stream() -> AsyncGenerator[bytes, None]:
            if expect is not None and request.version >= (1, 1):
                # The client waits for this before it sends the body.
                await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            seen = 0
            try:
                async for chunk in request.content.iter_chunked(CHUNK):
                    seen += len(chunk)
                    if seen > limit:
                        ctx.extra["request_too_large"] = True
                        raise RequestTooLarge
                    yield chunk
            except (ConnectionError, HttpProcessingError) as exc:
                # The client went away mid-body, or sent bad chunked framing.
                raise ClientBodyError(type(exc).__name__) from None

        return stream()

    async def open(self, ctx: RequestContext) -> UpstreamResponse:
        """Send the request upstream; the caller must release the response."""
        dataset = ctx.dataset
        assert dataset is not None, "route stage runs first"
        pool = self._pools[dataset.upstream]
        timeouts = dataset.timeouts or self._timeouts[dataset.upstream]
        headers = upstream_request_headers(ctx)
        body = self._body(ctx)
        try:
            # The raw target was validated by the route stage; it is sent as is.
            return await pool.request(
                ctx.method,
                ctx.request.raw_path,
                headers,
                body,
                length=ctx.request.content_length if body is not None else None,
                timeouts=timeouts,
            )
        except RequestTooLarge:
            raise GatewayError(
                "payload_too_large", f"request body is over {self._request_max} bytes"
            ) from None
        except ClientBodyError as exc:
            raise GatewayError(
                "bad_request",
                f"the request body was cut short or malformed ({exc})",
                reason="bad_body",
            ) from None
        except UpstreamFailure as exc:
            if ctx.extra.get("request_too_large"):
                raise GatewayError(
                    "payload_too_large", f"request body is over {self._request_max} bytes"
                ) from None
            raise upstream_error(ctx, exc) from None

    async def relay(
        self,
        ctx: RequestContext,
        upstream: UpstreamResponse,
        transform: BodyTransform | None,
        before_stream: BeforeStream,
        mask_headers: HeaderMask,
    ) -> web.StreamResponse:
        """Answer the client from the upstream response, through `transform` when given.

        Small bodies are read whole, so a failure becomes a clean JSON error; large ones
        stream, and a failure mid-stream aborts the connection rather than send bad data.
        """
        request = ctx.request
        if ctx.action in ("read", "list"):
            refuse_undecided_export(ctx, upstream.headers)
        headers = client_response_headers(upstream.headers, ctx.request_id, transform is not None)
        mask_headers(ctx, headers)
        no_body = (
            request.method == "HEAD"
            or upstream.status in (204, 304)
            or (100 <= upstream.status < 200)
        )
        if no_body:
            # The length of an unmasked body says something about it: classified routes
            # do not pass it on.
            classified = ctx.dataset is not None and ctx.dataset.classified
            if transform is None and upstream.content_length is not None and not classified:
                headers["Content-Length"] = str(upstream.content_length)
            ctx.status = upstream.status
            return web.Response(status=upstream.status, headers=headers)
        length = upstream.content_length
        if length is not None and length <= BUFFER_LIMIT:
            try:
                body = await upstream.read()
            except UpstreamFailure as exc:
                raise upstream_error(ctx, exc, "response ") from None
            if transform is not None:
                body = transform.whole(body)
                headers["Content-Type"] = transform.content_type
            ctx.status = upstream.status
            ctx.bytes_out = len(body)
            return web.Response(status=upstream.status, headers=headers, body=body)
        return await self._stream(ctx, upstream, headers, transform, before_stream)

    async def _stream(
        self,
        ctx: RequestContext,
        upstream: UpstreamResponse,
        headers: CIMultiDict[str],
        transform: BodyTransform | None,
        before_stream: BeforeStream,
    ) -> web.StreamResponse:
        if transform is not None:
            headers["Content-Type"] = transform.content_type
        elif upstream.content_length is not None:
            headers["Content-Length"] = str(upstream.content_length)
        response = web.StreamResponse(status=upstream.status, headers=headers)
        ctx.status = upstream.status
        iterator = upstream.iter_chunks()
        # Read until there is something to send (or the body ended) before sending headers,
        # so a failure before the first masked byte (a CSV header naming no classified
        # column, cut anywhere) is a JSON error, not a cut connection. The codecs bound
        # what they hold back.
        out = b""
        ended = False
        try:
            while not out and not ended:
                chunk = await anext(iterator, None)
                if chunk is None:
                    ended = True
                    out = transform.finish() if transform is not None else b""
                else:
                    out = transform.feed(chunk) if transform is not None else chunk
        except UpstreamFailure as exc:
            raise upstream_error(ctx, exc, "response ") from None
        before_stream(ctx, response)
        await response.prepare(ctx.request)
        try:
            if out:
                await response.write(out)
                ctx.bytes_out += len(out)
            if not ended:
                async for chunk in iterator:
                    out = transform.feed(chunk) if transform is not None else chunk
                    if out:
                        await response.write(out)
                        ctx.bytes_out += len(out)
                if transform is not None:
                    tail = transform.finish()
                    if tail:
                        await response.write(tail)
                        ctx.bytes_out += len(tail)
            await response.write_eof()
        except Exception as exc:
            ctx.error = "upstream_error"
            ctx.reason = f"aborted mid-stream: {type(exc).__name__}"
            if ctx.request.transport is not None:
                ctx.request.transport.abort()
        return response


def refuse_undecided_export(ctx: RequestContext, headers: CIMultiDictProxy[str]) -> None:
    """A bulk export (CSV, NDJSON, a spreadsheet, an archive, or an attachment named like one)
    answered to a request decided as read or list is refused: the policy decided, and the
    audit record says, something else than what the upstream serves."""
    media = headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    served = media if media in EXPORT_MEDIA_TYPES else None
    disposition = headers.get("Content-Disposition")
    if served is None and disposition is not None:
        name = disposition.lower().rstrip().rstrip('"').rstrip()
        dataset = ctx.dataset
        if dataset is not None and name.endswith(dataset.export_endings):
            served = "an attachment named like an export"
    if served is not None:
        raise GatewayError(
            "forbidden",
            f"the upstream answered this {ctx.action} request with a bulk export ({served}); "
            "ask for it as an export (a suffix such as .csv, or ?format=)",
            reason="undecided_export",
        )


def upstream_error(ctx: RequestContext, exc: UpstreamFailure, what: str = "") -> GatewayError:
    """The consumer-facing error for a failed exchange (the message names the failure)."""
    ctx.extra["upstream_failure"] = exc.kind
    if exc.kind == "timeout":
        return GatewayError("upstream_timeout", str(exc))
    return GatewayError("upstream_error", f"the upstream {what}failed: {exc}")


class RequestTooLarge(Exception):
    """The streamed request body went over the configured limit."""


class ClientBodyError(Exception):
    """The client's request body could not be read to its end."""
