"""Request-side bypasses of issue 18: URL-override and identity headers, conditional requests
as an oracle on masked bodies, exports decided as lists, query operators the guard missed,
line separators in the logs and the global count in X-Audit-Seq. Each case runs a real gateway
in front of a hostile upstream on loopback that does what real frameworks do with the trick."""

from __future__ import annotations

import asyncio
import csv
import email.utils
import hashlib
import io
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import structlog
from aiohttp import web

from gateway import logs
from gateway.audit.chain import verify
from gateway.errors import ConfigError
from gateway.policy.catalog import parse_catalog
from gateway.request_headers import DEFAULT_FORWARD_HEADERS
from tests.gateway.conftest import RunningGateway, Seen, gateway_config, running_gateway
from tests.security.helpers import ID, ID2, PHONE, assert_no_leak, error_of

BIRTH = "1949-12-31"
MEDICAL = "MEDICAL-SECRET-肺癌"
PERSONS = [
    {"id": 1, "name": "黄明", "id_card": ID, "phone": PHONE, "birth_date": BIRTH, "status": "a"},
    {"id": 2, "name": "李四", "id_card": ID2, "phone": "13800138000", "birth_date": "1980-01-02"},
]
CATALOG = """
datasets:
  - id: people
    route: /api/people/
    upstream: h
    owner: civil-affairs
    level: 3
    sharing: unconditional
    masked_from_clearance: 1
    records_key: items
    query_params: {page: integer, size: integer, q: text, sort: sort, kind: word,
                   status: [active, closed]}
    fields:
      - {name: id_card, level: 3, strategy: resident_id}
      - {name: phone, level: 3, strategy: mobile}
      - {name: name, level: 3, strategy: name}
      - {name: birth_date, level: 3, strategy: date}
  - {id: enterprise, route: /api/enterprise/, upstream: h, owner: market-regulation, level: 1,
     sharing: unconditional, records_key: items,
     fields: [{name: legal_representative, level: 2, strategy: name}]}
  - {id: open, route: /api/open/, upstream: h, owner: ops, level: 1, sharing: unconditional,
     forward_headers: [X-Tenant]}
  - {id: medical, route: /api/medical/, upstream: h, owner: health, level: 4, sharing: none,
     fields: [{name: diagnosis, level: 4, strategy: remove}]}
"""
POLICY = "p, user:exporter, people, export, allow\np, user:exporter, enterprise, export, allow\n"
URL_OVERRIDES = (
    "X-Original-URL",
    "X-Rewrite-URL",
    "X-Original-URI",
    "X-Envoy-Original-Path",
    "X-Forwarded-Path",
    "X-Forwarded-Uri",
    "X-Forwarded-Prefix",
    "X-Override-URL",
)
SPOOFED_IDENTITY = {
    "True-Client-IP": "10.9.9.9",
    "CF-Connecting-IP": "10.9.9.9",
    "Fastly-Client-IP": "10.9.9.9",
    "X-Client-IP": "10.9.9.9",
    "X-Cluster-Client-IP": "10.9.9.9",
    "X-Jwt-Assertion": "eyJhbGciOiJub25lIn0.eyJzdWIiOiJyb290In0.",
    "Ssl-Client-Cert": "-----BEGIN CERTIFICATE-----",
    "X-Sub": "root",
    "Cookie": "session=admin",
    "X-Custom-Role": "admin",
}


def body_of(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record)


def etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest() + '"'


LAST_MODIFIED = email.utils.formatdate(1_700_000_000, usegmt=True)


