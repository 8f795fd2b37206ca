"""The `identity` config: defaults, and every bad value refused with its key named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from gateway.configtree import build
from gateway.errors import ConfigError
from gateway.identity.config import IdentityConfig
from tests.identity.helpers import (
    AUDIENCE,
    ISSUER,
    SECRET,
    KeyPair,
    hs_issuer,
    identity_config,
    pem_file,
)
from tests.identity.helpers import jwks as jwks_doc


def refused(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        build(IdentityConfig, data, "identity")
    return str(info.value)


def test_defaults() -> None:
    cfg = identity_config([hs_issuer()])
    issuer = cfg.issuers[0]
    assert issuer.leeway == 30
    assert issuer.audiences == (AUDIENCE,)
    assert issuer.required_claims == ["exp", "jti"]
    assert issuer.claims.subject == "sub" and issuer.claims.department == "dept"
    assert issuer.claims.client_id == ["client_id", "azp"]
    assert (cfg.max_token_length, cfg.token_cache_size, cfg.signing_key) == (8192, 10_000, None)


def test_yaml_example(tmp_path: Path, rsa_key: KeyPair) -> None:
    pem = pem_file(tmp_path, rsa_key)
    doc = yaml.safe_load(
        f"""
issuers:
  - issuer: {ISSUER}
    audience: [datagate, datagate-staging]
    algorithms: [RS256, PS256]
    public_keys: [{{file: {pem}, kid: idp-2026}}]
    leeway: 10
    required_claims: [exp, jti, iat]
    claims: {{department: org_unit}}
  - issuer: local-dev
    audience: datagate
    algorithms: [HS256]
    secret: {{env: DATAGATE_TEST_SECRET}}
signing_key:
  key: {{env: DATAGATE_TEST_SECRET}}
  issuer: local-dev
