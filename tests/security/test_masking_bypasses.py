"""Masking bypasses a black-box attack found (issue 18, items 1-3 and the low-severity
identifier forms): identifiers glued to letters, digits that fold to ASCII, identifiers sent
as JSON floats, grouped and 0086 mobiles, 15-digit IDs and invisible characters inside an
identifier, in bodies and in response headers. A clearance-1 caller reads the level-3
`people` dataset through a real gateway in front of a hostile upstream on loopback."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from gateway.masking.identifiers import is_bank_card, is_first_generation_id, is_resident_id
from tests.gateway.conftest import running_gateway
from tests.security.helpers import HostileUpstream, low, security_config

ID = "110105194912310038"
MOBILE = "17029773806"
CARD = "6222021234567890128"
OLD_ID = "110105491231003"
BOLD = str.maketrans("0123456789", "𝟎𝟏𝟐𝟑𝟒𝟓𝟔𝟕𝟖𝟗")
CIRCLED = str.maketrans("0123456789", "⓪①②③④⑤⑥⑦⑧⑨")
SUPER = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")

# What the upstream says in a free-text field the catalog does not classify.
NOTES: dict[str, Any] = {
    "glued-before": f"ID{ID}",
    "glued-after": f"{ID}a",
    "glued-both": f"sfz{ID}x",
    "glued-mobile": f"tel{MOBILE}",
    "glued-card": f"card{CARD}",
    "glued-fullwidth": f"ｉｄ{ID}",
    "bold": ID.translate(BOLD),
    "circled": MOBILE.translate(CIRCLED),
    "superscript": MOBILE.translate(SUPER),
    "grouped-mobile": "170-2977-3806",
    "spaced-mobile": "+86 170 2977 3806",
    "prefixed-mobile": f"0086{MOBILE}",
    "spaced-id": "110105 19491231 0038",
    "grouped-card": "6222 0212 3456 7890 128",
    "zero-width": "1101051949\u200b12310038",
    "soft-hyphen": "170\u00ad2977\u00ad3806",
    "first-generation": f"旧证{OLD_ID}号",
}
FLOATS = {"float-id": 110105194912310038.0, "exp-id": 1.10105194912310038e17}


def leaked(text: str) -> list[str]:
    """Every valid identifier a reader could take from `text`: NFKC-folded, invisible
    characters dropped, separators inside digit runs dropped, digit runs glued to letters
    looked at on their own."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    text = re.sub(r"(?<=\d)[ -](?=\d)", "", text)
    found = []
    for run in re.findall(r"\d{11,19}[Xx]?", text):
        for size in (18, 15, 11, 19, 16, 17):
            for i in range(len(run) - size + 1):
                part = run[i : i + size]
                if (
                    (size == 18 and is_resident_id(part))
                    or (size == 15 and is_first_generation_id(part))
                    or (size == 11 and re.fullmatch(r"1[3-9]\d{9}", part))
                    or (size >= 16 and part.isdigit() and is_bank_card(part))
                ):
                    found.append(part)
    return found


def upstream_app() -> HostileUpstream:
    hostile = HostileUpstream()

    async def person(request: web.Request) -> web.Response:
        case = request.match_info["case"]
        note = FLOATS.get(case, NOTES.get(case))
        body = b'{"items":[{"id":1,"note":' + orjson.dumps(note) + b"}]}"
        headers = {"Content-Type": "application/json", "X-Person": str(NOTES.get(case, ""))}
        if case in NOTES:
            headers["Location"] = f"/people/{NOTES[case]}"  # sent as UTF-8
        return web.Response(body=body, headers=headers)

    hostile.app.router._resources.clear()
    hostile.app.router.add_get("/api/people/{case}", person)
    return hostile


@pytest.fixture
async def bypass_gw(
    tmp_path: Path, aiohttp_server: Any, rsa_public_pem: Path
) -> AsyncIterator[Any]:
    hostile = upstream_app()
    server = await aiohttp_server(hostile.app)
    hostile.url = str(server.make_url("")).rstrip("/")
    async with running_gateway(security_config(tmp_path, hostile, rsa_public_pem)) as running:
        yield running


def test_the_leak_check_sees_every_form() -> None:
    """The check this suite relies on finds each planted identifier when nothing masks it."""
    for case, note in NOTES.items():
        assert leaked(str(note)), case
    assert leaked(str(int(FLOATS["float-id"])))


@pytest.mark.parametrize("case", sorted(NOTES))
async def test_no_identifier_form_reaches_the_client(bypass_gw: Any, case: str) -> None:
    resp = await bypass_gw.get(f"/api/people/{case}", headers=low(bypass_gw), auth=False)
    body = (await resp.read()).decode()
    assert resp.status == 200, body
    assert not leaked(body), body
    for name in ("X-Person", "Location"):
        value = resp.headers.get(name, "")
        assert not leaked(value), (name, value)


@pytest.mark.parametrize("case", sorted(FLOATS))
async def test_an_identifier_sent_as_a_float_is_masked(bypass_gw: Any, case: str) -> None:
    resp = await bypass_gw.get(f"/api/people/{case}", headers=low(bypass_gw), auth=False)
    body = await resp.read()
    assert resp.status == 200, body
    note = orjson.loads(body)["items"][0]["note"]
    assert isinstance(note, str) and "*" in note, note
    # The float's 17 significant digits would give the ID away (the check digit does the rest).
    assert "1010519491231003" not in body.decode(), body