def json_server_filter(items: list[dict[str, Any]], query: Any) -> list[dict[str, Any]]:
    """json-server's operators: FIELD_gte/_lte/_ne/_like/_start, q (full text), as it does."""
    out = list(items)
    for key, value in query.items():
        if key == "q":
            out = [r for r in out if value in orjson.dumps(r).decode()]
            continue
        field, _, op = key.rpartition("_")
        if not field:
            continue
        text = {r["id"]: str(r.get(field, "")) for r in out}
        if op == "gte":
            out = [r for r in out if text[r["id"]] >= value]
        elif op == "lte":
            out = [r for r in out if text[r["id"]] <= value]
        elif op == "ne":
            out = [r for r in out if text[r["id"]] != value]
        elif op == "like":
            out = [r for r in out if re.search(value, text[r["id"]])]
        elif op == "start":
            out = [r for r in out if text[r["id"]].startswith(value)]
    return out


class BypassUpstream:
    """Records what reaches it; honours every trick the way the frameworks named do."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.url = ""
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(
            Seen(
                request.method,
                request.path,
                request.raw_path.partition("?")[2],
                dict(request.headers),
                await request.read(),
            )
        )
        path = request.path
        # IIS URL Rewrite, Zend, old Symfony: the override header wins over the request line.
        for name in URL_OVERRIDES:
            if name in request.headers:
                path = request.headers[name].partition("?")[0]
        if path.startswith("/api/medical/"):
            record = {"id": 1, "id_card": ID, "diagnosis": MEDICAL}
            return web.json_response({"items": [record]})
        if path.endswith("/csvlist"):
            return web.Response(body=b"id,id_card\r\n1,x\r\n", content_type="text/csv")
        if path.endswith("/attachment"):
            return web.json_response(
                {"items": []}, headers={"Content-Disposition": 'attachment; filename="all.csv"'}
            )
        if path.startswith("/api/people/persons/1"):
            return self.conditional(request, body_of(PERSONS[0]))
        if path.startswith("/api/people/persons") or path.startswith("/api/enterprise/"):
            if "text/csv" in request.headers.get("Accept", ""):
                return web.Response(body=persons_csv(), content_type="text/csv")
            return web.json_response({"items": json_server_filter(PERSONS, request.query)})
        return web.json_response({"ok": True, "path": path})

    @staticmethod
    def conditional(request: web.Request, body: bytes) -> web.Response:
        """Validators of the unmasked body, and every conditional answered by them."""
        tag = etag(body)
        headers = {"ETag": tag, "Last-Modified": LAST_MODIFIED, "Accept-Ranges": "bytes"}
        h = request.headers
        if h.get("If-None-Match") == tag or h.get("If-Modified-Since") == LAST_MODIFIED:
            return web.Response(status=304, headers=headers)
        if ("If-Match" in h and h["If-Match"] != tag) or (
            "If-Unmodified-Since" in h and h["If-Unmodified-Since"] != LAST_MODIFIED
        ):
            return web.Response(status=412, headers=headers)
        if "Range" in h and h.get("If-Range", tag) == tag:
            headers["Content-Range"] = f"bytes 0-19/{len(body)}"
            return web.Response(
                status=206, body=body[:20], headers=headers, content_type="application/json"
            )
        return web.Response(body=body, headers=headers, content_type="application/json")


def persons_csv() -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "name", "id_card", "phone"])
    for p in PERSONS:
        writer.writerow([p["id"], p["name"], p["id_card"], p["phone"]])
    return out.getvalue().encode()


@pytest.fixture
async def up(aiohttp_server: Any) -> BypassUpstream:
    rec = BypassUpstream()
    server = await aiohttp_server(rec.app)
    rec.url = str(server.make_url("")).rstrip("/")
    return rec


@pytest.fixture
async def gw(tmp_path: Path, up: BypassUpstream) -> AsyncIterator[RunningGateway]:
    config = gateway_config(tmp_path, {"h": up.url}, CATALOG, POLICY)
    async with running_gateway(config) as running:
        yield running


def mallory(gw: RunningGateway) -> dict[str, str]:
    return gw.auth(sub="mallory", dept="market-regulation", clearance=1)


def exporter(gw: RunningGateway) -> dict[str, str]:
    return gw.auth(sub="exporter", dept="market-regulation", clearance=1)


async def audit_events(gw: RunningGateway) -> list[dict[str, Any]]:
    assert gw.gateway.audit is not None
    await gw.gateway.audit.flush()
    lines = gw.gateway.config.audit.path.read_bytes().splitlines()
    return [e for e in map(orjson.loads, lines) if e.get("type") == "access"]


# --- item 5: URL-override, client-IP and identity headers --------------------------------


@pytest.mark.parametrize("header", URL_OVERRIDES)
async def test_url_override_headers_never_reach_the_upstream(
    gw: RunningGateway, up: BypassUpstream, header: str
) -> None:
    """The enterprise route served medical records from an upstream honouring the header."""
    resp = await gw.get(
        "/api/enterprise/companies/1",
        headers={**mallory(gw), header: "/api/medical/records/1"},
        auth=False,
    )
    body = await resp.read()
    assert resp.status == 200, body
    assert MEDICAL.encode() not in body and b"diagnosis" not in body
    assert_no_leak(body)
    (seen,) = up.seen
    assert seen.path == "/api/enterprise/companies/1"
    assert header.lower() not in {k.lower() for k in seen.headers}


async def test_client_ip_identity_and_unlisted_headers_never_reach_the_upstream(
    gw: RunningGateway, up: BypassUpstream
) -> None:
    sent = {**SPOOFED_IDENTITY, "Accept-Language": "zh-CN", "X-Tenant": "t1"}
    resp = await gw.get("/api/open/x", headers={**mallory(gw), **sent}, auth=False)
    assert resp.status == 200
    forwarded = {k.lower(): v for k, v in up.seen[-1].headers.items()}
    leaked = {k for k in SPOOFED_IDENTITY if k.lower() in forwarded}
    assert not leaked, f"reached the upstream: {leaked}"
    assert "authorization" not in forwarded, "the caller's token stays at the gateway"
    assert forwarded["x-forwarded-for"] == "127.0.0.1", "the gateway's own client address"
    assert forwarded["accept-language"] == "zh-CN", "on the default allow-list"
    assert forwarded["x-tenant"] == "t1", "added by the route's forward_headers"
    allowed = DEFAULT_FORWARD_HEADERS | {"x-tenant", "host", "content-length", "x-request-id"}
    gateway_own = {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"}
    assert set(forwarded) <= allowed | gateway_own, set(forwarded) - allowed - gateway_own


async def test_connection_cannot_list_the_gateways_headers_away_but_drops_allowed_ones(
    gw: RunningGateway, up: BypassUpstream
) -> None:
    headers = {**mallory(gw), "Connection": "Accept-Language, X-Forwarded-For"}
    resp = await gw.get("/api/open/x", headers={**headers, "Accept-Language": "zh"}, auth=False)
    assert resp.status == 200
    forwarded = {k.lower() for k in up.seen[-1].headers}
    assert "accept-language" not in forwarded, "a header the client made hop-by-hop"
    assert "x-forwarded-for" in forwarded


@pytest.mark.parametrize(
    ("header", "why"),
    [
        ("Authorization", "forward_authorization"),
        ("X-Original-URL", "another path"),
        ("X-Forwarded-Prefix", "another path"),
        ("X-Forwarded-Anything", "prefix"),
        ("CF-Connecting-IP", "client address"),
        ("True-Client-IP", "client address"),
        ("X-Jwt-Assertion", "identity"),
        ("X-User", "identity"),
        ("Cookie", "cookie"),
        ("Connection", "hop-by-hop"),
        ("Host", "sets it itself"),
        ("X-Request-ID", "sets it itself"),
        ("X-HTTP-Method-Override", "another method"),
        ("X_Tenant", "not a valid header name"),
        ("X Tenant", "not a valid header name"),
        ("If-None-Match", "classified routes drop it"),
        ("Range", "classified routes drop it"),
        ("Accept-Encoding", "classified routes drop it"),
    ],
)
def test_a_route_cannot_allow_headers_that_must_never_be_forwarded(header: str, why: str) -> None:
    text = (
        "datasets:\n  - {id: d, route: /d/, upstream: u, owner: o, level: 3,\n"
        f"     forward_headers: [X-Ok, {header!r}]}}\n"
    )
    with pytest.raises(ConfigError) as err:
        parse_catalog(text, "catalog.yaml")
    message = str(err.value)
    assert message.startswith(
        f"catalog.yaml: datasets[0].forward_headers[1]: {header!r} cannot be forwarded: "
    ), message
    assert why in message


def test_conditional_headers_may_be_allowed_only_on_unclassified_routes() -> None:
    text = "datasets:\n  - {id: d, route: /d/, upstream: u, owner: o, level: 1}\n"
    assert "if-none-match" in parse_catalog(text).datasets["d"].request_headers
    text = "datasets:\n  - {id: d, route: /d/, upstream: u, owner: o, level: 2}\n"
    headers = parse_catalog(text).datasets["d"].request_headers
    assert not headers & {"if-none-match", "if-match", "range", "if-range", "accept-encoding"}


# --- item 6: conditional requests and ranges on masked routes ----------------------------


CONDITIONALS = [
    {"If-None-Match": etag(body_of(PERSONS[0]))},
    {"If-Modified-Since": LAST_MODIFIED},
    {"If-Match": '"wrong-guess"'},
    {"If-Unmodified-Since": "Mon, 01 Jan 1990 00:00:00 GMT"},
    {"Range": "bytes=0-19", "If-Range": etag(body_of(PERSONS[0]))},
    {"Range": "bytes=0-19"},
]


@pytest.mark.parametrize("conditional", CONDITIONALS, ids=lambda c: "+".join(c))
async def test_conditionals_are_no_oracle_on_a_masked_body(
    gw: RunningGateway, up: BypassUpstream, conditional: dict[str, str]
) -> None:
    """The upstream's ETag hashes the unmasked body: a right guess would get a 304."""
    resp = await gw.get("/api/people/persons/1", headers={**mallory(gw), **conditional}, auth=False)
    body = await resp.read()
    assert resp.status == 200, (resp.status, body)
    assert_no_leak(body)
    assert orjson.loads(body)["id_card"] != ID
    forwarded = {k.lower() for k in up.seen[-1].headers}
    assert not forwarded & {k.lower() for k in conditional}, forwarded
    for validator in ("ETag", "Last-Modified", "Content-Range", "Accept-Ranges"):
        assert validator not in resp.headers, "validators of the unmasked body stay upstream"


