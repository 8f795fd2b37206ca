"""Forward stage: send the request to the dataset's upstream over pooled connections and relay
the answer back, through the mask stage's body transform when there is one."""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import AsyncIterator, Callable, Iterable, Mapping

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway.context import RequestContext
from gateway.errors import GatewayError
from gateway.masking.codecs import BodyTransform

# RFC 9110 §7.6.1 connection-specific fields, plus the proxy ones.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Set by the gateway itself; a client's values are dropped.
GATEWAY_SET = frozenset(
    {
        "host",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-port",
        "forwarded",
        "x-real-ip",
        "x-request-id",
        "content-length",
    }
)
# Would let an upstream run another method than the one the policy decided on.
METHOD_OVERRIDES = frozenset({"x-http-method-override", "x-http-method", "x-method-override"})
# Dropped on classified routes: the gateway must see whole, identity-encoded bodies to mask.
CLASSIFIED_DROP = frozenset({"accept-encoding", "range", "if-range"})
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


def upstream_request_headers(
    ctx: RequestContext,
    *,
    forward_authorization: bool,
    classified: bool,
    strip: Iterable[str],
) -> CIMultiDict[str]:
    """The headers sent upstream: the client's, minus hop-by-hop, identity and gateway-set ones."""
    incoming = ctx.request.headers
    drop = HOP_BY_HOP | GATEWAY_SET | METHOD_OVERRIDES | connection_listed(incoming) | set(strip)
    if not forward_authorization:
        drop = drop | {"authorization"}
    if classified:
        drop = drop | CLASSIFIED_DROP
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in incoming.items():
        lname = name.lower()
        if lname in drop and not (lname == "authorization" and forward_authorization):
            continue
        # CGI-style upstreams read X_User as X-User: names with underscores are dropped,
        # as nginx does by default.
        if "_" in lname:
            continue
        out.add(name, value)
    if forward_authorization and "authorization" in incoming:
        out["Authorization"] = incoming["Authorization"]
    if classified:
        out["Accept-Encoding"] = "identity"
    out["X-Forwarded-For"] = ctx.client_ip
    out["X-Forwarded-Proto"] = ctx.request.scheme
    out["X-Forwarded-Host"] = ctx.request.host
    out["X-Request-ID"] = ctx.request_id
    return out


def client_response_headers(
    upstream_headers: CIMultiDictProxy[str], request_id: str, transformed: bool
) -> CIMultiDict[str]:
    drop = HOP_BY_HOP | connection_listed(upstream_headers) | {"content-length", "x-request-id"}
    if transformed:
        drop = drop | {
            "content-encoding",
            "content-type",
            "etag",
            "content-md5",
            "digest",
            "accept-ranges",
            "content-range",
        }
    out: CIMultiDict[str] = CIMultiDict(
        (k, v) for k, v in upstream_headers.items() if k.lower() not in drop
    )
    out["X-Request-ID"] = request_id
    return out