"""
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATAGATE_TEST_SECRET", SECRET)
        cfg = build(IdentityConfig, doc, "identity")
    assert cfg.issuers[0].public_keys[0].kid == "idp-2026"
    assert cfg.issuers[0].claims.department == "org_unit"
    assert cfg.signing_issuer() is cfg.issuers[1]


@pytest.mark.parametrize(
    ("issuer", "key", "words"),
    [
        ({"algorithms": ["none"]}, "identity.issuers[0].algorithms[0]", "never allowed"),
        ({"algorithms": ["NONE"]}, "identity.issuers[0].algorithms[0]", "never allowed"),
        ({"algorithms": ["HS1"]}, "identity.issuers[0].algorithms[0]", "unknown algorithm"),
        ({"algorithms": []}, "identity.issuers[0].algorithms", "must not be empty"),
        ({"secret": None}, "identity.issuers[0].secret", "required for HS256"),
        ({"secret": "short"}, "identity.issuers[0].secret", "at least 32 bytes"),
        ({"secret": "x" * 40}, "identity.issuers[0].secret", "HS384 needs a secret of at least 48"),
        (
            {"secret": "-----BEGIN PUBLIC KEY-----" + "A" * 64},
            "identity.issuers[0].secret",
            "never be a public key",
        ),
        ({"algorithms": ["RS256"]}, "identity.issuers[0].secret", "needs an HMAC algorithm"),
        ({"audience": []}, "identity.issuers[0].audience", "must not be empty"),
        ({"audience": ""}, "identity.issuers[0].audience", "must not be empty"),
        ({"audience": None}, "identity.issuers[0].audience", "must not be null"),
        ({"issuer": ""}, "identity.issuers[0].issuer", "must not be empty"),
        ({"leeway": 3600}, "identity.issuers[0].leeway", "<= 300"),
        ({"required_claims": ["jti"]}, "identity.issuers[0].required_claims", "'exp'"),
        ({"colour": "blue"}, "identity.issuers[0].colour", "unknown key"),
        ({"claims": {"subject": ""}}, "identity.issuers[0].claims.subject", "must not be empty"),
        ({"claims": {"dept": "x"}}, "identity.issuers[0].claims.dept", "unknown key"),
    ],
)
def test_bad_issuer_names_the_key(issuer: dict[str, Any], key: str, words: str) -> None:
    message = refused({"issuers": [hs_issuer(**issuer)]})
    assert message.startswith(f"{key}:"), message
    assert words in message


def test_audience_is_required() -> None:
    data = hs_issuer()
    del data["audience"]
    assert refused({"issuers": [data]}) == "identity.issuers[0].audience: is required"


def test_asymmetric_algorithm_without_public_keys() -> None:
    message = refused({"issuers": [hs_issuer(algorithms=["HS256", "ES256"])]})
    assert message.startswith("identity.issuers[0].public_keys:") and "ES256" in message


def test_public_keys_without_asymmetric_algorithm(tmp_path: Path, rsa_key: KeyPair) -> None:
    issuer = hs_issuer(algorithms=["HS256"], public_keys=[{"file": pem_file(tmp_path, rsa_key)}])
    assert refused({"issuers": [issuer]}).startswith("identity.issuers[0].algorithms:")


def test_unreadable_and_bad_pem_files(tmp_path: Path) -> None:
    rs = {"issuer": ISSUER, "audience": AUDIENCE, "algorithms": ["RS256"]}
    missing = refused({"issuers": [{**rs, "public_keys": [{"file": str(tmp_path / "no.pem")}]}]})
    assert missing.startswith("identity.issuers[0].public_keys[0].file: cannot read")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key")
    message = refused({"issuers": [{**rs, "public_keys": [{"file": str(junk)}]}]})
    assert message.startswith("identity.issuers[0].public_keys[0].file:")
    assert "not a PEM public key" in message


def test_public_key_must_fit_an_allowed_algorithm(tmp_path: Path, ec_key: KeyPair) -> None:
    es384 = {"issuer": ISSUER, "audience": AUDIENCE, "algorithms": ["ES384", "RS256"]}
    message = refused(
        {"issuers": [{**es384, "public_keys": [{"file": pem_file(tmp_path, ec_key)}]}]}
    )
    assert message.startswith("identity.issuers[0].public_keys[0].file: the key fits none of")


def test_small_rsa_key_is_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    path = pem_file(tmp_path, KeyPair(small, small.public_key()))
    rs = {"issuer": ISSUER, "audience": AUDIENCE, "algorithms": ["RS256"]}
    message = refused({"issuers": [{**rs, "public_keys": [{"file": path}]}]})
    assert "1024 bits is too small" in message


def test_jwks_needs_exactly_one_source(tmp_path: Path) -> None:
    rs = {"issuer": ISSUER, "audience": AUDIENCE, "algorithms": ["RS256"]}
    assert refused({"issuers": [{**rs, "jwks": {}}]}) == (
        "identity.issuers[0].jwks: give exactly one of file or url"
    )
    both = {"file": str(tmp_path / "k.json"), "url": "https://idp/jwks"}
    assert "exactly one" in refused({"issuers": [{**rs, "jwks": both}]})


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://idp.example/jwks", "expected an https:// URL"),
        ("https://", "expected an https:// URL"),
        ("http://idp.example.gov/jwks", "over https"),
        ("http://10.0.0.1/jwks", "over https"),
    ],
)
def test_jwks_url_must_be_https(url: str, words: str) -> None:
    rs = {"issuer": ISSUER, "audience": AUDIENCE, "algorithms": ["RS256"], "jwks": {"url": url}}
    message = refused({"issuers": [rs]})
    assert message.startswith("identity.issuers[0].jwks.url:") and words in message


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/jwks", "http://localhost/k", "http://[::1]/k"]
)
def test_jwks_url_over_http_on_loopback(url: str) -> None:
    rs = {"issuer": ISSUER, "audience": AUDIENCE, "algorithms": ["RS256"], "jwks": {"url": url}}
    assert identity_config([rs]).issuers[0].jwks is not None


def test_bad_jwks_file(tmp_path: Path, rsa_key: KeyPair) -> None:
    rs = {"issuer": ISSUER, "audience": AUDIENCE, "algorithms": ["RS256"]}
    path = tmp_path / "jwks.json"
    cases = {
        b"not json": "not JSON",
        b'{"nokeys": []}': 'no "keys" list',
        b'{"keys": []}': "has no keys",
        jwks_doc({"kty": "oct", "k": "c2VjcmV0"}): "symmetric (oct) keys",
        jwks_doc({**rsa_key.jwk("a"), "use": "enc"}): "not for signatures",
        jwks_doc(rsa_key.jwk("a", "HS256")): "not an accepted signature algorithm",
        jwks_doc({"kty": "RSA", "kid": "a"}): "cannot be loaded",
    }
    for content, words in cases.items():
        path.write_bytes(content)
        message = refused({"issuers": [{**rs, "jwks": {"file": str(path)}}]})
        assert message.startswith("identity.issuers[0].jwks.file:"), message
        assert words in message, message


def test_duplicate_issuers() -> None:
    message = refused({"issuers": [hs_issuer(), hs_issuer()]})
    assert message.startswith("identity.issuers[1].issuer: duplicate issuer")


def test_no_issuers() -> None:
    assert refused({"issuers": []}) == "identity.issuers: must not be empty"
    assert refused({}) == "identity.issuers: is required"


def test_top_level_limits() -> None:
    assert refused({"issuers": [hs_issuer()], "max_token_length": 10}).startswith(
        "identity.max_token_length: must be >= 512"
    )
    assert refused({"issuers": [hs_issuer()], "token_cache_size": -1}).startswith(
        "identity.token_cache_size:"
    )


@pytest.mark.parametrize(
    ("signing_key", "key", "words"),
    [
        ({"key": SECRET, "issuer": "nobody"}, "identity.signing_key.issuer", "no issuer 'nobody'"),
        ({"key": SECRET, "algorithm": "none"}, "identity.signing_key.algorithm", "never"),
        ({"key": SECRET, "algorithm": "RS256"}, "identity.signing_key.key", "PEM private key"),
        ({"key": "short"}, "identity.signing_key.key", "at least 32 bytes"),
        ({"key": "k" * 64}, "identity.signing_key.key", "differs from the secret"),
        ({"algorithm": "HS256"}, "identity.signing_key.key", "is required"),
        ({"key": {"env": "DATAGATE_NO_SUCH_VAR"}}, "identity.signing_key.key", "is not set"),
    ],
)
def test_bad_signing_key(signing_key: dict[str, Any], key: str, words: str) -> None:
    message = refused({"issuers": [hs_issuer()], "signing_key": signing_key})
    assert message.startswith(f"{key}:") and words in message, message


def test_signing_key_must_fit_its_algorithm(ec_key: KeyPair) -> None:
    message = refused(
        {
            "issuers": [hs_issuer()],
            "signing_key": {"key": ec_key.private_pem, "algorithm": "RS256"},
        }
    )
    assert message == "identity.signing_key.key: the key does not fit RS256"


def test_signing_algorithm_must_be_allowed_for_its_issuer(rsa_key: KeyPair) -> None:
    message = refused(
        {
            "issuers": [hs_issuer(algorithms=["HS256"])],
            "signing_key": {"key": rsa_key.private_pem, "algorithm": "RS256"},
        }
    )
    assert message.startswith("identity.signing_key.algorithm: RS256 is not allowed")


@given(
    st.dictionaries(
        st.sampled_from(["issuer", "audience", "algorithms", "secret", "leeway", "claims", "x"]),
        st.none() | st.integers() | st.text(max_size=5) | st.lists(st.text(max_size=5), max_size=2),
    )
)
def test_any_issuer_mapping_is_accepted_or_refused_with_a_config_error(
    issuer: dict[str, Any],
) -> None:
    try:
        build(IdentityConfig, {"issuers": [issuer]}, "identity")
    except ConfigError as exc:
        assert str(exc).startswith("identity.issuers")