async def test_conditionals_still_pass_on_unclassified_routes(
    gw: RunningGateway, up: BypassUpstream
) -> None:
    tag = '"v1"'
    resp = await gw.get("/api/open/x", headers={**mallory(gw), "If-None-Match": tag}, auth=False)
    assert resp.status == 200
    assert up.seen[-1].headers["If-None-Match"] == tag


# --- item 7: exports decided as lists -----------------------------------------------------


@pytest.mark.parametrize(
    "accept",
    [
        "text/csv",
        "application/json;q=0.5, text/csv",
        "TEXT/CSV; charset=utf-8",
        "application/x-ndjson",
        "application/vnd.ms-excel",
    ],
)
async def test_accepting_a_bulk_type_is_decided_as_export(
    gw: RunningGateway, up: BypassUpstream, accept: str
) -> None:
    resp = await gw.get(
        "/api/people/persons", headers={**mallory(gw), "Accept": accept}, auth=False
    )
    assert resp.status == 403, await resp.text()
    assert up.seen == [], "export needs its own grant: nothing is forwarded"
    (event,) = await audit_events(gw)
    assert event["action"] == "export"


async def test_a_bulk_type_with_q_0_is_decided_as_list_and_its_csv_refused(
    gw: RunningGateway, up: BypassUpstream
) -> None:
    """`q=0` says "not acceptable": a list. This upstream serves CSV anyway (it looks for the
    type in Accept, as naive ones do); the body shows an export, which is refused."""
    accept = "application/json, text/csv;q=0"
    resp = await gw.get(
        "/api/people/persons", headers={**mallory(gw), "Accept": accept}, auth=False
    )
    body = await resp.read()
    assert resp.status == 403, body
    assert error_of(body)["reason"] == "undecided_export"
    assert_no_leak(body)
    (event,) = await audit_events(gw)
    assert (event["action"], event["reason"]) == ("list", "undecided_export")


