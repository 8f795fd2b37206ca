"""Token verification: every supported algorithm, every JWT attack class, claims, the cache."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import GatewayError
from gateway.identity.verifier import Verifier, bearer_token
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
    sign,
)

ASYMMETRIC = ["RS256", "PS256", "ES256", "EdDSA"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], payload: dict[str, Any], secret: bytes | None) -> str:
    """A token built by hand, as an attacker would: HMAC-signed with `secret`, or unsigned."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = b""
    if secret is not None:
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


@pytest.fixture
def keys(rsa_key: KeyPair, ec_key: KeyPair, ed_key: KeyPair) -> dict[str, KeyPair]:
    return {"RS256": rsa_key, "PS256": rsa_key, "ES256": ec_key, "EdDSA": ed_key}


@pytest.fixture
def verifier(tmp_path: Path, keys: dict[str, KeyPair], clock: Clock) -> Verifier:
    cfg = identity_config(
        [
            hs_issuer(
                algorithms=["HS256", "HS384", "HS512", *ASYMMETRIC],
                public_keys=[
                    {"file": pem_file(tmp_path, keys["RS256"]), "kid": "rsa-1"},
                    {"file": pem_file(tmp_path, keys["ES256"])},
                    {"file": pem_file(tmp_path, keys["EdDSA"])},
                ],
            ),
            hs_issuer(issuer="https://other.example.gov", secret="o" * 64, audience=["a", "b"]),
        ],
        token_cache_size=4,
    )
    return Verifier(cfg, None, clock=clock)


async def refused(verifier: Verifier, token: str) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        await verifier.verify(token)
    return info.value


async def assert_refused(verifier: Verifier, token: str, reason: str) -> None:
    exc = await refused(verifier, token)
    assert (exc.status, exc.code, exc.reason) == (401, "unauthenticated", reason), exc.message
    assert exc.headers["WWW-Authenticate"] == 'Bearer realm="datagate", error="invalid_token"'


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
async def test_hmac_algorithms_verify(verifier: Verifier, alg: str) -> None:
    principal = await verifier.verify(sign(claims(), SECRET, alg))
    assert (principal.subject, principal.department, principal.clearance) == ("alice", "health", 3)
    assert principal.roles == frozenset({"analyst"})
    assert principal.issuer == ISSUER
    assert principal.expires_at == NOW + 600


@pytest.mark.parametrize("alg", ASYMMETRIC)
async def test_asymmetric_algorithms_verify(
    verifier: Verifier, keys: dict[str, KeyPair], alg: str
) -> None:
    token = sign(claims(sub=f"bob-{alg}"), keys[alg].private, alg)
    assert (await verifier.verify(token)).subject == f"bob-{alg}"


async def test_kid_selects_the_key(verifier: Verifier, rsa_key: KeyPair) -> None:
    token = sign(claims(), rsa_key.private, "RS256", kid="rsa-1")
    assert (await verifier.verify(token)).subject == "alice"


async def test_principal_takes_every_mapped_claim(verifier: Verifier) -> None:
    token = sign(
        claims(client_id="portal", purpose="audit", purposes=["audit", "research"], jti="t-1")
    )
    p = await verifier.verify(token)
    assert (p.client_id, p.purpose, p.token_id) == ("portal", "audit", "t-1")
    assert p.purposes == frozenset({"audit", "research"})


async def test_azp_is_the_client_id_when_client_id_is_absent(verifier: Verifier) -> None:
    assert (await verifier.verify(sign(claims(azp="mobile")))).client_id == "mobile"


async def test_second_issuer_with_audience_list(verifier: Verifier) -> None:
    token = sign(claims(iss="https://other.example.gov", aud="b"), "o" * 64)
    assert (await verifier.verify(token)).issuer == "https://other.example.gov"


async def test_claim_names_are_configurable(clock: Clock) -> None:
    cfg = identity_config(
        [hs_issuer(claims={"subject": "preferred_username", "department": "org", "roles": "grp"})]
    )
    token = sign(claims(preferred_username="carol", org="tax", grp=["x"], sub=None, dept=None))
    p = await Verifier(cfg, None, clock=clock).verify(token)
    assert (p.subject, p.department, p.roles) == ("carol", "tax", frozenset({"x"}))


# -- attacks: each is a 401 with its reason, never a 500 -------------------------------------


async def test_alg_none_is_refused(verifier: Verifier) -> None:
    for alg in ("none", "None", "NONE", "nOnE"):
        await assert_refused(
            verifier, forge({"alg": alg, "typ": "JWT"}, claims(), None), "bad_signature"
        )


