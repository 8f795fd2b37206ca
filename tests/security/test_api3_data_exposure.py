"""OWASP API3:2023 excessive data exposure: every way a proxy's masking is known to be
bypassed (compression, content type, ranges, HEAD, nesting, NDJSON, CSV quoting, full-width
digits, JSON escapes, query filters). A clearance-1 caller reads the level-3 `people` dataset,
which it may only see masked; no valid identifier may reach it."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import orjson
import pytest

from tests.security.helpers import (
    ID,
    PHONE,
    HostileUpstream,
    assert_no_leak,
    error_of,
    exporter,
    low,
    port_of,
    raw_request,
    send_raw,
)

ID_MASKED = re.compile(r"^\d{6}\*{8}[0-9X]{4}$")
PHONE_MASKED = re.compile(r"^\d{3}\*{4}\d{4}$")


def people(case: str) -> str:
    return f"/api/people/{case}"


def people_export(case: str) -> str:
    """The bulk `case` asked for as an export (the upstream ignores the suffix)."""
    return f"/api/people/{case}.{'csv' if 'csv' in case else 'ndjson'}"


def check_person(p: dict[str, Any]) -> None:
    assert ID_MASKED.match(p["id_card"]), p
    assert PHONE_MASKED.match(p["phone"]), p
    assert "diagnosis" not in p, "level-4 fields are removed below clearance 4"


@pytest.mark.parametrize("case", ["gzip", "deflate", "rawdeflate", "gzipgzip"])
async def test_compressed_json_is_decoded_and_masked(
    gw: Any, hostile: HostileUpstream, case: str
) -> None:
    """The upstream compresses although the gateway asked for identity."""
    headers = {**low(gw), "Accept-Encoding": "gzip, deflate, br"}
    resp = await gw.get(people(case), headers=headers, auth=False)
    body = await resp.read()
    assert resp.status == 200, body[:300]
    assert "Content-Encoding" not in resp.headers
    assert_no_leak(body)
    for p in orjson.loads(body)["items"]:
        check_person(p)
    assert hostile.seen[0].headers.get("Accept-Encoding") == "identity"


@pytest.mark.parametrize("case", ["zstd", "textplain", "octet", "html", "notype", "gbk", "partial"])
async def test_bodies_that_cannot_be_masked_are_502(
    gw: Any, hostile: HostileUpstream, case: str
) -> None:
    """Unknown encoding, JSON labelled text/plain, unknown or missing content type, a
    non-UTF-8 charset, an unasked-for 206: refused, never passed through."""
    resp = await gw.get(people(case), headers=low(gw), auth=False)
    body = await resp.read()
    assert resp.status == 502, body[:300]
    assert error_of(body)["error"] == "upstream_error"
    assert_no_leak(body)


async def test_a_vendor_json_type_in_upper_case_is_masked(gw: Any) -> None:
    resp = await gw.get(people("vendorjson"), headers=low(gw), auth=False)
    body = await resp.read()
    assert resp.status == 200
    assert_no_leak(body)


async def test_a_range_request_is_not_forwarded_and_the_whole_body_is_masked(
    gw: Any, hostile: HostileUpstream
) -> None:
    headers = {**low(gw), "Range": "bytes=0-39", "If-Range": '"x"'}
    resp = await gw.get(people("range"), headers=headers, auth=False)
    body = await resp.read()
    assert resp.status == 200, body[:300]
    assert "Content-Range" not in resp.headers and "Accept-Ranges" not in resp.headers
    assert_no_leak(body)
    for p in orjson.loads(body)["items"]:
        check_person(p)
    seen = hostile.seen[0].headers
    assert "Range" not in seen and "If-Range" not in seen


async def test_head_sends_no_body_and_no_identifier(gw: Any, hostile: HostileUpstream) -> None:
    data = raw_request("HEAD", people("plain"), gw.token(**_low_claims()))
    status, body = await send_raw(gw.port, data)
    assert status == 200
    assert body == b""
    assert hostile.seen[0].method == "HEAD"


def _low_claims() -> dict[str, Any]:
    return {"sub": "mallory", "dept": "market-regulation", "clearance": 1}


async def test_nested_arrays_are_masked_at_every_depth(gw: Any) -> None:
    resp = await gw.get(people("nested"), headers=low(gw), auth=False)
    body = await resp.read()
    assert resp.status == 200
    assert_no_leak(body)
    assert b"diagnosis" not in body
    doc = orjson.loads(body)
    check_person(doc["items"][0][0])
    check_person(doc["items"][1][0][0])


async def test_ndjson_is_masked_line_by_line(gw: Any) -> None:
    resp = await gw.get(people_export("ndjson"), headers=exporter(gw), auth=False)
    body = await resp.read()
    assert resp.status == 200
    assert_no_leak(body)
    lines = [orjson.loads(line) for line in body.splitlines() if line.strip()]
    assert len(lines) == 3
    for p in lines:
        check_person(p)


async def test_csv_with_a_bom_quoted_newlines_and_quotes_is_masked(gw: Any) -> None:
    resp = await gw.get(people_export("csv"), headers=exporter(gw), auth=False)
    body = await resp.read()
    assert resp.status == 200
    assert_no_leak(body)
    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))
    assert len(rows) == 2, rows
    for row in rows:
        assert ID_MASKED.match(row["id_card"]), row
        assert PHONE_MASKED.match(row["phone"]), row


async def test_full_width_digits_are_masked(gw: Any) -> None:
    resp = await gw.get(people("fullwidth"), headers=low(gw), auth=False)
    body = await resp.read()
    assert resp.status == 200
    assert_no_leak(body)


async def test_json_unicode_escapes_do_not_hide_an_identifier(gw: Any) -> None:
    resp = await gw.get(people("escaped"), headers=low(gw), auth=False)
    body = await resp.read()
    assert resp.status == 200
    assert_no_leak(body)


async def test_error_responses_are_masked_too(gw: Any) -> None:
    resp = await gw.get(people("error404"), headers=low(gw), auth=False)
    body = await resp.read()
    assert resp.status == 404
    assert_no_leak(body)


FULLWIDTH_ID = "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in ID)
PCT_FULLWIDTH = "".join(f"%{b:02X}" for b in FULLWIDTH_ID.encode())


@pytest.mark.parametrize(
    "query",
    [
        f"id_card={ID}",
        "id_card=1",
        "idcard=1",  # a catalog alias
        "ID-Card=1",
        "IdCard=1",
        "id%5Fcard=1",
        "filter[id_card]=1",
        "filter%5Bid_card%5D=1",
        "id_card[eq]=1",
        "id_card__startswith=110105",
        "phone.like=138",
        "sort=-phone",
        "order_by=bank_card:desc",
        f"q={ID}",
        f"q={PCT_FULLWIDTH}",
        f"x=1;id_card={ID}",
        f"x=1&id_card={ID}&y=2",
        "diagnosis=flu",
    ],
)
async def test_filtering_on_a_masked_field_is_403_and_never_forwarded(
    gw: Any, hostile: HostileUpstream, query: str
) -> None:
    data = raw_request("GET", f"{people('plain')}?{query}", gw.token(**_low_claims()))
    status, body = await send_raw(gw.port, data)
    assert status == 403, (query, body[:300])
    assert error_of(body)["reason"] == "masked_field_query"
    assert hostile.seen == []


async def test_a_harmless_query_is_forwarded_as_sent(gw: Any, hostile: HostileUpstream) -> None:
    data = raw_request("GET", f"{people('plain')}?page=2&size=10", gw.token(**_low_claims()))
    status, body = await send_raw(gw.port, data)
    assert status == 200, body[:300]
    assert_no_leak(body.split(b"\r\n\r\n", 1)[-1])
    assert hostile.seen[0].query == "page=2&size=10"


async def test_the_owner_at_clearance_4_sees_values_in_clear(gw: Any) -> None:
    """Positive control: the leak check would catch an unmasked body."""
    headers = gw.auth(sub="li", dept="civil-affairs", clearance=4)
    resp = await gw.get(people("plain"), headers=headers, auth=False)
    body = await resp.read()
    assert resp.status == 200
    assert ID.encode() in body
    with pytest.raises(AssertionError):
        assert_no_leak(body)


def test_port_of() -> None:
    assert port_of("http://127.0.0.1:8080") == 8080


@pytest.mark.parametrize("case", ["tricky", "trickyndjson"])
async def test_identifiers_hidden_behind_json_syntax_are_masked(gw: Any, case: str) -> None:
    """Key case/separators, \\u-escaped key names, duplicate keys, numbers, JSON in a string."""
    if "ndjson" in case:
        resp = await gw.get(people_export(case), headers=exporter(gw), auth=False)
    else:
        resp = await gw.get(people(case), headers=low(gw), auth=False)
    body = await resp.read()
    assert resp.status == 200, body[:300]
    assert_no_leak(body)


@pytest.mark.parametrize("case", ["bigjson", "bigarray", "bigndjson", "bigcsv"])
async def test_large_chunked_bodies_are_masked_across_chunk_boundaries(gw: Any, case: str) -> None:
    """Above the 256 KiB buffer the body streams; tokens, lines and quoted CSV cells are
    split across odd-sized chunks."""
    if case in ("bigndjson", "bigcsv"):
        resp = await gw.get(people_export(case), headers=exporter(gw), auth=False)
    else:
        resp = await gw.get(people(case), headers=low(gw), auth=False)
    body = await resp.read()
    assert resp.status == 200, body[:300]
    assert len(body) > 256 * 1024
    assert_no_leak(body)
    if case == "bigcsv":
        rows = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))
        assert len(rows) == 3000
        assert "diagnosis" not in rows[0], "a level-4 column is removed below clearance 4"
        assert all(ID_MASKED.match(r["id_card"]) for r in rows)


async def test_identifiers_in_upstream_response_headers_are_not_exposed(gw: Any) -> None:
    resp = await gw.get(people("headers"), headers=low(gw), auth=False)
    assert resp.status == 200
    assert_no_leak(await resp.read())
    shown = "\n".join(f"{k}: {v}" for k, v in resp.headers.items())
    assert_no_leak(shown)


async def test_an_identifier_in_a_redirect_location_is_not_exposed(gw: Any) -> None:
    resp = await gw.get(people("redirect"), headers=low(gw), auth=False, allow_redirects=False)
    assert resp.status == 302
    assert_no_leak(resp.headers.get("Location", ""))


async def test_a_masked_identifier_in_the_path_is_refused(
    gw: Any, hostile: HostileUpstream
) -> None:
    for path in (f"/api/people/persons/{ID}", f"/api/people/by-phone/{PHONE}/plain"):
        resp = await gw.get(path, headers=low(gw), auth=False)
        assert resp.status == 403, (path, resp.status)
    assert hostile.seen == []


async def test_a_get_body_searching_on_a_masked_field_is_refused(
    gw: Any, hostile: HostileUpstream
) -> None:
    search = orjson.dumps({"query": {"term": {"id_card": ID}}})
    headers = {**low(gw), "Content-Type": "application/json"}
    resp = await gw.get(people("plain"), headers=headers, auth=False, data=search)
    assert resp.status in (400, 403)
    assert hostile.seen == []


async def test_an_empty_redirect_on_a_masked_route_passes(gw: Any) -> None:
    resp = await gw.get(people("emptyredirect"), headers=low(gw), auth=False, allow_redirects=False)
    assert resp.status == 302
    assert resp.headers["Location"] == "/api/people/plain"