async def test_an_exporter_gets_the_csv_masked_and_recorded_as_export(
    gw: RunningGateway, up: BypassUpstream
) -> None:
    resp = await gw.get(
        "/api/people/persons", headers={**exporter(gw), "Accept": "text/csv"}, auth=False
    )
    body = await resp.read()
    assert resp.status == 200, body
    assert_no_leak(body)
    (event,) = await audit_events(gw)
    assert (event["action"], event["decision"]) == ("export", "allow")


@pytest.mark.parametrize(
    ("target", "status", "reason"),
    [
        ("/api/enterprise/companies.csv%20", 400, "bad_path"),
        ("/api/enterprise/companies.csv%20/", 400, "bad_path"),
        ("/api/enterprise/companies.csv~", 403, "default_deny"),
        ("/api/enterprise/companies.csv/page/1", 403, "default_deny"),
        ("/api/enterprise/companies?format=csv&format=json", 400, "duplicate_format"),
        ("/api/enterprise/companies?format=csv&format=", 400, "duplicate_format"),
        ("/api/enterprise/companies?format=json&Format=csv", 400, "duplicate_format"),
        ("/api/enterprise/companies?format=json&_format=csv", 400, "duplicate_format"),
        ("/api/enterprise/companies?_format=csv", 403, "default_deny"),
        ("/api/enterprise/companies?%24format=text%2Fcsv", 403, "default_deny"),
        ("/api/enterprise/companies?fmt=.CSV", 403, "default_deny"),
        ("/api/enterprise/companies?download=1", 403, "default_deny"),
        ("/api/enterprise/companies?output=xlsx", 403, "default_deny"),
    ],
)
async def test_export_spellings_are_decided_as_export_or_refused(
    gw: RunningGateway, up: BypassUpstream, target: str, status: int, reason: str
) -> None:
    resp = await gw.get(target, headers=mallory(gw), auth=False)
    assert resp.status == status, (target, await resp.text())
    error = error_of(await resp.read())
    assert error["reason"] == reason, error
    assert up.seen == [], target
    if reason == "duplicate_format":
        assert "more than once" in error["message"]


