"""Helpers for the adversarial suite: a hostile upstream that records what reaches it and
answers with masking-bypass attempts, the gateway config in front of it, leak checks."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import hmac
import json
import random
import re
import unicodedata
import zlib
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from gateway.masking.identifiers import (
    is_bank_card,
    is_resident_id,
    is_uscc,
    make_bank_card,
    make_mobile,
    make_resident_id,
)
from tests.gateway.conftest import (
    SECRET,
    RunningGateway,
    Seen,
    gateway_config,
    raw_http,
)

RNG = random.Random(8725)
ID = make_resident_id(RNG)
ID2 = make_resident_id(RNG)
PHONE = make_mobile(RNG)
CARD = make_bank_card(RNG)
NUM_ID = next(i for i in iter(lambda: make_resident_id(RNG), None) if i.isdigit())
SECRETS = (ID, ID2, PHONE, CARD, NUM_ID)

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
    query_aliases: {idcard: id_card}
    fields:
      - {name: id_card, level: 3, strategy: resident_id}
      - {name: phone, level: 3, strategy: mobile}
      - {name: bank_card, level: 3, strategy: bank_card}
      - {name: name, level: 3, strategy: name}
      - {name: diagnosis, level: 4, strategy: remove}
  - {id: police, route: /api/police/, upstream: h, owner: public-security, level: 3,
     sharing: conditional, masked_from_clearance: 2,
     fields: [{name: id_card, level: 3, strategy: resident_id}]}
  - {id: core, route: /api/core/, upstream: h, owner: health, level: 4, sharing: none}
  - {id: open, route: /api/open/, upstream: h, owner: ops, level: 1, sharing: unconditional}
  - {id: fwd, route: /api/fwd/, upstream: h, owner: ops, level: 1, sharing: unconditional,
     forward_authorization: true}
"""
POLICY = "p, user:writer, open, write, allow\np, user:exporter, people, export, allow\n"
RSA_ISSUER = "rsa-issuer"
BOMB_DECODED = 256 * 1024 * 1024
EXPORT_SUFFIXES = (".csv", ".tsv", ".ndjson", ".jsonl")


def person(i: int = 0) -> dict[str, Any]:
    return {
        "n": i,
        "name": "张三",
        "id_card": ID,
        "phone": PHONE,
        "bank_card": CARD,
        "diagnosis": "secret",
        "remarks": f"联系人身份证{ID2}，电话{PHONE}",
    }


def _fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in text)


_bomb_cache: list[bytes] = []


