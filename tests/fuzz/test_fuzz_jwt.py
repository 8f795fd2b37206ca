"""Fuzzing JWT parsing: mutated valid tokens, generated headers and claims, arbitrary
Authorization values. The only outcomes are a principal built from a verified token's own
claims, or a 401 `unauthenticated` with a known reason; never another exception.

Extends tests/identity/test_token_verifier.py, which fuzzes arbitrary strings and names each
attack class by hand.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import jwt
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from gateway.errors import GatewayError
from gateway.identity.principal import Principal
from gateway.identity.verifier import Verifier
from tests.fuzz.budget import fuzz
from tests.identity.helpers import (
    AUDIENCE,
    ISSUER,
    NOW,
    SECRET,
    Clock,
    KeyPair,
    claims,
    hs_issuer,
    identity_config,
    pem_file,
)

REASONS = frozenset(
    {
        "missing",
        "malformed",
        "unknown_issuer",
        "bad_signature",
        "wrong_audience",
        "bad_claims",
        "expired",
        "not_yet_valid",
    }
)
ALGORITHMS = ("HS256", "RS256", "ES256", "EdDSA")


@pytest.fixture
def keys(rsa_key: KeyPair, ec_key: KeyPair, ed_key: KeyPair) -> dict[str, Any]:
    return {"HS256": SECRET, "RS256": rsa_key, "ES256": ec_key, "EdDSA": ed_key}


@pytest.fixture
def verifier(tmp_path: Path, keys: dict[str, Any]) -> Verifier:
    public = [{"file": pem_file(tmp_path, keys[alg])} for alg in ALGORITHMS[1:]]
    cfg = identity_config([hs_issuer(algorithms=list(ALGORITHMS), public_keys=public)])
    return Verifier(cfg, None, clock=Clock())


def signing_key(keys: dict[str, Any], alg: str) -> Any:
    key = keys[alg]
    return key if isinstance(key, str) else key.private


async def outcome(verifier: Verifier, token: str) -> Principal | GatewayError:
    """The principal, or the refusal, checked to be a well-formed 401."""
    verifier.cache.clear()  # each example is decided from scratch
    try:
        principal = await verifier.verify(token)
    except GatewayError as exc:
        event(f"refused: {exc.reason}")
        assert (exc.status, exc.code) == (401, "unauthenticated"), exc.message
        assert exc.reason in REASONS, exc.reason
        assert exc.message
        assert exc.headers["WWW-Authenticate"].startswith('Bearer realm="datagate"')
        return exc
    event("accepted")
    return principal


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --- mutated valid tokens --------------------------------------------------------------

B64_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
mutation = st.one_of(
    st.tuples(st.just("replace"), st.integers(0, 10_000), st.sampled_from(B64_CHARS + ".=+/ ")),
    st.tuples(st.just("insert"), st.integers(0, 10_000), st.sampled_from(B64_CHARS + ".=%")),
    st.tuples(st.just("delete"), st.integers(0, 10_000), st.just("")),
    st.tuples(st.just("truncate"), st.integers(0, 10_000), st.just("")),
    st.tuples(st.just("swap_parts"), st.integers(0, 2), st.just("")),
    st.tuples(st.just("case"), st.integers(0, 10_000), st.just("")),
)


def mutate(token: str, steps: list[tuple[str, int, str]]) -> str:
    for kind, at, char in steps:
        i = at % (len(token) + 1)
        if kind == "replace" and token:
            i = at % len(token)
            token = token[:i] + char + token[i + 1 :]
        elif kind == "insert":
            token = token[:i] + char + token[i:]
        elif kind == "delete" and token:
            i = at % len(token)
            token = token[:i] + token[i + 1 :]
        elif kind == "truncate":
            token = token[:i]
        elif kind == "swap_parts":
            parts = token.split(".")
            if len(parts) == 3:
                j = (at + 1) % 3
                parts[at], parts[j] = parts[j], parts[at]
                token = ".".join(parts)
        elif kind == "case" and token:
            i = at % len(token)
            token = token[:i] + token[i].swapcase() + token[i + 1 :]
    return token


def same_bytes(a: str, b: str) -> bool:
    """Two tokens whose three parts decode to the same bytes (base64url's unused low bits
    let a changed last character decode to the same bytes: that is not a forgery)."""
    pa, pb = a.split("."), b.split(".")
    if len(pa) != 3 or len(pb) != 3:
        return False
    try:
        return all(
            base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
            == base64.urlsafe_b64decode(y + "=" * (-len(y) % 4))
            for x, y in zip(pa, pb, strict=True)
        )
    except ValueError:
        return False


@fuzz(300)
@given(alg=st.sampled_from(ALGORITHMS), steps=st.lists(mutation, min_size=1, max_size=4))
async def test_a_mutated_token_is_refused_unless_it_is_the_same_token(
    verifier: Verifier, keys: dict[str, Any], alg: str, steps: list[tuple[str, int, str]]
) -> None:
    original = jwt.encode(claims(), signing_key(keys, alg), algorithm=alg)
    token = mutate(original, steps)
    result = await outcome(verifier, token)
    if isinstance(result, Principal):
        assert token == original or same_bytes(token, original), token
        assert (result.subject, result.clearance) == ("alice", 3)


# --- generated headers and claims ------------------------------------------------------

json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=12),
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=3,
)
header_values = {
    "alg": st.sampled_from(["HS256", "HS384", "HS512", "none", "None", "hs256", "RS256", ""])
    | json_value,
    "typ": st.sampled_from(["JWT", "at+jwt", "JWS"]) | json_value,
    "kid": st.text(max_size=8) | json_value,
    "crit": st.lists(st.text(max_size=4), max_size=2) | json_value,
    "b64": st.booleans() | json_value,
    "jku": st.just("https://evil.example/jwks.json"),
    "jwk": st.just({"kty": "oct", "k": b64(b"attacker-key")}),
    "x5u": st.just("https://evil.example/cert.pem"),
}
claim_values = {
    "iss": st.sampled_from([ISSUER, "https://evil.example", ""]) | json_value,
    "aud": st.sampled_from([AUDIENCE, [AUDIENCE], ["x", AUDIENCE], "x"]) | json_value,
    "sub": st.sampled_from(["alice", "", "admin"]) | json_value,
    "dept": st.sampled_from(["health", ""]) | json_value,
    "clearance": st.sampled_from([1, 2, 3, 4, 0, 5, True, "4", 4.0]) | json_value,
    "roles": st.sampled_from([["soc"], [], "soc", [1]]) | json_value,
    "exp": st.sampled_from([NOW + 600, NOW - 600, NOW + 10**12, 1e309]) | json_value,
    "nbf": st.sampled_from([NOW - 1, NOW + 600]) | json_value,
    "iat": st.sampled_from([NOW - 1, NOW + 600]) | json_value,
    "jti": st.text(max_size=8) | json_value,
    "purpose": st.text(max_size=8) | json_value,
    "purposes": st.lists(st.text(max_size=4), max_size=2) | json_value,
}


def changed(base: dict[str, Any], values: dict[str, st.SearchStrategy[Any]]) -> Any:
    """`base` with some keys dropped or set to generated values, and some extra keys."""
    return st.fixed_dictionaries(
        {},
        optional={k: v | st.just(...) for k, v in values.items()},
    ).map(lambda over: {k: v for k, v in {**base, **over}.items() if v is not ...})


def forge(header: Any, payload: Any, key: bytes | None) -> str:
    """A JWS built by hand: JSON as generated (libraries refuse most of these)."""
    head = b64(json.dumps(header, allow_nan=True).encode())
    body = b64(json.dumps(payload, allow_nan=True).encode())
    signing_input = f"{head}.{body}"
    signature = (
        b"" if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    )
    return f"{signing_input}.{b64(signature)}"


def acceptable(header: dict[str, Any], payload: dict[str, Any]) -> bool:
    """What RFC 8725 and the issuer's config allow, written out independently of the
    verifier: HS256 by this issuer for this audience, unexpired, with the claims typed."""

    def number(v: Any) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool)

    aud = payload.get("aud")
    auds = aud if isinstance(aud, list) else [aud]
    texts = lambda v: isinstance(v, list) and all(isinstance(x, str) and x for x in v)  # noqa: E731
    optional_text = lambda v: v is None or (isinstance(v, str) and v)  # noqa: E731
    return (
        header.get("alg") == "HS256"
        and not {"crit", "b64"} & set(header)
        and ("kid" not in header or isinstance(header["kid"], str))
        and payload.get("iss") == ISSUER
        and AUDIENCE in auds
        and all(isinstance(a, str) for a in auds)
        and isinstance(payload.get("sub"), str)
        and bool(payload["sub"])
        and isinstance(payload.get("dept"), str)
        and bool(payload["dept"])
        and type(payload.get("clearance")) is int
        and 1 <= payload["clearance"] <= 4
        and number(payload.get("exp"))
        and NOW < payload["exp"] + 30 < float("inf")
        and all(
            number(payload[c]) and payload[c] <= NOW + 30 for c in ("nbf", "iat") if c in payload
        )
        and isinstance(payload.get("jti"), str)
        and bool(payload["jti"])
        and (payload.get("roles") is None or texts(payload["roles"]))
        and (payload.get("purposes") is None or texts(payload["purposes"]))
        and optional_text(payload.get("purpose"))
    )


@fuzz(250)
@given(
    header=changed({"alg": "HS256", "typ": "JWT"}, header_values),
    payload=changed(claims(), claim_values),
    signed=st.sampled_from(["right_key", "wrong_key", "unsigned"]),
)
async def test_generated_headers_and_claims_give_a_verified_principal_or_a_401(
    verifier: Verifier, header: dict[str, Any], payload: dict[str, Any], signed: str
) -> None:
    key = {"right_key": SECRET.encode(), "wrong_key": b"w" * 64, "unsigned": None}[signed]
    result = await outcome(verifier, forge(header, payload, key))
    if isinstance(result, GatewayError):
        if signed == "right_key" and acceptable(header, payload):
            pytest.fail(f"refused ({result.reason}: {result.message}): {header} {payload}")
        return
    assert signed == "right_key", "a principal from a token not signed with the issuer's key"
    assert acceptable(header, payload), (header, payload)
    assert (result.subject, result.department, result.clearance) == (
        payload["sub"],
        payload["dept"],
        payload["clearance"],
    )
    assert result.roles == frozenset(payload.get("roles") or ())
    assert result.issuer == ISSUER


@fuzz(150)
@given(
    header=st.dictionaries(st.text(max_size=6), json_value, max_size=4) | json_value,
    payload=st.dictionaries(st.text(max_size=6), json_value, max_size=6) | json_value,
    signature=st.binary(max_size=80),
)
async def test_arbitrary_json_parts_are_a_401(
    verifier: Verifier, header: Any, payload: Any, signature: bytes
) -> None:
    token = ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(payload).encode()), b64(signature)]
    )
    assert isinstance(await outcome(verifier, token), GatewayError)


@fuzz(300)
@given(
    value=st.one_of(
        st.text(max_size=60),
        st.builds(
            "{} {}".format,
            st.sampled_from(["Bearer", "bearer", "BEARER", "Basic", "Token", ""]),
            st.text(max_size=40),
        ),
    )
)
async def test_any_authorization_header_is_a_401(verifier: Verifier, value: str) -> None:
    verifier.cache.clear()
    with pytest.raises(GatewayError) as info:
        await verifier.authenticate(value)
    exc = info.value
    assert (exc.status, exc.code) == (401, "unauthenticated")
    assert exc.reason in REASONS and exc.message
