"""Fuzzing the masking codecs for leaks: no valid identifier (resident ID, bank card, mobile,
USCC) reaches a caller below its level, whatever the nesting, placement, spelling, format,
compression or chunking. The oracle is the adversarial suite's (tests/security/helpers.py).

A body the codecs cannot mask is refused (MaskingError): that is safe, and counted.
"""

from __future__ import annotations

import csv
import io
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from hypothesis import event, given
from hypothesis import strategies as st

from gateway.masking.codecs import open_transform
from gateway.masking.config import MaskingConfig
from gateway.masking.errors import MaskingError
from gateway.masking.plan import MaskPlan, compile_plan
from tests.fuzz.bodies import (
    ENCODINGS,
    chunks,
    compress,
    csv_body,
    documents,
    escape_some,
    header_of,
    json_text,
)
from tests.fuzz.budget import fuzz
from tests.gateway.conftest import gateway_config, running_gateway
from tests.masking.mask_helpers import make_config, make_dataset
from tests.security.helpers import leaked_identifiers

FIELDS: list[dict[str, Any]] = [
    {"name": "id_card", "level": 3, "strategy": "resident_id"},
    {"name": "phone", "level": 3, "strategy": "mobile"},
    {"name": "bank_card", "level": 3, "strategy": "bank_card"},
    {"name": "name", "level": 3, "strategy": "name"},
    {"name": "diagnosis", "level": 4, "strategy": "remove"},
]
CONFIG = make_config(batch_bytes=1024)
PLANS = {
    clearance: compile_plan(make_dataset(fields=FIELDS, records_key="items"), clearance, CONFIG)
    for clearance in (1, 2)
}


def masked(
    plan: MaskPlan,
    config: MaskingConfig,
    body: bytes,
    content_type: str,
    encoding: str | None,
    cuts: list[int],
) -> bytes | MaskingError:
    transform = open_transform(
        plan,
        config,
        content_type=content_type,
        content_encoding=encoding,
        content_length=None,
        key=b"consumer-key",
    )
    try:
        out = [transform.feed(piece) for piece in chunks(body, cuts)]
        out.append(transform.finish())
    except MaskingError as exc:
        return exc
    return b"".join(out)


def check(body: bytes, content_type: str, encoding: str | None, cuts: list[int], clearance: int):
    out = masked(
        PLANS[clearance], CONFIG, compress(body, encoding), content_type, header_of(encoding), cuts
    )
    if isinstance(out, MaskingError):
        event(f"refused: {out.reason}")
        return
    event("masked")
    leaked = leaked_identifiers(out)
    assert not leaked, f"unmasked identifiers reached the client: {leaked}\n{out[:2000]!r}"
    assert_well_formed(out, content_type)


def assert_well_formed(out: bytes, content_type: str) -> None:
    """Masking keeps the body readable in its format (a mask must not break the syntax)."""
    if content_type == "application/json":
        orjson.loads(out)
    elif content_type == "application/x-ndjson":
        for line in out.splitlines():
            if line.strip():
                orjson.loads(line)
    else:
        delimiter = "\t" if content_type.startswith("text/tab") else ","
        text = out.decode("utf-8")
        list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True))


common = {
    "encoding": st.sampled_from(ENCODINGS),
    "cuts": st.lists(st.integers(0, 1 << 20), max_size=12),
    "clearance": st.sampled_from([1, 2]),
}


@fuzz(300)
@given(
    document=documents(),
    shape=st.sampled_from(["array", "keyed", "document"]),
    escapes=st.lists(st.booleans(), max_size=16),
    **common,
)
def test_no_identifier_leaks_from_json(
    document: tuple[Any, list[tuple[str, str]]],
    shape: str,
    escapes: list[bool],
    encoding: str | None,
    cuts: list[int],
    clearance: int,
) -> None:
    value, _ = document
    if shape == "array":
        value = value if isinstance(value, list) else [value]
    elif shape == "keyed":
        value = {"items": value if isinstance(value, list) else [value], "total": 1}
    text = escape_some(json_text(value), escapes)
    check(text.encode(), "application/json", encoding, cuts, clearance)


@fuzz(200)
@given(
    records=st.lists(documents(), min_size=1, max_size=5),
    escapes=st.lists(st.booleans(), max_size=16),
    **common,
)
def test_no_identifier_leaks_from_ndjson(
    records: list[tuple[Any, list[tuple[str, str]]]],
    escapes: list[bool],
    encoding: str | None,
    cuts: list[int],
    clearance: int,
) -> None:
    lines = [escape_some(json_text(value), escapes) for value, _ in records]
    body = ("\n".join(lines) + "\n").encode()
    check(body, "application/x-ndjson", encoding, cuts, clearance)


