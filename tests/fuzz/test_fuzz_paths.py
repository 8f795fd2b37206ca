"""Fuzzing path normalisation: what the route stage accepts is unambiguous, decoded once,
stable, and read the same way by the upstream; everything else is refused and never forwarded.

Extends tests/gateway/test_route.py (cases by name) with generated targets built from the
pieces that path-confusion attacks are made of.
"""

from __future__ import annotations

import unicodedata
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.policy.catalog import parse_catalog
from gateway.stages.route import PathError, normalise_path
from tests.fuzz.budget import fuzz
from tests.gateway.conftest import RecordingUpstream, gateway_config, raw_http, running_gateway

MAX = 2048
CATALOG_TEXT = """
datasets:
  - {id: open, route: /api/open/, upstream: up, owner: ops, level: 1, sharing: unconditional}
  - {id: deep, route: /api/open/deep/, upstream: up, owner: health, level: 4, sharing: none}
  - {id: other, route: /api/other/, upstream: up, owner: health, level: 4, sharing: none}
"""
CATALOG = parse_catalog(CATALOG_TEXT)

# The pieces of confusion: separators and dots, raw and encoded; escapes of every class;
# the characters that end a path early; characters that Unicode folds into ASCII
# (full-width, one-dot leader, division slash, zero-width and combining marks); plain words.
STRUCTURE = [
    *("/", ".", "..", "%2e", "%2E", "%2f", "%2F", "%5c", "\\", ";", "%3b", "%25", "%"),
    *("#", "%23", "?", "%3f", "%00", "%0a", "%0d", "%7f", "%c0%ae", "%e2%80%ae", "%ff"),
]
LOOK_ALIKES = ["／", "．", "＼", "∕", "․", "ｐ", "\u200b", "\u0301", "\ufeff", "ﬁ", "Å", "K"]
WORDS = ["deep", "open", "other", "api", "x", "1", "a b", "张三", "%E5%BC%A0", "~", "+", "@"]
PIECES = STRUCTURE + LOOK_ALIKES + WORDS
HEADS = ["/", "/api/", "/api/open/", "/api/open/deep", "/api/other/", "//"]
pieces = st.sampled_from(PIECES)
structure = st.sampled_from(STRUCTURE)
words = st.sampled_from(WORDS)
escapes = st.integers(0, 255).map(lambda b: f"%{b:02x}") | st.integers(0, 255).map(
    lambda b: f"%{b:02X}"
)
free_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=3
)
raw_paths = st.builds(
    str.__add__,
    st.sampled_from(HEADS),
    st.lists(st.one_of(structure, pieces, escapes, free_text), max_size=10).map("".join),
)
# What a client can put on a request line (printable, no spaces), weighted towards the
# characters where two HTTP stacks may stop reading a path at different places.
ENDS = ["/", "#", "?", "%23", "%3f", "%2f", ".", "%2e", ";"]
targets = st.builds(
    str.__add__,
    st.sampled_from(["/api/open/", "/api/open/deep", "/api/open/deep/", "/api/", "/"]),
    st.lists(st.one_of(words, st.sampled_from(ENDS), pieces, escapes), max_size=5).map("".join),
).filter(lambda t: t.isprintable() and " " not in t)


def is_control(c: str) -> bool:
    return unicodedata.category(c) == "Cc"


@fuzz(600)
@given(raw_paths)
def test_an_accepted_path_is_unambiguous(raw: str) -> None:
    try:
        path = normalise_path(raw, MAX)
    except PathError:
        return
    segments = path.split("/")[1:]
    assert path.startswith("/")
    assert all(s not in (".", "..") and not s.endswith(".") for s in segments)
    assert all(segments[:-1]), "an empty segment ('//')"
    assert not any(is_control(c) for c in path)
    assert not set(path) & set("\\;%#?"), "a separator, escape or fragment survived"
    assert unicodedata.normalize("NFKC", path) == path, "a look-alike survived"
    # Encoded slashes are never decoded into separators: the segments are the raw ones.
    assert len(segments) == len(raw.split("/")[1:])