async def test_algorithm_confusion_rsa_public_key_as_hmac_secret(
    tmp_path: Path, rsa_key: KeyPair, clock: Clock
) -> None:
    # The attacker knows the public key and signs HS256 with it, hoping the verifier
    # passes the same PEM as the HMAC secret.
    token = forge({"alg": "HS256", "typ": "JWT"}, claims(), rsa_key.public_pem)
    rsa_only = identity_config(
        [
            {
                "issuer": ISSUER,
                "audience": AUDIENCE,
                "algorithms": ["RS256"],
                "public_keys": [{"file": pem_file(tmp_path, rsa_key)}],
            }
        ]
    )
    await assert_refused(Verifier(rsa_only, None, clock=clock), token, "bad_signature")
    both = identity_config(
        [
            hs_issuer(
                algorithms=["HS256", "RS256"], public_keys=[{"file": pem_file(tmp_path, rsa_key)}]
            )
        ]
    )
    await assert_refused(Verifier(both, None, clock=clock), token, "bad_signature")


async def test_algorithm_not_allowed_for_issuer(verifier: Verifier, rsa_key: KeyPair) -> None:
    await assert_refused(verifier, sign(claims(), rsa_key.private, "RS384"), "bad_signature")


async def test_expired(verifier: Verifier, clock: Clock) -> None:
    token = sign(claims(exp=int(NOW) + 10))
    clock.advance(10 + 29)
    assert (await verifier.verify(token)).subject == "alice"  # within the 30 s leeway
    verifier.cache.clear()
    clock.advance(1)
    await assert_refused(verifier, token, "expired")


async def test_not_yet_valid(verifier: Verifier) -> None:
    await assert_refused(verifier, sign(claims(nbf=int(NOW) + 31)), "not_yet_valid")
    await assert_refused(verifier, sign(claims(iat=int(NOW) + 31)), "not_yet_valid")
    assert (await verifier.verify(sign(claims(nbf=int(NOW) + 30)))).subject == "alice"


async def test_wrong_audience(verifier: Verifier) -> None:
    await assert_refused(verifier, sign(claims(aud="someone-else")), "wrong_audience")
    await assert_refused(verifier, sign(claims(aud=None)), "wrong_audience")


async def test_wrong_issuer(verifier: Verifier) -> None:
    await assert_refused(verifier, sign(claims(iss="https://evil.example")), "unknown_issuer")
    await assert_refused(verifier, sign(claims(iss=None)), "unknown_issuer")
    forged = forge({"alg": "HS256"}, claims(iss=["x"]), SECRET.encode())
    await assert_refused(verifier, forged, "unknown_issuer")


async def test_token_signed_by_the_other_issuers_key(verifier: Verifier) -> None:
    await assert_refused(verifier, sign(claims(), "o" * 64), "bad_signature")


async def test_unknown_kid(verifier: Verifier, rsa_key: KeyPair, rsa_key2: KeyPair) -> None:
    await assert_refused(
        verifier, sign(claims(), rsa_key.private, "RS256", kid="nope"), "bad_signature"
    )
    # A key the issuer never published, without a kid: every fitting key fails.
    await assert_refused(verifier, sign(claims(), rsa_key2.private, "RS256"), "bad_signature")


@pytest.mark.parametrize("kid", [7, None, ["k"]])
async def test_non_string_kid_is_malformed(verifier: Verifier, kid: object) -> None:
    forged = forge({"alg": "HS256", "kid": kid}, claims(), SECRET.encode())
    await assert_refused(verifier, forged, "malformed")
    assert (await refused(verifier, forged)).message == "the token's kid is not a string"


async def test_jws_extensions_and_embedded_keys(verifier: Verifier, rsa_key2: KeyPair) -> None:
    crit = forge({"alg": "HS256", "crit": ["exp"], "exp": 1}, claims(), SECRET.encode())
    await assert_refused(verifier, crit, "malformed")
    b64 = forge({"alg": "HS256", "b64": False, "crit": ["b64"]}, claims(), SECRET.encode())
    await assert_refused(verifier, b64, "malformed")
    # The attacker's own key, embedded in the header, is never used.
    own = sign(claims(), rsa_key2.private, "RS256", jwk=rsa_key2.jwk(None))
    await assert_refused(verifier, own, "bad_signature")


async def test_tampered_payload(verifier: Verifier) -> None:
    header, _, signature = sign(claims()).split(".")
    payload = _b64(json.dumps(claims(clearance=4)).encode())
    await assert_refused(verifier, f"{header}.{payload}.{signature}", "bad_signature")


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "a.b",
        "a.b.c.d.e",
        "...",
        "!!!.???.***",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0",
        _b64(b"[1]") + "." + _b64(b"{}") + ".sig",
        _b64(b"{}") + "." + _b64(b"not json") + ".sig",
        "é.é.é",
    ],
)
async def test_garbage_is_malformed(verifier: Verifier, token: str) -> None:
    await assert_refused(verifier, token, "malformed")


