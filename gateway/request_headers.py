"""Which client request headers go upstream: the default allow-list, and the names a route's
catalog entry may never add to it."""

from __future__ import annotations

import re

from gateway.identity.headers import IDENTITY_HEADERS

# End-to-end headers a data API needs; every other client header is dropped (lower-case).
DEFAULT_FORWARD_HEADERS = frozenset(
    {
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "cache-control",
        "content-encoding",
        "content-language",
        "content-type",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "pragma",
        "range",
        "traceparent",
        "tracestate",
        "user-agent",
    }
)
# Dropped on classified routes even when allowed. Accept-Encoding: the gateway must see whole,
# identity-encoded bodies to mask (it sends its own). Range: a part of a body cannot be masked.
# Conditionals: a 304 or 412 to a guessed validator of the unmasked body confirms the guess.
CLASSIFIED_DROP = frozenset(
    {
        "accept-encoding",
        "range",
        "if-range",
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
    }
)
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
# Set by the gateway itself (Host and the body's framing are the upstream client's).
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
        # The gateway answers `Expect: 100-continue` itself, once the request is authorised.
        "expect",
    }
)
# Names a route may never list, and why (the error at catalog load says it).
NEVER_FORWARD: dict[str, str] = {
    **dict.fromkeys(HOP_BY_HOP, "it is hop-by-hop"),
    **dict.fromkeys(GATEWAY_SET, "the gateway sets it itself"),
    **dict.fromkeys(IDENTITY_HEADERS, "it claims an identity the gateway did not verify"),
    "authorization": "the caller's token goes upstream only with forward_authorization: true",
    "cookie": "the caller's identity at the upstream comes from the gateway, not a cookie",
    **dict.fromkeys(
        (
            "x-original-url",
            "x-original-uri",
            "x-rewrite-url",
            "x-override-url",
            "x-envoy-original-path",
            "x-forwarded-path",
            "x-forwarded-uri",
            "x-forwarded-prefix",
            "x-forwarded-server",
            "x-forwarded-scheme",
            "x-forwarded-ssl",
            "x-http-destinationurl",
            "x-proxy-url",
            "destination",
            "x-host",
        ),
        "it makes an upstream serve another path or host than the one routed",
    ),
    **dict.fromkeys(
        ("x-http-method-override", "x-http-method", "x-method-override"),
        "it makes an upstream run another method than the one decided",
    ),
    **dict.fromkeys(
        (
            "true-client-ip",
            "cf-connecting-ip",
            "fastly-client-ip",
            "x-client-ip",
            "x-cluster-client-ip",
            "x-originating-ip",
            "x-remote-ip",
            "x-remote-addr",
            "client-ip",
        ),
        "it claims a client address; the gateway sends its own X-Forwarded-For",
    ),
    **dict.fromkeys(
        (
            "x-jwt-assertion",
            "ssl-client-cert",
            "x-sub",
            "x-amzn-oidc-data",
            "x-ms-client-principal",
        ),
        "it claims an identity the gateway did not verify",
    ),
}
# Prefixes of proxy, CDN and identity headers: a route may not list any name under them.
NEVER_FORWARD_PREFIXES = (
    "x-forwarded-",
    "x-original-",
    "x-envoy-",
    "x-amzn-",
    "cf-",
    "fastly-",
    "x-ssl-",
    "ssl-client-",
    "x-client-cert",
    "x-jwt-",
    "x-auth-",
    "x-authenticated-",
    "x-user",
    "x-remote-",
    "x-ms-client-",
    "x-goog-authenticated-",
)
# RFC 9110 token characters; underscores are refused too (CGI upstreams read X_User as X-User).
_TOKEN = re.compile(r"[!#$%&'*+.^`|~0-9A-Za-z-]+")


def refused_header(name: str, classified: bool) -> str | None:
    """Why a route may not forward the header `name` (lower-case); None when it may."""
    if not _TOKEN.fullmatch(name):
        return "it is not a valid header name (letters, digits and '-'; no '_')"
    if name in NEVER_FORWARD:
        return NEVER_FORWARD[name]
    if name.startswith(NEVER_FORWARD_PREFIXES):
        return "its prefix names proxy, CDN or identity headers"
    if classified and name in CLASSIFIED_DROP:
        return "classified routes drop it (masking needs whole, unconditional bodies)"
    return None


def allowed_headers(extra: list[str], classified: bool) -> frozenset[str]:
    """The lower-case names a route forwards: the default list plus `extra`, minus what
    classified routes drop. `extra` is assumed checked with `refused_header`."""
    names = DEFAULT_FORWARD_HEADERS | {h.lower() for h in extra}
    return frozenset(names - CLASSIFIED_DROP) if classified else frozenset(names)