@fuzz(600)
@given(raw_paths)
def test_normalising_is_idempotent_and_the_encoded_form_routes_the_same(raw: str) -> None:
    try:
        path = normalise_path(raw, MAX)
    except PathError:
        return
    assert normalise_path(path, MAX) == path
    encoded = quote(path, safe="/")
    assert normalise_path(encoded, MAX) == path
    assert CATALOG.match(normalise_path(encoded, MAX)) is CATALOG.match(path)
    dataset = CATALOG.match(path)
    if dataset is not None:  # prefixes match on whole segments only
        assert path.startswith(dataset.route) or path == dataset.route[:-1]


@fuzz(300)
@given(st.text(max_size=40), st.integers(16, 64))
def test_any_text_is_a_path_or_a_path_error(raw: str, limit: int) -> None:
    try:
        path = normalise_path(raw, limit)
    except PathError as exc:
        assert str(exc).startswith("path ")
        return
    assert len(raw) <= limit and path.startswith("/")


# --- through a real gateway: what the upstream reads is what the gateway decided ---------


@pytest.fixture
async def path_gateway(tmp_path: Path, upstream: RecordingUpstream) -> Any:
    config = gateway_config(
        tmp_path, {"up": upstream.url}, CATALOG_TEXT, "", server={"max_path_length": MAX}
    )
    async with running_gateway(config) as running:
        yield running


def gateway_reading(target: str) -> str | None:
    """The path the route stage must decide on, or None when it must refuse: a request
    target never holds a fragment (RFC 9112 §3.2), and the path must normalise."""
    if "#" in target:
        return None
    try:
        return normalise_path(target.partition("?")[0], MAX)
    except PathError:
        return None


@fuzz(300)
@given(target=targets)
async def test_the_upstream_reads_every_forwarded_path_as_the_gateway_did(
    path_gateway: Any, upstream: RecordingUpstream, target: str
) -> None:
    await check_target(path_gateway, upstream, target)


async def check_target(path_gateway: Any, upstream: RecordingUpstream, target: str) -> None:
    """Send `target` as is; only a path the route stage must accept may reach the upstream,
    and the upstream must read it as that path."""
    upstream.seen.clear()
    # A caller of its own per example: hundreds of 404s from one would trip its breaker.
    caller = f"fuzz-{uuid.uuid4().hex[:12]}"
    token = path_gateway.token(sub=caller, dept="market-regulation", clearance=1)
    request = (
        f"GET {target} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    )
    status, _ = await raw_http(path_gateway.port, request.encode("utf-8"))
    reading = gateway_reading(target)
    dataset = CATALOG.match(reading) if reading is not None else None
    if dataset is None or dataset.id != "open":
        assert upstream.seen == [], (target, status)
        assert status in (400, 403, 404), (target, status)
        return
    if status == 400 and not target.isascii():
        assert upstream.seen == [], target  # aiohttp's parser refuses some raw non-ASCII
        return
    assert status == 200, (target, status)
    assert [seen.path for seen in upstream.seen] == [reading], target
    assert CATALOG.match(upstream.seen[0].path) is dataset


ENCODED = "path has an encoded '/', '\\', '%', ';', '?', '#' or control character"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        # Found by the fuzz above: the fragment was forwarded, the upstream dropped it and
        # served /api/open/deep (level 4, sharing none) to a clearance-1 caller of `open`.
        ("/api/open/deep#", "path has a '#' or '?': the upstream would read a shorter path"),
        ("/api/open/deep#/1", "path has a '#' or '?': the upstream would read a shorter path"),
        ("/api/open/deep%23", ENCODED),
        ("/api/open/deep%3f/1", ENCODED),
        ("/api/open/deep?x=1#", "query has a '#': a fragment is never forwarded"),
    ],
)
async def test_a_fragment_is_refused_and_never_forwarded(
    path_gateway: Any, upstream: RecordingUpstream, target: str, message: str
) -> None:
    token = path_gateway.token(sub="mallory", dept="market-regulation", clearance=1)
    request = f"GET {target} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\n"
    status, body = await raw_http(
        path_gateway.port, (request + "Connection: close\r\n\r\n").encode()
    )
    error = orjson.loads(body)
    assert (status, error["error"], error["reason"], error["message"]) == (
        400,
        "bad_request",
        "bad_path",
        message,
    )
    assert upstream.seen == []