async def test_truncated_token(verifier: Verifier) -> None:
    token = sign(claims())
    for cut in (10, len(token) // 2, len(token) - 5):
        exc = await refused(verifier, token[:cut])
        assert exc.reason in ("malformed", "bad_signature")


async def test_oversized_token_is_malformed(verifier: Verifier) -> None:
    token = sign(claims(padding="x" * 9000))
    await assert_refused(verifier, token, "malformed")
    assert "8192" in (await refused(verifier, token)).message


@pytest.mark.parametrize("missing", ["sub", "dept", "clearance", "exp", "jti"])
async def test_missing_claims(verifier: Verifier, missing: str) -> None:
    await assert_refused(verifier, sign(claims(**{missing: None})), "bad_claims")


@pytest.mark.parametrize("clearance", [0, 5, -1, True, False, "3", 3.0, None, [3], 2**70])
async def test_bad_clearance(verifier: Verifier, clearance: Any) -> None:
    payload = claims()
    payload["clearance"] = clearance
    await assert_refused(verifier, sign(payload), "bad_claims")


@pytest.mark.parametrize(
    "over",
    [
        {"sub": ""},
        {"sub": 7},
        {"dept": ["health"]},
        {"roles": "analyst"},
        {"roles": ["ok", 1]},
        {"purposes": "audit"},
        {"purpose": 5},
        {"client_id": 5},
        {"jti": 5},
        {"exp": "tomorrow"},
        {"exp": True},
        {"nbf": "now"},
        {"iat": [1]},
    ],
)
async def test_bad_claim_types(verifier: Verifier, over: dict[str, Any]) -> None:
    await assert_refused(verifier, sign(claims(**over)), "bad_claims")


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=st.text(max_size=300) | st.binary(max_size=200).map(_b64))
async def test_any_string_is_a_401_or_a_principal(verifier: Verifier, token: str) -> None:
    with pytest.raises(GatewayError) as info:
        await verifier.verify(token)
    assert info.value.status == 401


# -- the bearer header ------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "", "Basic dXNlcjpwYXNz", "Bearer", "Bearer   "])
def test_bearer_missing(value: str | None) -> None:
    with pytest.raises(GatewayError) as info:
        bearer_token(value)
    assert info.value.reason == "missing"
    assert info.value.headers["WWW-Authenticate"] == 'Bearer realm="datagate"'


def test_bearer_scheme_is_case_insensitive_and_token_may_not_contain_spaces() -> None:
    assert bearer_token("bearer abc.def.ghi") == "abc.def.ghi"
    assert bearer_token("  Bearer   abc.def.ghi ") == "abc.def.ghi"
    with pytest.raises(GatewayError) as info:
        bearer_token("Bearer abc def")
    assert info.value.reason == "malformed"


async def test_authenticate_reads_the_header(verifier: Verifier) -> None:
    assert (await verifier.authenticate(f"Bearer {sign(claims())}")).subject == "alice"


# -- the cache ------------------------------------------------------------------------------


async def test_cache_hit_returns_the_same_principal(verifier: Verifier) -> None:
    token = sign(claims())
    first = await verifier.verify(token)
    assert len(verifier.cache) == 1
    assert await verifier.verify(token) is first


async def test_cache_honours_expiry(verifier: Verifier, clock: Clock) -> None:
    token = sign(claims(exp=int(NOW) + 60))
    await verifier.verify(token)
    clock.advance(60 + 30)
    await assert_refused(verifier, token, "expired")
    assert len(verifier.cache) == 0


async def test_cache_honours_not_before_when_the_clock_goes_back(
    verifier: Verifier, clock: Clock
) -> None:
    # Verified (and cached) at NOW; then the clock is set back a day: the token's iat and
    # nbf are in the future by the new time, cached or not.
    token = sign(claims(nbf=int(NOW)))
    await verifier.verify(token)
    clock.advance(-86400)
    await assert_refused(verifier, token, "not_yet_valid")
    clock.advance(86400)
    assert (await verifier.verify(token)).subject == "alice"


async def test_cache_is_bounded_lru(verifier: Verifier) -> None:
    tokens = [sign(claims(sub=f"u{i}")) for i in range(6)]
    for token in tokens:
        await verifier.verify(token)
    assert len(verifier.cache) == 4
    assert verifier.cache.get(tokens[0], NOW) is None
    assert verifier.cache.get(tokens[5], NOW) is not None


async def test_failed_tokens_are_not_cached(verifier: Verifier) -> None:
    await refused(verifier, sign(claims(aud="x")))
    assert len(verifier.cache) == 0


async def test_cache_size_zero_disables_caching(clock: Clock) -> None:
    v = Verifier(identity_config([hs_issuer()], token_cache_size=0), None, clock=clock)
    await v.verify(sign(claims()))
    assert len(v.cache) == 0
