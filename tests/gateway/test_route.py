"""Path normalisation and route matching: ambiguous paths are refused, known ones matched."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.policy.catalog import parse_catalog
from gateway.stages.route import _PLAIN, PathError, checked_path, classify_action, normalise_path

CATALOG = parse_catalog(
    """
datasets:
  - {id: population, route: /api/population/, upstream: demo, owner: ps, level: 3}
  - {id: deep, route: /api/population/archive/, upstream: demo, owner: ps, level: 4}
"""
)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("/api/population/../medical/records", "dot-segment"),
        ("/api/population/%2e%2e/medical", "dot-segment"),
        ("/api/population/%2E%2E/medical", "dot-segment"),
        ("/api/population/./persons", "dot-segment"),
        ("/api/population%2fpersons", "encoded"),
        ("/api/population%2Fpersons", "encoded"),
        ("/api/population/%5cpersons", "encoded"),
        ("/api/population/%00", "encoded"),
        ("/api/population/%0d%0aX:1", "encoded"),
        ("/api/population/%252e%252e/x", "encoded"),
        ("/api/population\\persons", "backslash"),
        ("/api//population/persons", "empty segment"),
        ("/api/population/persons./1", "ending in '.'"),
        ("/api/population;jsessionid=1/persons", "';'"),
        ("/api/population/%zz", "malformed"),
        ("/api/population/%ff", "UTF-8"),
        ("/api/population/ｐersons", "look-alikes"),
        ("/api/population/persons\x7f", "control"),
        ("api/population", "start with"),
        # A fragment is never forwarded: the upstream read /api/population/archive.
        ("/api/population/archive#/1", "shorter path"),
        ("/api/population/archive%23/1", "encoded"),
        ("/api/population/archive%3F/1", "encoded"),
        ("/api/population/a?b", "shorter path"),
    ],
)
def test_ambiguous_paths_are_refused(raw: str, why: str) -> None:
    with pytest.raises(PathError, match=why):
        normalise_path(raw, 2048)


def test_over_long_path_is_refused() -> None:
    with pytest.raises(PathError, match="longer than 64"):
        normalise_path("/api/" + "a" * 80, 64)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/api/population/persons", "/api/population/persons"),
        ("/api/population/persons/", "/api/population/persons/"),
        ("/api/population/%E5%BC%A0%E4%B8%89", "/api/population/张三"),
        ("/api/population/张三", "/api/population/张三"),
        ("/api/population/a%20b", "/api/population/a b"),
    ],
)
def test_plain_paths_decode_once(raw: str, expected: str) -> None:
    assert normalise_path(raw, 2048) == expected


segment = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12
)


@given(st.lists(segment, min_size=1, max_size=6))
def test_accepted_paths_have_no_ambiguity(segments: list[str]) -> None:
    raw = "/" + "/".join(segments)
    try:
        path = normalise_path(raw, 2048)
    except PathError:
        return
    parts = path.split("/")[1:]
    assert all(p not in (".", "..") and not p.endswith(".") for p in parts)
    assert "\\" not in path and ";" not in path and "\x00" not in path
    assert all(p for p in parts[:-1])
    # Decoding is done exactly once: what remains has no percent-escapes left to decode.
    assert normalise_path(path, 2048) == path if "%" not in path else True


@given(st.binary(min_size=1, max_size=8))
def test_any_percent_encoded_bytes_are_decoded_or_refused_never_crash(data: bytes) -> None:
    raw = "/api/" + "".join(f"%{b:02x}" for b in data)
    try:
        path = normalise_path(raw, 2048)
    except PathError:
        return
    assert path.startswith("/api/")
    assert "/" not in path[5:] and "%" not in path[5:]


def test_longest_prefix_wins_and_prefixes_align_on_segments() -> None:
    assert CATALOG.match("/api/population/archive/1").id == "deep"
    assert CATALOG.match("/api/population/persons").id == "population"
    assert CATALOG.match("/api/population").id == "population"
    assert CATALOG.match("/api/populationX/persons") is None
    assert CATALOG.match("/API/population/persons") is None


@pytest.mark.parametrize(
    ("method", "rest", "fmt", "action"),
    [
        ("GET", "/persons", None, "list"),
        ("GET", "/persons/12", "", "read"),
        ("HEAD", "/persons/12", "", "read"),
        ("GET", "/persons.csv", "", "export"),
        ("GET", "/accounts.ndjson", "", "export"),
        ("GET", "/persons", "csv", "export"),
        ("GET", "/persons", "xml", "list"),
        ("POST", "/persons", "", "write"),
        ("DELETE", "/persons/12", "", "write"),
        ("PATCH", "/persons/12", "", "write"),
    ],
)
def test_actions(method: str, rest: str, fmt: str | None, action: str) -> None:
    assert classify_action(method, rest, (".csv", ".ndjson"), fmt or None) == action


@given(
    st.one_of(
        st.text(alphabet="/._-~aZ09%;\\:@!\x00\u00e9\uff0f", max_size=24),
        st.lists(st.text(alphabet="._-~aZ09", max_size=6), min_size=1, max_size=5).map(
            lambda segments: "/" + "/".join(segments)
        ),
    )
)
def test_the_fast_path_takes_only_paths_the_full_checks_keep_unchanged(raw: str) -> None:
    if _PLAIN.fullmatch(raw):
        assert checked_path(raw) == raw
