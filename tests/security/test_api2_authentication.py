"""OWASP API2:2023 broken authentication and RFC 8725 (JWT best current practices): every
forged, stale, mis-addressed or malformed token is a 401 (never a 500) and nothing is
forwarded. The `tests` issuer is HS256; `rsa-issuer` is RS256 with a public key file."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.gateway.conftest import SECRET
from tests.security.helpers import (
    RSA_ISSUER,
    HostileUpstream,
    bearer,
    claims,
    error_of,
    forge,
)

KEY = SECRET.encode()
OPEN = "/api/open/x"


def hs(now: float, header: dict[str, Any] | None = None, **overrides: Any) -> str:
    return forge({"alg": "HS256", "typ": "JWT", **(header or {})}, claims(now, **overrides), KEY)


def _over_8k(now: float) -> str:
    return hs(now, pad="A" * 9000)


# name -> token builder(now); each must be refused with 401.
FORGED: dict[str, Any] = {
    "alg_none": lambda n: forge({"alg": "none", "typ": "JWT"}, claims(n), None),
    "alg_None": lambda n: forge({"alg": "None"}, claims(n), None),
    "alg_NONE_with_sig": lambda n: forge({"alg": "NONE"}, claims(n), KEY),
    "alg_missing": lambda n: forge({"typ": "JWT"}, claims(n), KEY),
    "alg_not_string": lambda n: forge({"alg": ["HS256"]}, claims(n), KEY),
    "rs256_header_hmac_signed": lambda n: forge({"alg": "RS256"}, claims(n), KEY),
    "hs512_not_allowed": lambda n: jwt.encode(claims(n), SECRET * 2, algorithm="HS512"),
    "wrong_secret": lambda n: forge({"alg": "HS256"}, claims(n), b"x" * 32),
    "expired": lambda n: hs(n, exp=int(n) - 3600, iat=int(n) - 7200),
    "expired_beyond_leeway": lambda n: hs(n, exp=int(n) - 31),
    "exp_as_string": lambda n: hs(n, exp=str(int(n) + 600)),
    "exp_as_bool": lambda n: hs(n, exp=True),
    "exp_missing": lambda n: hs(n, exp=None),
    "nbf_in_future": lambda n: hs(n, nbf=int(n) + 3600),
    "iat_in_future": lambda n: hs(n, iat=int(n) + 3600),
    "nbf_as_string": lambda n: hs(n, nbf="0"),
    "wrong_aud": lambda n: hs(n, aud="another-gateway"),
    "wrong_aud_list": lambda n: hs(n, aud=["another-gateway", "x"]),
    "aud_missing": lambda n: hs(n, aud=None),
    "wrong_iss": lambda n: hs(n, iss="evil"),
    "iss_missing": lambda n: hs(n, iss=None),
    "iss_not_string": lambda n: hs(n, iss=["tests"]),
    "sub_missing": lambda n: hs(n, sub=None),
    "sub_empty": lambda n: hs(n, sub=""),
    "sub_number": lambda n: hs(n, sub=42),
    "dept_missing": lambda n: hs(n, dept=None),
    "dept_list": lambda n: hs(n, dept=["public-security"]),
    "jti_missing": lambda n: hs(n, jti=None),
    "clearance_missing": lambda n: hs(n, clearance=None),
    "clearance_5": lambda n: hs(n, clearance=5),
    "clearance_0": lambda n: hs(n, clearance=0),
    "clearance_negative": lambda n: hs(n, clearance=-1),
    "clearance_string_3": lambda n: hs(n, clearance="3"),
    "clearance_true": lambda n: hs(n, clearance=True),
    "clearance_float": lambda n: hs(n, clearance=3.0),
    "clearance_list": lambda n: hs(n, clearance=[3]),
    "clearance_huge": lambda n: hs(n, clearance=10**30),
    "roles_string": lambda n: hs(n, roles="soc"),
    "roles_mixed": lambda n: hs(n, roles=["soc", 1]),
    "crit_header": lambda n: hs(n, {"crit": ["exp"]}),
    "b64_false": lambda n: hs(n, {"b64": False}),
    "kid_not_string": lambda n: hs(n, {"kid": 7}),
    "payload_is_array": lambda n: forge({"alg": "HS256"}, [1, 2], KEY),  # type: ignore[arg-type]
    "garbage": lambda n: "garbage",
    "three_dots": lambda n: "...",
    "four_parts": lambda n: hs(n) + ".x",
    "two_parts": lambda n: hs(n).rsplit(".", 1)[0],
    "truncated_signature": lambda n: hs(n)[:-6],
    "truncated_payload": lambda n: (lambda p: f"{p[0]}.{p[1][:-5]}.{p[2]}")(hs(n).split(".")),
    "bad_base64": lambda n: "%%%%.&&&&.****",
    "header_not_json": lambda n: "bm90IGpzb24." + hs(n).split(".", 1)[1],
    "unicode": lambda n: "тест.тест.тест",
    "over_8k": _over_8k,
}


@pytest.mark.parametrize("name", sorted(FORGED))
async def test_forged_or_invalid_tokens_are_401_and_never_forwarded(
    gw: Any, hostile: HostileUpstream, name: str
) -> None:
    token = FORGED[name](time.time())
    resp = await gw.get(OPEN, headers=bearer(token), auth=False)
    body = await resp.read()
    assert resp.status == 401, (name, body[:300])
    assert error_of(body)["error"] == "unauthenticated"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer ")
    assert hostile.seen == []


async def test_hs256_signed_with_the_rs256_issuers_public_key_is_refused(
    gw: Any, hostile: HostileUpstream, rsa_public_pem: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    """The classic algorithm confusion: the public key used as an HMAC secret."""
    now = time.time()
    pem = rsa_public_pem.read_bytes()
    for key in (pem, pem.strip(), pem.replace(b"\n", b"")):
        for iss in (RSA_ISSUER, "tests"):
            token = forge({"alg": "HS256", "typ": "JWT"}, claims(now, iss=iss), key)
            resp = await gw.get(OPEN, headers=bearer(token), auth=False)
            assert resp.status == 401, (iss, await resp.text())
    assert hostile.seen == []
    # Control: the RS256 issuer itself works, so the refusals above are about the attack.
    good = jwt.encode(claims(now, iss=RSA_ISSUER), rsa_key, algorithm="RS256")
    resp = await gw.get(OPEN, headers=bearer(good), auth=False)
    assert resp.status == 200, await resp.text()
    assert len(hostile.seen) == 1


async def test_a_key_embedded_in_the_token_header_is_never_trusted(
    gw: Any, hostile: HostileUpstream
) -> None:
    """jwk / jku / x5u / x5c header hints (RFC 8725 §3.10): the attacker's own key."""
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(attacker.public_key(), as_dict=True)
    now = time.time()
    hints: list[dict[str, Any]] = [
        {"jwk": jwk},
        {"jku": "http://127.0.0.1:1/jwks.json", "kid": "evil"},
        {"x5u": "http://127.0.0.1:1/cert.pem"},
        {"x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]},
        {"kid": "../../../../dev/null"},
    ]
    for hint in hints:
        token = jwt.encode(claims(now, iss=RSA_ISSUER), attacker, algorithm="RS256", headers=hint)
        resp = await gw.get(OPEN, headers=bearer(token), auth=False)
        assert resp.status == 401, (hint, await resp.text())
    assert hostile.seen == []


@pytest.mark.parametrize(
    "authorization",
    [
        "",
        "Bearer",
        "Bearer ",
        "Basic YWxpY2U6c2VjcmV0",
        "Token abc",
        "Bearer a b",
        "Bearer\tabc",
    ],
)
async def test_missing_or_malformed_authorization_is_401(
    gw: Any, hostile: HostileUpstream, authorization: str
) -> None:
    resp = await gw.get(OPEN, headers={"Authorization": authorization}, auth=False)
    assert resp.status == 401
    assert error_of(await resp.read())["error"] == "unauthenticated"
    assert hostile.seen == []


async def test_two_authorization_headers_are_refused(gw: Any, hostile: HostileUpstream) -> None:
    good = gw.token(sub="mallory")
    from multidict import CIMultiDict

    headers = CIMultiDict([("Authorization", f"Bearer {good}"), ("Authorization", "Bearer x")])
    resp = await gw.session.get(gw.url + OPEN, headers=headers)
    assert resp.status == 401
    assert hostile.seen == []


async def test_a_token_on_the_query_string_or_in_a_cookie_is_not_accepted(
    gw: Any, hostile: HostileUpstream
) -> None:
    token = gw.token(sub="mallory")
    for kw in ({"params": {"access_token": token}}, {"headers": {"Cookie": f"token={token}"}}):
        resp = await gw.get(OPEN, auth=False, **kw)
        assert resp.status == 401
    assert hostile.seen == []


async def test_a_valid_token_is_accepted(gw: Any, hostile: HostileUpstream) -> None:
    """Positive control for the whole module: a well-formed HS256 token passes."""
    resp = await gw.get(OPEN, headers=bearer(hs(time.time())), auth=False)
    assert resp.status == 200, await resp.text()
    assert len(hostile.seen) == 1
    assert "Authorization" not in hostile.seen[0].headers


async def test_refused_tokens_never_appear_in_the_audit_log(gw: Any) -> None:
    """§9: tokens and cookies never appear in logs, refused ones included."""
    now = time.time()
    sent = [FORGED[name](now) for name in ("wrong_secret", "expired", "garbage", "wrong_aud")]
    sent.append(gw.token(sub="mallory"))
    for token in sent:
        await gw.get(OPEN, headers={**bearer(token), "Cookie": f"session={token}"}, auth=False)
    await gw.gateway.audit.flush()
    text = gw.gateway.config.audit.path.read_text()
    assert text.count("\n") >= len(sent)
    for token in sent:
        signature = token.rsplit(".", 1)[-1]
        assert token not in text
        assert len(signature) < 8 or signature not in text