def bomb() -> bytes:
    """A gzip body of 256 MiB that is mostly spaces inside a JSON string (~250 KB)."""
    if not _bomb_cache:
        comp = zlib.compressobj(9, zlib.DEFLATED, 31)
        parts = [comp.compress(b'{"items":[{"remarks":"')]
        block = b" " * (1024 * 1024)
        for _ in range(BOMB_DECODED // len(block)):
            parts.append(comp.compress(block))
        parts.append(comp.compress(b'"}]}') + comp.flush())
        _bomb_cache.append(b"".join(parts))
    return _bomb_cache[0]


def _json(doc: Any) -> bytes:
    return orjson.dumps(doc)


def tricky_records(n: int) -> list[bytes]:
    """Raw JSON records whose identifiers hide behind JSON syntax: key case and separators,
    escaped key names, duplicate keys, numbers instead of strings, JSON inside a string."""
    esc_key = "".join(f"\\u{ord(c):04x}" for c in "id_card")
    shapes = [
        _json(person(0)),
        _json({"ID_CARD": ID, "Phone": PHONE, "Bank-Card": CARD}),
        ('{"' + esc_key + '":"' + ID + '"}').encode(),
        ('{"id_card":"x","id_card":"' + ID + '","phone":"1","phone":"' + PHONE + '"}').encode(),
        ('{"phone":' + PHONE + ',"bank_card":' + CARD + ',"id_card":' + NUM_ID + "}").encode(),
        _json({"payload": orjson.dumps({"id_card": ID, "phone": PHONE}).decode()}),
        _json({"idCard": ID, "notes": [ID2, {"x": CARD}]}),
    ]
    return [shapes[i % len(shapes)] for i in range(n)]


async def _stream(
    request: web.Request, body: bytes, content_type: str, encoding: str | None = None
) -> web.StreamResponse:
    """Chunked (no Content-Length), in odd-sized pieces that split tokens and lines."""
    headers = {"Content-Type": content_type}
    if encoding is not None:
        headers["Content-Encoding"] = encoding
    response = web.StreamResponse(headers=headers)
    response.enable_chunked_encoding()
    await response.prepare(request)
    for i in range(0, len(body), 7001):
        await response.write(body[i : i + 7001])
    await response.write_eof()
    return response


def big_csv(rows: int) -> bytes:
    lines = ["\ufeffid_card,name,phone,bank_card,diagnosis,remarks\r\n"]
    for i in range(rows):
        lines.append(f'{ID},"张\r\n三{i}",{PHONE},"{CARD}",flu,"备注, ""{ID2}""\n第二行"\r\n')
    return "".join(lines).encode()


async def streamed_response(case: str, request: web.Request) -> web.StreamResponse | None:
    if case == "bigjson":
        body = b'{"items":[' + b",".join(tricky_records(3000)) + b'],"total":3000}'
        return await _stream(request, body, "application/json")
    if case == "bigarray":
        return await _stream(request, b"[" + b",".join(tricky_records(3000)) + b"]", "text/json")
    if case == "bigndjson":
        body = b"\n".join(tricky_records(3000)) + b"\n"
        return await _stream(request, body, "application/x-ndjson")
    if case == "bigcsv":
        return await _stream(request, big_csv(3000), "text/csv")
    if case == "bigbroken":
        # Valid records, then a broken tail holding identifiers in raw (invalid) JSON.
        body = b'{"items":[' + b",".join(tricky_records(2000)) + b"],"
        tail = f'"x": {ID} {PHONE} "{CARD}'.encode()
        return await _stream(request, body + tail, "application/json")
    if case == "biggzip":
        body = b'{"items":[' + b",".join(tricky_records(6000)) + b"]}"
        return await _stream(request, gzip.compress(body), "application/json", "gzip")
    if case == "truncgzip":
        body = b'{"items":[' + b",".join(tricky_records(50)) + b"]}"
        packed = gzip.compress(body)
        return await _stream(request, packed[: len(packed) // 2], "application/json", "gzip")
    return None


def hostile_response(case: str, request: web.Request) -> web.StreamResponse:
    """The upstream's answer for one attack case (the last path segment)."""
    page = {"items": [person(0), person(1)]}
    body = _json(page)
    json = {"Content-Type": "application/json"}
    if case == "gzip":
        return web.Response(body=gzip.compress(body), headers={**json, "Content-Encoding": "gzip"})
    if case == "deflate":
        return web.Response(
            body=zlib.compress(body), headers={**json, "Content-Encoding": "deflate"}
        )
    if case == "rawdeflate":
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        raw = c.compress(body) + c.flush()
        return web.Response(body=raw, headers={**json, "Content-Encoding": "deflate"})
    if case == "gzipgzip":
        twice = gzip.compress(gzip.compress(body))
        return web.Response(body=twice, headers={**json, "Content-Encoding": "gzip, gzip"})
    if case == "zstd":
        return web.Response(body=body, headers={**json, "Content-Encoding": "zstd"})
    if case == "textplain":
        return web.Response(body=body, headers={"Content-Type": "text/plain"})
    if case == "octet":
        return web.Response(body=body, headers={"Content-Type": "application/octet-stream"})
    if case == "html":
        return web.Response(body=body, headers={"Content-Type": "text/html; charset=utf-8"})
    if case == "notype":
        resp = web.Response(body=body)
        resp.headers.popall("Content-Type", None)
        return resp
    if case == "gbk":
        return web.Response(body=body, headers={"Content-Type": "application/json; charset=gbk"})
    if case == "vendorjson":
        return web.Response(body=body, headers={"Content-Type": "APPLICATION/VND.API+JSON"})
    if case == "range":
        if "Range" in request.headers:
            return web.Response(
                status=206,
                body=body[:40],
                headers={**json, "Content-Range": f"bytes 0-39/{len(body)}"},
            )
        return web.Response(body=body, headers={**json, "Accept-Ranges": "bytes"})
    if case == "partial":
        return web.Response(
            status=206, body=body[:40], headers={**json, "Content-Range": "bytes 0-39/999"}
        )
    if case == "nested":
        doc = {
            "items": [[person(0)], [[person(1)]]],
            "meta": {"deep": [{"x": [[{"id_card": ID, "phone": PHONE}]]}]},
            "loose": [[ID2, CARD, PHONE]],
        }
        return web.Response(body=_json(doc), headers=json)
    if case == "ndjson":
        lines = b"".join(_json(person(i)) + b"\n" for i in range(3))
        return web.Response(body=lines, headers={"Content-Type": "application/x-ndjson"})
    if case == "csv":
        text = (
            "\ufeffid_card,name,phone,bank_card,remarks\r\n"
            f'{ID},"张\r\n三",{PHONE},{CARD},"多行\n备注 {ID2}"\r\n'
            f'"{ID}","李,四","{PHONE}","{CARD}","""{ID2}"""\r\n'
        )
        return web.Response(body=text.encode(), headers={"Content-Type": "text/csv; charset=utf-8"})
    if case == "fullwidth":
        doc = {"items": [{"id_card": _fullwidth(ID), "remarks": _fullwidth(f"号{ID2} {PHONE}")}]}
        return web.Response(body=_json(doc), headers=json)
    if case == "escaped":
        # \u-escaped digits: a JSON parser reads them as the identifier itself.
        esc = "".join(f"\\u{ord(c):04x}" for c in ID2)
        raw = '{"items":[{"remarks":"' + esc + '","id_card":"' + ID + '"}]}'
        return web.Response(body=raw.encode(), headers=json)
    if case == "error404":
        return web.Response(
            status=404, body=_json({"error": "no such id", "id_card": ID}), headers=json
        )
    if case == "tricky":
        body = b'{"items":[' + b",".join(tricky_records(7)) + b"]}"
        return web.Response(body=body, headers=json)
    if case == "trickyndjson":
        body = b"\n".join(tricky_records(7)) + b"\n"
        return web.Response(body=body, headers={"Content-Type": "application/x-ndjson"})
    if case == "headers":
        return web.Response(
            body=body,
            headers={
                **json,
                "X-Person-Id": ID,
                "Content-Disposition": f'attachment; filename="{ID}.json"',
                "Link": f'</api/people/persons?id_card={ID}>; rel="next"',
            },
        )
    if case == "redirect":
        return web.Response(
            status=302, body=b"{}", headers={**json, "Location": f"/api/people/persons/{ID}"}
        )
    if case == "emptyredirect":
        return web.Response(status=302, headers={"Location": "/api/people/plain"})
    if case == "bomb":
        return web.Response(body=bomb(), headers={**json, "Content-Encoding": "gzip"})
    return web.Response(body=body, headers=json)


class HostileUpstream:
    """Records every request; answers by the last path segment (see `hostile_response`)."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.url = ""
        self.app = web.Application(client_max_size=1024**3)
        self.app.router.add_route("*", "/{tail:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(
            Seen(
                request.method,
                request.path,
                request.raw_path.partition("?")[2],
                dict(request.headers),
                body,
            )
        )
        case = request.path.rstrip("/").rsplit("/", 1)[-1]
        # `csv.csv` asks for the `csv` case as an export (bulk bodies need one).
        for suffix in EXPORT_SUFFIXES:
            case = case.removesuffix(suffix)
        streamed = await streamed_response(case, request)
        return streamed if streamed is not None else hostile_response(case, request)


def security_config(
    tmp_path: Path, upstream: HostileUpstream, rsa_pem: Path, **sections: Any
) -> Any:
    identity = {
        "issuers": [
            {"issuer": "tests", "audience": "datagate", "algorithms": ["HS256"], "secret": SECRET},
            {
                "issuer": RSA_ISSUER,
                "audience": "datagate",
                "algorithms": ["RS256"],
                "public_keys": [{"file": str(rsa_pem)}],
            },
        ],
        "signing_key": {"key": SECRET, "issuer": "tests"},
        **sections.pop("identity", {}),
    }
    server = {"request_max_bytes": 4096, **sections.pop("server", {})}
    return gateway_config(
        tmp_path,
        {"h": upstream.url},
        CATALOG,
        POLICY,
        identity=identity,
        server=server,
        masking={"pseudonym_secret": "p" * 32, **sections.pop("masking", {})},
        **sections,
    )


LOW = {"sub": "mallory", "dept": "market-regulation", "clearance": 1}


def low(gw: RunningGateway, **claims: Any) -> dict[str, str]:
    """A clearance-1 caller from another department: sees `people` masked only."""
    return gw.auth(**{**LOW, **claims})


def exporter(gw: RunningGateway) -> dict[str, str]:
    """A clearance-1 caller a policy row lets export `people` (masked)."""
    return gw.auth(**{**LOW, "sub": "exporter"})


# --- what must never reach a client ----------------------------------------------------

_RUN = re.compile(r"[0-9A-Za-z]+")
_MOBILE = re.compile(r"(?:86)?1[3-9]\d{9}")


def _is_identifier(run: str) -> bool:
    """A whole alphanumeric run that is a valid resident ID, USCC, bank card (Luhn) or
    mobile (letters in either case: 11010519491231002x is the same resident ID)."""
    if len(run) == 18 and (is_resident_id(run) or is_uscc(run)):
        return True
    if run.isdigit() and 16 <= len(run) <= 19 and is_bank_card(run):
        return True
    return _MOBILE.fullmatch(run) is not None


def leaked_identifiers(body: bytes | str) -> list[str]:
    """Valid resident IDs, USCCs, bank cards and mobiles in a body (NFKC-folded, JSON \\u
    escapes decoded), plus any of the planted values seen whole."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text)
    text = unicodedata.normalize("NFKC", text)
    found = []
    for run in _RUN.findall(text):
        if _is_identifier(run):
            found.append(run)
    found.extend(s for s in SECRETS if s in text and s not in found)
    return found


def assert_no_leak(body: bytes | str) -> None:
    leaked = leaked_identifiers(body)
    assert not leaked, f"unmasked identifiers reached the client: {leaked}"


def error_of(body: bytes) -> dict[str, Any]:
    data = orjson.loads(body)
    assert isinstance(data, dict) and "error" in data, body[:200]
    return data


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], payload: dict[str, Any], key: bytes | None) -> str:
    """A JWS built by hand (libraries refuse to build most of these): HMAC-SHA256 over the
    signing input with `key`, or an empty signature when `key` is None."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    sig = b"" if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(sig)}"


def claims(now: float, **overrides: Any) -> dict[str, Any]:
    """Claims the `tests` issuer accepts, with `overrides` (None removes a claim)."""
    base: dict[str, Any] = {
        "iss": "tests",
        "aud": "datagate",
        "sub": "mallory",
        "dept": "market-regulation",
        "clearance": 1,
        "iat": int(now),
        "exp": int(now) + 600,
        "jti": "j-1",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def raw_request(
    method: str, target: str, token: str | None = None, extra: str = "", body: bytes = b""
) -> bytes:
    """Exact request bytes (no client normalisation); `extra` is more header lines."""
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    head = f"{method} {target} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n{auth}{extra}\r\n"
    return head.encode("utf-8") + body


async def send_raw(port: int, data: bytes) -> tuple[int, bytes]:
    return await raw_http(port, data)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


async def exchange(port: int, data: bytes) -> tuple[int, bytes]:
    """Send `data`, read one response (head + Content-Length body), then close: for requests
    whose announced body is never sent, where the server would wait for it before closing."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        body = await reader.readexactly(length)
        return int(lines[0].split(" ", 2)[1]), body
    finally:
        writer.close()