class ForwardStage:
    name = "forward"

    def __init__(
        self,
        upstreams: Mapping[str, Upstream],
        *,
        request_max_bytes: int,
        strip_headers: Iterable[str] = (),
    ) -> None:
        self._upstreams = dict(upstreams)
        self._request_max = request_max_bytes
        self._strip = frozenset(h.lower() for h in strip_headers)
        self._sessions: dict[str, aiohttp.ClientSession] = {}

    async def start(self) -> None:
        for up in self._upstreams.values():
            connector = aiohttp.TCPConnector(
                limit=up.pool_size,
                keepalive_timeout=30,
                ttl_dns_cache=300,
                ssl=up.ssl if up.ssl is not None else True,
            )
            self._sessions[up.name] = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"),
            )

    def retime(self, timeouts: Mapping[str, tuple[float, float]]) -> None:
        """New (connect, total) timeouts per upstream name, kept on the pooled connections
        (a config reload); the next request uses them."""
        for name, (connect, total) in timeouts.items():
            self._upstreams[name] = dataclasses.replace(
                self._upstreams[name], connect_timeout=connect, total_timeout=total
            )

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()

    def _body(self, ctx: RequestContext) -> AsyncIterator[bytes] | None:
        request = ctx.request
        if not request.body_exists:
            return None
        limit = self._request_max
        declared = request.content_length
        if declared is not None and declared > limit:
            raise GatewayError("payload_too_large", f"request body is over {limit} bytes")

        async def stream() -> AsyncIterator[bytes]:
            seen = 0
            async for chunk in request.content.iter_chunked(CHUNK):
                seen += len(chunk)
                if seen > limit:
                    ctx.extra["request_too_large"] = True
                    raise RequestTooLarge
                yield chunk

        return stream()

    async def open(self, ctx: RequestContext) -> aiohttp.ClientResponse:
        """Send the request upstream; the caller must release the response."""
        dataset = ctx.dataset
        assert dataset is not None, "route stage runs first"
        up = self._upstreams[dataset.upstream]
        timeouts = dataset.timeouts
        timeout = aiohttp.ClientTimeout(
            total=timeouts.total if timeouts else up.total_timeout,
            sock_connect=timeouts.connect if timeouts else up.connect_timeout,
        )
        headers = upstream_request_headers(
            ctx,
            forward_authorization=dataset.forward_authorization,
            classified=dataset.classified,
            strip=self._strip,
        )
        # The raw target was validated by the route stage; send it as is, never re-quoted.
        target = URL(up.url.rstrip("/") + ctx.request.raw_path, encoded=True)
        try:
            return await self._sessions[up.name].request(
                ctx.method,
                target,
                headers=headers,
                data=self._body(ctx),
                timeout=timeout,
                allow_redirects=False,
                compress=None,
            )
        except RequestTooLarge:
            raise GatewayError(
                "payload_too_large", f"request body is over {self._request_max} bytes"
            ) from None
        except TimeoutError:
            ctx.extra["upstream_failure"] = "timeout"
            raise GatewayError("upstream_timeout", "the upstream did not answer in time") from None
        except aiohttp.ClientError as exc:
            if ctx.extra.get("request_too_large"):
                raise GatewayError(
                    "payload_too_large", f"request body is over {self._request_max} bytes"
                ) from None
            ctx.extra["upstream_failure"] = "error"
            raise GatewayError(
                "upstream_error", f"the upstream failed: {type(exc).__name__}"
            ) from None

    async def relay(
        self,
        ctx: RequestContext,
        upstream: aiohttp.ClientResponse,
        transform: BodyTransform | None,
        before_stream: BeforeStream,
        mask_headers: HeaderMask,
    ) -> web.StreamResponse:
        """Answer the client from the upstream response, through `transform` when given.

        Small bodies are read whole, so a failure becomes a clean JSON error; large ones
        stream, and a failure mid-stream aborts the connection rather than send bad data.
        """
        request = ctx.request
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
        try:
            if length is not None and length <= BUFFER_LIMIT:
                body = await self._read_whole(upstream)
                if transform is not None:
                    body = transform.whole(body)
                    headers["Content-Type"] = transform.content_type
                ctx.status = upstream.status
                ctx.bytes_out = len(body)
                return web.Response(status=upstream.status, headers=headers, body=body)
        except TimeoutError:
            raise GatewayError("upstream_timeout", "the upstream did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise GatewayError(
                "upstream_error", f"the upstream response failed: {type(exc).__name__}"
            ) from None
        return await self._stream(ctx, upstream, headers, transform, before_stream)

    async def _read_whole(self, upstream: aiohttp.ClientResponse) -> bytes:
        body = await upstream.read()
        if upstream.content_length is not None and len(body) != upstream.content_length:
            raise aiohttp.ClientPayloadError("response body is shorter than its Content-Length")
        return body

    async def _stream(
        self,
        ctx: RequestContext,
        upstream: aiohttp.ClientResponse,
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
        iterator = upstream.content.iter_chunked(CHUNK)
        # Read the first chunk before sending headers, so an early failure is a JSON error.
        try:
            first = await anext(iterator, b"")
            out = transform.feed(first) if transform is not None else first
        except TimeoutError:
            raise GatewayError("upstream_timeout", "the upstream did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise GatewayError(
                "upstream_error", f"the upstream response failed: {type(exc).__name__}"
            ) from None
        before_stream(ctx, response)
        await response.prepare(ctx.request)
        try:
            if out:
                await response.write(out)
                ctx.bytes_out += len(out)
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


class RequestTooLarge(Exception):
    """The streamed request body went over the configured limit."""