@pytest.mark.parametrize("case", ["csvlist", "attachment"])
async def test_a_bulk_body_answered_to_a_list_is_refused(
    gw: RunningGateway, up: BypassUpstream, case: str
) -> None:
    """The upstream answers a list with an export of its own accord (or a framework read a
    spelling the gateway does not know): the policy decided list, so nothing is served."""
    for path in (f"/api/open/{case}", f"/api/people/persons/{case}"):
        resp = await gw.get(path, headers=exporter(gw), auth=False)
        body = await resp.read()
        assert resp.status == 403, (path, body)
        assert error_of(body)["reason"] == "undecided_export"
        assert b"id_card" not in body
    events = await audit_events(gw)
    assert [(e["action"], e["reason"]) for e in events] == [("list", "undecided_export")] * 2


# --- item 8: query operators on masked fields ---------------------------------------------


ATTACKS = [
    ("id_card_like", "^1101", "masked_field_query"),
    ("id_card_gte", "110105194912310000", "masked_field_query"),
    ("id_card_lte", "110105194912319999", "masked_field_query"),
    ("id_card_ne", "zz9", "masked_field_query"),
    ("id_card_start", "1101", "masked_field_query"),
    ("birth_date_gte", "1949-01-01", "masked_field_query"),
    ("birth_date_lte", "1949-12-31", "masked_field_query"),
    ("birth_date_from", "1949-12-31", "masked_field_query"),
    ("min_birth_date", "1949-12-31", "masked_field_query"),
    ("dob", BIRTH, "undeclared_query_param"),
    ("phone_like", "^170", "masked_field_query"),
    ("q", "110105", "masked_field_query"),
    ("q", "１１０１０５", "masked_field_query"),
    ("q", "𝟏𝟏𝟎", "masked_field_query"),
    ("search", "110105", "undeclared_query_param"),
    ("keyword", "1701", "undeclared_query_param"),
    ("filter", '{"where":{"id_card":{"like":"1101"}}}', "undeclared_query_param"),
    ("filter[where][id_card][like]", "1101", "masked_field_query"),
    ("where", '{"id_card":{"$regex":"^1101"}}', "undeclared_query_param"),
    ("$where", "this.id_card.startsWith('1101')", "undeclared_query_param"),
    ("or", "(id_card.like.1101*,name.eq.x)", "undeclared_query_param"),
    ("_where", '{"id_card":{"_like":"1101%"}}', "undeclared_query_param"),
    ("group_by", "id_card", "undeclared_query_param"),
    ("sort", "-id_card", "masked_field_query"),
    ("sort", "birthDate", "masked_field_query"),
    ("kind", "a110", "masked_field_query"),
    ("page", "1101051949", "bad_query_value"),
    ("page", "-1", "bad_query_value"),
    ("status", "ACTIVE", "bad_query_value"),
    ("sort", "id;drop", "bad_query_value"),
]


