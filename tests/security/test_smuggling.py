"""Request smuggling (RFC 9112 §6.3, §5.2, §3.2): ambiguous framing and duplicated framing
or host fields are refused with a 4xx before anything reaches the upstream. aiohttp's parser
refuses most of these before the pipeline runs; either way nothing is forwarded."""

from __future__ import annotations

from typing import Any

import pytest

from tests.security.helpers import HostileUpstream, send_raw

SMUGGLED = "GET /api/open/smuggled HTTP/1.1\r\nHost: gw\r\n\r\n"


def _attacks(token: str) -> dict[str, bytes]:
    auth = f"Authorization: Bearer {token}\r\n"
    body = f"0\r\n\r\n{SMUGGLED}"
    return {
        "cl_te": (
            f"POST /api/open/x HTTP/1.1\r\nHost: gw\r\n{auth}Content-Length: {len(body)}\r\n"
            f"Transfer-Encoding: chunked\r\n\r\n{body}"
        ),
        "te_cl": (
            f"POST /api/open/x HTTP/1.1\r\nHost: gw\r\n{auth}Transfer-Encoding: chunked\r\n"
            f"Content-Length: 3\r\n\r\n{body}"
        ),
        "te_obfuscated_value": (
            f"POST /api/open/x HTTP/1.1\r\nHost: gw\r\n{auth}Transfer-Encoding: xchunked\r\n"
            f"\r\n{body}"
        ),
        "te_chunked_not_last": (
            f"POST /api/open/x HTTP/1.1\r\nHost: gw\r\n{auth}"
            f"Transfer-Encoding: chunked, identity\r\n\r\n{body}"
        ),
        "te_space_before_colon": (
            f"POST /api/open/x HTTP/1.1\r\nHost: gw\r\n{auth}Transfer-Encoding : chunked\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}"
        ),
        "te_obs_fold": (
            f"POST /api/open/x HTTP/1.1\r\nHost: gw\r\n{auth}Transfer-Encoding: identity\r\n"
            f" chunked\r\n\r\n{body}"
        ),
        "te_in_http_1_0": (
            f"POST /api/open/x HTTP/1.0\r\nHost: gw\r\n{auth}Transfer-Encoding: chunked\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}"
        ),
        "obs_fold_header": (
            f"GET /api/open/x HTTP/1.1\r\nHost: gw\r\n{auth}X-Folded: a\r\n b\r\n"
            "Connection: close\r\n\r\n"
        ),
        "obs_fold_authorization": (
            f"GET /api/open/x HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer\r\n {token}\r\n"
            "Connection: close\r\n\r\n"
        ),
        "duplicate_host": (
            f"GET /api/open/x HTTP/1.1\r\nHost: gw\r\nHost: admin.internal\r\n{auth}"
            "Connection: close\r\n\r\n"
        ),
        "duplicate_content_length": (
            f"POST /api/open/x HTTP/1.1\r\nHost: gw\r\n{auth}Content-Length: 4\r\n"
            "Content-Length: 40\r\nConnection: close\r\n\r\nabcd"
        ),
        "content_length_list": (
            f"POST /api/open/x HTTP/1.1\r\nHost: gw\r\n{auth}Content-Length: 4, 40\r\n"
            "Connection: close\r\n\r\nabcd"
        ),
        "content_length_signed": (
            f"POST /api/open/x HTTP/1.1\r\nHost: gw\r\n{auth}Content-Length: +4\r\n"
            "Connection: close\r\n\r\nabcd"
        ),
        "bad_chunk_size": (
            f"POST /api/open/x HTTP/1.1\r\nHost: gw\r\n{auth}Transfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n4;x\nabcd\r\n0x0\r\n\r\n"
        ),
        "bare_lf_lines": (
            f"GET /api/open/x HTTP/1.1\nHost: gw\n{auth.strip()}\nConnection: close\n\n"
        ),
        "nul_in_header": (
            f"GET /api/open/x HTTP/1.1\r\nHost: gw\r\n{auth}X-A: a\x00b\r\n"
            "Connection: close\r\n\r\n"
        ),
        "space_in_target": (
            f"GET /api/open/x HTTP/1.1 /api/police/1 HTTP/1.1\r\nHost: gw\r\n{auth}"
            "Connection: close\r\n\r\n"
        ),
    }


ATTACKS = sorted(_attacks("t"))


@pytest.mark.parametrize("name", ATTACKS)
async def test_ambiguous_framing_is_a_4xx_and_nothing_is_forwarded(
    gw: Any, hostile: HostileUpstream, name: str
) -> None:
    data = _attacks(gw.token(sub="writer"))[name].encode("latin-1")
    status, body = await send_raw(gw.port, data)
    assert 400 <= status < 500, (name, status, body[:200])
    assert hostile.seen == [], [(s.method, s.path) for s in hostile.seen]


async def test_pipelined_requests_are_each_decided(gw: Any, hostile: HostileUpstream) -> None:
    """Two well-framed requests on one connection: the second, unauthenticated, is a 401."""
    first = f"GET /api/open/one HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {gw.token()}\r\n\r\n"
    second = "GET /api/open/two HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"
    status, body = await send_raw(gw.port, (first + second).encode())
    assert status == 200
    assert b"HTTP/1.1 401" in body
    assert [s.path for s in hostile.seen] == ["/api/open/one"]