def cell(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


@fuzz(200)
@given(
    records=st.lists(documents(), min_size=1, max_size=5),
    tsv=st.booleans(),
    quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]),
    **common,
)
def test_no_identifier_leaks_from_csv(
    records: list[tuple[Any, list[tuple[str, str]]]],
    tsv: bool,
    quoting: int,
    encoding: str | None,
    cuts: list[int],
    clearance: int,
) -> None:
    rows = []
    for value, _ in records:
        flat = value if isinstance(value, dict) else {"value": value}
        rows.append({str(k): cell(v) for k, v in flat.items()})
    body = csv_body(rows, "\t" if tsv else ",", quoting)
    content_type = "text/tab-separated-values" if tsv else "text/csv; charset=utf-8"
    check(body, content_type, encoding, cuts, clearance)


# --- through a real gateway: what the client receives, headers included ------------------

CATALOG = """
datasets:
  - id: people
    route: /api/people/
    upstream: up
    owner: civil-affairs
    level: 3
    sharing: unconditional
    masked_from_clearance: 1
    records_key: items
    fields:
      - {name: id_card, level: 3, strategy: resident_id}
      - {name: phone, level: 3, strategy: mobile}
      - {name: bank_card, level: 3, strategy: bank_card}
      - {name: name, level: 3, strategy: name}
      - {name: diagnosis, level: 4, strategy: remove}
"""


class ScriptedUpstream:
    """Answers every request with the response the running example set."""

    def __init__(self) -> None:
        self.body = b""
        self.headers: dict[str, str] = {}
        self.cuts: list[int] = []
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.handle)
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers=self.headers)
        response.enable_chunked_encoding()
        await response.prepare(request)
        if request.method != "HEAD":
            for piece in chunks(self.body, self.cuts):
                await response.write(piece)
        await response.write_eof()
        return response


@pytest.fixture
async def scripted(aiohttp_server: Any) -> ScriptedUpstream:
    upstream = ScriptedUpstream()
    server = await aiohttp_server(upstream.app)
    upstream.url = str(server.make_url("")).rstrip("/")
    return upstream


@pytest.fixture
async def masking_gateway(tmp_path: Path, scripted: ScriptedUpstream) -> Any:
    # Bulk bodies go out only to requests decided as export, which needs its own row.
    config = gateway_config(tmp_path, {"up": scripted.url}, CATALOG, EXPORT_ROW)
    async with running_gateway(config) as running:
        yield running


EXPORT_ROW = "p, *, people, export, allow\n"
EXPORT_PATH = {"text/csv": "/api/people/p.csv", "application/x-ndjson": "/api/people/p.ndjson"}


@fuzz(100)
@given(
    document=documents(),
    content_type=st.sampled_from(["application/json", "application/x-ndjson", "text/csv"]),
    header_value=st.booleans(),
    method=st.sampled_from(["GET", "GET", "HEAD"]),
    **common,
)
async def test_no_identifier_reaches_the_client_through_the_gateway(
    masking_gateway: Any,
    scripted: ScriptedUpstream,
    document: tuple[Any, list[tuple[str, str]]],
    content_type: str,
    header_value: bool,
    method: str,
    encoding: str | None,
    cuts: list[int],
    clearance: int,
) -> None:
    value, planted = document
    if content_type == "text/csv":
        flat = value if isinstance(value, dict) else {"value": value}
        body = csv_body([{str(k): cell(v) for k, v in flat.items()}], ",", csv.QUOTE_MINIMAL)
    elif content_type == "application/x-ndjson":
        body = json_text(value).encode() + b"\n"
    else:
        body = json_text({"items": [value]}).encode()
    scripted.body, scripted.cuts = compress(body, encoding), cuts
    scripted.headers = {"Content-Type": content_type}
    if encoding is not None:
        scripted.headers["Content-Encoding"] = header_of(encoding) or ""
    if header_value and planted:  # an identifier in a response header too
        scripted.headers["X-Contact"] = planted[0][1]
    # A caller of its own per example: a thousand requests from one would trip its breaker.
    caller = f"fuzz-{uuid.uuid4().hex[:12]}"
    auth = masking_gateway.auth(sub=caller, dept="market-regulation", clearance=clearance)
    path = EXPORT_PATH.get(content_type, "/api/people/p/1")
    resp = await masking_gateway.request(method, path, auth=False, headers=auth)
    received = await resp.read()
    event(f"status {resp.status}")
    assert resp.status in (200, 502), resp.status  # masked, or refused: never passed as is
    assert not leaked_identifiers(received), received[:2000]
    shown = "\n".join(f"{k}: {v}" for k, v in resp.headers.items())
    assert not leaked_identifiers(shown), shown