@pytest.mark.parametrize(("key", "value", "reason"), ATTACKS)
async def test_query_operators_on_masked_fields_are_refused_before_the_upstream(
    gw: RunningGateway, up: BypassUpstream, key: str, value: str, reason: str
) -> None:
    resp = await gw.get("/api/people/persons", params={key: value}, headers=mallory(gw), auth=False)
    body = await resp.read()
    status = 400 if reason == "bad_query_value" else 403
    assert resp.status == status, (key, value, body)
    assert error_of(body)["reason"] == reason
    assert value.encode() not in body, "the refusal does not echo the guess"
    assert up.seen == []


async def test_a_range_search_recovers_nothing_from_a_json_server_upstream(
    gw: RunningGateway, up: BypassUpstream
) -> None:
    """The attack that recovered a masked ID in nine requests: a binary search on id_card_gte.
    Against the upstream directly it works; through the gateway every step is refused."""
    low, high = 10**17, 10**18 - 1
    answers = []
    while low < high:
        mid = (low + high + 1) // 2
        resp = await gw.get(
            "/api/people/persons",
            params={"id_card_gte": str(mid), "size": "1"},
            headers=mallory(gw),
            auth=False,
        )
        answers.append(resp.status)
        if resp.status != 200:
            break
        found = orjson.loads(await resp.read())["items"]
        low, high = (mid, high) if found else (low, mid - 1)
    assert answers == [403] and up.seen == []
    direct = json_server_filter(PERSONS, {"id_card_gte": ID[:-1]})
    assert direct, "the upstream itself would have answered the oracle"


async def test_declared_parameters_pass_and_undeclared_ones_pass_for_clear_callers(
    gw: RunningGateway, up: BypassUpstream
) -> None:
    ok = {"page": "2", "size": "5", "q": "黄", "sort": "-id,status", "status": "active"}
    resp = await gw.get("/api/people/persons", params=ok, headers=mallory(gw), auth=False)
    assert resp.status == 200, await resp.text()
    assert_no_leak(await resp.read())
    owner = gw.auth(sub="owner", dept="civil-affairs", clearance=3)
    resp = await gw.get(
        "/api/people/persons", params={"id_card_like": "^1101"}, headers=owner, auth=False
    )
    assert resp.status == 200, "a caller who sees every field in clear is not guarded"
    assert len(up.seen) == 2


