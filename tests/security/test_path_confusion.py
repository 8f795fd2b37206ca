"""Path confusion: any target two servers could read differently is a 400 (or a 404 when it
matches no route) and is never forwarded. Sent as exact bytes, by a caller who may read
`open` but not `police`, so a confused route would show up as a forwarded request."""

from __future__ import annotations

from typing import Any

import pytest

from tests.security.helpers import HostileUpstream, error_of, raw_request, send_raw

BAD = {
    "dot_dot": "/api/open/../police/1",
    "dot": "/api/open/./x",
    "encoded_dot_dot": "/api/open/%2e%2e/police/1",
    "encoded_dot_dot_upper": "/api/open/%2E%2E/police/1",
    "half_encoded_dot_dot": "/api/open/.%2e/police/1",
    "encoded_slash": "/api/open/..%2Fpolice/1",
    "encoded_dot_dot_slash": "/api/open/%2e%2e%2fpolice%2f1",
    "double_encoded": "/api/open/%252e%252e/police/1",
    "overlong_utf8_dot": "/api/open/%c0%ae%c0%ae/police/1",
    "encoded_backslash": "/api/open/..%5cpolice/1",
    "backslash": "/api/open\\..\\police\\1",
    "double_slash_start": "//api/police/1",
    "double_slash_middle": "/api//police/1",
    "double_slash_in_route": "/api/open//x",
    "trailing_dot_route": "/api/open./x",
    "trailing_dot_segment": "/api/open/x.",
    "trailing_dots": "/api/police../1",
    "matrix_param": "/api/open;jsessionid=1/x",
    "matrix_param_tail": "/api/open/x;.json",
    "encoded_semicolon": "/api/open/x%3b.json",
    "nul": "/api/open/x%00",
    "fullwidth_raw": "/api/ｐolice/1",
    "fullwidth_encoded": "/api/%EF%BD%90olice/1",
    "fullwidth_slash": "/api/open／..／police/1",
    "mixed_raw_and_encoded": "/api/ｐ%6flice/1",
    "bad_percent": "/api/open/%zz",
    "fragment": "/api/open/x#y",
    "fragment_in_query": "/api/open/x?a=1#y",
    "encoded_fragment": "/api/open/x%23y",
    "encoded_question_mark": "/api/open/x%3Fy",
    "relative": "api/open/x",
    "asterisk": "*",
    "over_long": "/api/open/" + "a" * 3000,
}
NOT_FOUND = {
    "upper_case": "/API/police/1",
    "mixed_case": "/Api/Police/1",
    "mixed_case_open": "/api/OPEN/x",
    "unicode_dotless_i": "/api/pol%C4%B1ce/1",
    "prefix_without_slash": "/api/policex/1",
    "no_route": "/admin",
}


@pytest.mark.parametrize("name", sorted(BAD))
async def test_ambiguous_targets_are_400_and_never_forwarded(
    gw: Any, hostile: HostileUpstream, name: str
) -> None:
    data = raw_request("GET", BAD[name], gw.token(sub="mallory"))
    status, body = await send_raw(gw.port, data)
    assert status == 400, (name, status, body[:200])
    assert hostile.seen == []


@pytest.mark.parametrize("name", sorted(NOT_FOUND))
async def test_look_alike_routes_are_404_and_never_forwarded(
    gw: Any, hostile: HostileUpstream, name: str
) -> None:
    data = raw_request("GET", NOT_FOUND[name], gw.token(sub="mallory"))
    status, body = await send_raw(gw.port, data)
    assert status == 404, (name, status, body[:200])
    assert hostile.seen == []


async def test_an_absolute_form_target_is_decided_on_its_path(
    gw: Any, hostile: HostileUpstream
) -> None:
    """`GET http://host/api/police/1`: the path still decides, so the caller is refused."""
    data = raw_request("GET", "http://127.0.0.1:1/api/police/1", gw.token(sub="mallory"))
    status, body = await send_raw(gw.port, data)
    assert status in (400, 403, 404), (status, body[:200])
    assert hostile.seen == []


async def test_a_plain_path_is_forwarded_byte_for_byte(gw: Any, hostile: HostileUpstream) -> None:
    """Positive control: the targets above are refused for their tricks."""
    data = raw_request("GET", "/api/open/a-b_c~d/%E4%B8%AD", gw.token(sub="mallory"))
    status, _ = await send_raw(gw.port, data)
    assert status == 200
    assert [s.path for s in hostile.seen] == ["/api/open/a-b_c~d/中"]


@pytest.mark.parametrize("target", ["/api/open/x%0d%0aX-Injected:%201", "/api/open/x%0a"])
async def test_an_encoded_line_feed_is_never_forwarded(
    gw: Any, hostile: HostileUpstream, target: str
) -> None:
    data = raw_request("GET", target, gw.token(sub="mallory"))
    status, _ = await send_raw(gw.port, data)
    assert 400 <= status < 500
    assert hostile.seen == []


async def test_an_encoded_line_feed_gets_the_gateways_400(gw: Any) -> None:
    data = raw_request("GET", "/api/open/x%0a", gw.token(sub="mallory"))
    status, body = await send_raw(gw.port, data)
    assert status == 400, (status, body[:200])
    assert error_of(body)["error"] == "bad_request"