async def test_a_declared_parameter_given_twice_is_refused(
    gw: RunningGateway, up: BypassUpstream
) -> None:
    resp = await gw.get("/api/people/persons?page=1&page=2", headers=mallory(gw), auth=False)
    assert resp.status == 400
    error = error_of(await resp.read())
    assert error["reason"] == "duplicate_query_param" and "'page'" in error["message"]
    assert up.seen == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("{page: number}", "must be one of integer, word, text, sort, exact"),
        ("{page: []}", "the list of allowed values must be non-empty"),
        ("{page: integer, Page: integer}", "'page' and 'Page' are the same parameter"),
        ("{' page': integer}", "is not a parameter name"),
    ],
)
def test_declared_query_parameters_are_validated_at_load(params: str, message: str) -> None:
    text = (
        "datasets:\n  - {id: d, route: /d/, upstream: u, owner: o, level: 3,\n"
        f"     query_params: {params}}}\n"
    )
    with pytest.raises(ConfigError) as err:
        parse_catalog(text, "catalog.yaml")
    assert str(err.value).startswith("catalog.yaml: datasets[0].query_params"), err.value
    assert message in str(err.value)


# --- low severity: line separators, X-Audit-Seq ------------------------------------------


SEPARATORS = ("\u2028", "\u2029", "\u0085", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e")


async def test_line_separators_never_split_an_audit_or_log_line(
    gw: RunningGateway, up: BypassUpstream
) -> None:
    """JSON leaves U+2028, U+2029 and U+0085 raw; str.splitlines (and some shippers) split at
    them and at the ASCII separators, which JSON escapes."""
    stream = io.BytesIO()
    keys = [f"k{i}{s}" for i, s in enumerate(SEPARATORS)]
    try:
        logs.configure("info", stream)
        for target in ("/api/open/a%E2%80%A8b%E2%80%A9c", "/api/open/x%C2%A0"):
            resp = await gw.get(
                target, params=dict.fromkeys(keys, "1"), headers=mallory(gw), auth=False
            )
            assert resp.status in (200, 400), target
        logs.flush()
        log_text = stream.getvalue().decode()
    finally:
        structlog.reset_defaults()
    events = await audit_events(gw)
    audit_bytes = gw.gateway.config.audit.path.read_bytes()
    for text in (audit_bytes.decode(), log_text):
        lines = text.splitlines()
        assert all(isinstance(orjson.loads(line), dict) for line in lines), text
    assert len([line for line in log_text.splitlines() if '"event":"request"' in line]) == 2
    assert len(events) == 2
    assert "\u2028" in events[0]["path"] and "\u2029" in events[0]["path"], "kept, escaped"
    assert sorted(events[0]["query_keys"]) == sorted(keys)
    assert verify(audit_bytes.splitlines(keepends=True)).ok
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "datagate"),
        "audit",
        "verify",
        str(gw.gateway.config.audit.path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, (out, err)


async def test_x_audit_seq_is_shown_to_admin_roles_only(
    gw: RunningGateway, up: BypassUpstream
) -> None:
    resp = await gw.get("/api/open/x", headers=mallory(gw), auth=False)
    assert resp.status == 200 and "X-Audit-Seq" not in resp.headers
    resp = await gw.get("/api/people/persons/1", headers=mallory(gw), auth=False)
    assert "X-Audit-Seq" not in resp.headers
    soc = gw.auth(sub="soc1", dept="soc", clearance=1, roles=["soc"])
    resp = await gw.get("/api/open/x", headers=soc, auth=False)
    assert int(resp.headers["X-Audit-Seq"]) == 3, "the sequence, for the SOC"
