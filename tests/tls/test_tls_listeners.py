"""TLS on the data and admin listeners, with real handshakes on loopback: HTTPS through the
whole pipeline, plain HTTP refused, client certificates (mTLS) checked at the handshake, the
verified subject as a policy attribute, and tokens bound to their certificate (RFC 8705)."""

from __future__ import annotations

import ssl
import time
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import orjson
import pytest

from tests.gateway.conftest import SECRET, RunningGateway, running_gateway
from tests.tls.conftest import MASKED_ID_CARD, RecordsUpstream, listener_tls, tls_config
from tests.tls.pki import PKI, client_context

SPOOFED_HEADERS = (
    "X-SSL-Client-S-DN",
    "X-SSL-Client-DN",
    "X-SSL-Client-Cert",
    "X-SSL-Client-Verify",
    "X-Client-Cert",
    "X-Client-DN",
    "X-Forwarded-Client-Cert",
)


def mtls(pki: PKI, mode: str, **extra: Any) -> dict[str, Any]:
    return {"tls": listener_tls(pki, client_auth=mode, client_ca_file=str(pki.ca.file), **extra)}


async def call(
    gw: RunningGateway,
    path: str,
    context: ssl.SSLContext | None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    auth = {"Authorization": f"Bearer {token or gw.token()}"}
    async with gw.session.get(
        gw.url + path, ssl=context or False, headers={**auth, **(headers or {})}
    ) as resp:
        return resp.status, orjson.loads(await resp.read())


def audit_events(gw: RunningGateway) -> list[dict[str, Any]]:
    path = gw.gateway.config.audit.path
    return [
        e
        for e in (orjson.loads(line) for line in path.read_bytes().splitlines())
        if e.get("type") == "access"
    ]


async def test_https_works_end_to_end_through_the_whole_pipeline(
    tmp_path: Path, pki: PKI, upstream: RecordsUpstream
) -> None:
    config = tls_config(
        tmp_path, upstream.url, server={"tls": listener_tls(pki)}, admin={"tls": listener_tls(pki)}
    )
    context = client_context(pki.ca.file)
    async with running_gateway(config) as gw:
        assert gw.url.startswith("https://127.0.0.1:")
        assert gw.admin_url.startswith("https://127.0.0.1:")
        async with gw.session.get(
            gw.url + "/api/secret/1", ssl=context, headers=gw.auth(clearance=2)
        ) as resp:
            assert resp.status == 200
            body = await resp.json()
            assert body["id_card"] == MASKED_ID_CARD  # a level-3 field, clearance 2
            assert resp.headers["X-Request-ID"]
        async with gw.session.get(gw.admin_url + "/readyz", ssl=context) as resp:
            assert resp.status == 200 and (await resp.json())["ready"] is True
    assert [s.path for s in upstream.seen] == ["/api/secret/1"]
    (event,) = audit_events(gw)
    assert event["status"] == 200 and event["cert_subject"] is None


async def test_plain_http_to_tls_listeners_gets_no_answer(
    tmp_path: Path, pki: PKI, upstream: RecordsUpstream
) -> None:
    config = tls_config(
        tmp_path, upstream.url, server={"tls": listener_tls(pki)}, admin={"tls": listener_tls(pki)}
    )
    async with running_gateway(config) as gw:
        data_port, admin_port = (listener.bound_port for listener in gw.gateway.listeners)
        for port, path in ((data_port, "/api/secret/1"), (admin_port, "/readyz")):
            with pytest.raises(aiohttp.ClientError):
                async with gw.session.get(f"http://127.0.0.1:{port}{path}", headers=gw.auth()):
                    pass
    assert upstream.seen == []


async def test_min_version_refuses_older_clients(
    tmp_path: Path, pki: PKI, upstream: RecordsUpstream
) -> None:
    config = tls_config(tmp_path, upstream.url, server={"tls": listener_tls(pki, min_version=1.3)})
    async with running_gateway(config) as gw:
        old = client_context(pki.ca.file, maximum=ssl.TLSVersion.TLSv1_2)
        with pytest.raises(aiohttp.ClientError):
            await call(gw, "/api/open/1", old)
        status, _ = await call(gw, "/api/open/1", client_context(pki.ca.file))
        assert status == 200
    assert len(upstream.seen) == 1


async def test_an_encrypted_key_is_opened_with_its_password(
    tmp_path: Path, pki: PKI, upstream: RecordsUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = pki.ca.server("encrypted-listener", password="s3cret")
    monkeypatch.setenv("DATAGATE_TEST_TLS_PASSWORD", "s3cret")
    tls = {
        "cert_file": str(server.cert),
        "key_file": str(server.key),
        "key_password": {"env": "DATAGATE_TEST_TLS_PASSWORD"},
    }
    config = tls_config(tmp_path, upstream.url, server={"tls": tls})
    assert "s3cret" not in repr(config)
    async with running_gateway(config) as gw:
        status, _ = await call(gw, "/api/open/1", client_context(pki.ca.file))
        assert status == 200


async def test_mtls_required_refuses_clients_without_a_valid_certificate_at_the_handshake(
    tmp_path: Path, pki: PKI, upstream: RecordsUpstream
) -> None:
    config = tls_config(tmp_path, upstream.url, server=mtls(pki, "required"))
    async with running_gateway(config) as gw:
        for refused in (
            client_context(pki.ca.file),  # no certificate
            client_context(pki.ca.file, pki.rogue),  # the same subject, from another CA
        ):
            with pytest.raises(aiohttp.ClientError):
                await call(gw, "/api/open/1", refused)
        assert upstream.seen == []
        status, body = await call(gw, "/api/open/1", client_context(pki.ca.file, pki.client))
        assert status == 200, body
    assert len(upstream.seen) == 1
    (event,) = audit_events(gw)
    assert event["cert_subject"] == "CN=etl-01,O=Tax Bureau,C=CN" == pki.client.subject


async def test_the_verified_certificate_subject_reaches_policy_and_headers_do_not(
    tmp_path: Path, pki: PKI, upstream: RecordsUpstream
) -> None:
    rows = (
        f'p, "cert:{pki.client.subject}", open, export, allow\n'
        f'p, "cert:{pki.colleague.subject}", open, *, deny\n'
    )
    config = tls_config(tmp_path, upstream.url, rows, server=mtls(pki, "optional"))
    with_cert = client_context(pki.ca.file, pki.client)
    colleague = client_context(pki.ca.file, pki.colleague)
    without = client_context(pki.ca.file)
    spoofed = {name: pki.client.subject for name in SPOOFED_HEADERS}
    async with running_gateway(config) as gw:
        token = gw.token(sub="etl")
        # Export is never implicit: only the row on the certificate subject allows it.
        status, _ = await call(gw, "/api/open/items.csv", with_cert, token, spoofed)
        assert status == 200
        assert not {h.lower() for h in SPOOFED_HEADERS} & {
            h.lower() for h in upstream.seen[-1].headers
        }, "client-sent certificate headers never reach the upstream"
        # The same token without the certificate: the cached allow must not be reused.
        status, body = await call(gw, "/api/open/items.csv", without, token)
        assert (status, body["reason"]) == (403, "default_deny")
        status, body = await call(gw, "/api/open/items.csv", without, token, spoofed)
        assert (status, body["reason"]) == (403, "default_deny")
        status, body = await call(gw, "/api/open/items.csv", colleague, token)
        assert (status, body["reason"]) == (403, "explicit_deny")
        # The same subject from another CA does not get past the handshake, optional or not.
        with pytest.raises(aiohttp.ClientError):
            await call(gw, "/api/open/items.csv", client_context(pki.ca.file, pki.rogue), token)
        # A deny row on a certificate subject refuses only connections with that certificate.
        status, body = await call(gw, "/api/open/1", colleague, token)
        assert (status, body["reason"]) == (403, "explicit_deny")
        status, _ = await call(gw, "/api/open/1", without, token)
        assert status == 200
    assert len(upstream.seen) == 2
    subjects = [e["cert_subject"] for e in audit_events(gw)]
    client, colleague = pki.client.subject, pki.colleague.subject
    assert subjects == [client, None, None, colleague, colleague, None]


def bound_token(gw: RunningGateway, cnf: dict[str, str]) -> str:
    now = int(time.time())
    claims = {
        "iss": "tests",
        "aud": "datagate",
        "sub": "etl",
        "dept": "market-regulation",
        "clearance": 1,
        "jti": f"jti-{now}",
        "exp": now + 300,
        "cnf": cnf,
    }
    return jwt.encode(claims, SECRET, algorithm="HS256")


async def test_a_token_bound_to_a_certificate_works_only_with_that_certificate(
    tmp_path: Path, pki: PKI, upstream: RecordsUpstream
) -> None:
    config = tls_config(tmp_path, upstream.url, server=mtls(pki, "optional"))
    async with running_gateway(config) as gw:
        bound = gw.token(sub="etl", cert_thumbprint=pki.client.thumbprint)
        status, _ = await call(gw, "/api/open/1", client_context(pki.ca.file, pki.client), bound)
        assert status == 200
        for context, reason in (
            (client_context(pki.ca.file, pki.colleague), "certificate_mismatch"),
            (client_context(pki.ca.file), "certificate_required"),
        ):
            status, body = await call(gw, "/api/open/1", context, bound)
            assert (status, body["error"], body["reason"]) == (401, "unauthenticated", reason)
        other_method = bound_token(gw, {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"})
        status, body = await call(gw, "/api/open/1", client_context(pki.ca.file), other_method)
        assert (status, body["reason"]) == (401, "bad_claims")
        assert body["message"] == (
            "the token's cnf claim must hold an x5t#S256 certificate thumbprint"
        )
    assert len(upstream.seen) == 1


async def test_a_bound_token_is_refused_where_no_certificate_can_be_presented(
    tmp_path: Path, upstream: RecordsUpstream, pki: PKI
) -> None:
    config = tls_config(tmp_path, upstream.url)  # plain HTTP
    async with running_gateway(config) as gw:
        bound = gw.token(sub="etl", cert_thumbprint=pki.client.thumbprint)
        status, body = await call(gw, "/api/open/1", None, bound)
        assert (status, body["reason"]) == (401, "certificate_required")
    assert upstream.seen == []


async def test_require_bound_tokens_refuses_unbound_ones(
    tmp_path: Path, pki: PKI, upstream: RecordsUpstream
) -> None:
    config = tls_config(
        tmp_path, upstream.url, server=mtls(pki, "required", require_bound_tokens=True)
    )
    context = client_context(pki.ca.file, pki.client)
    async with running_gateway(config) as gw:
        status, body = await call(gw, "/api/open/1", context, gw.token(sub="etl"))
        assert (status, body["reason"]) == (401, "unbound_token")
        bound = gw.token(sub="etl", cert_thumbprint=pki.client.thumbprint)
        status, _ = await call(gw, "/api/open/1", context, bound)
        assert status == 200
    assert len(upstream.seen) == 1


async def test_the_admin_listener_can_require_client_certificates(
    tmp_path: Path, pki: PKI, upstream: RecordsUpstream
) -> None:
    config = tls_config(tmp_path, upstream.url, admin=mtls(pki, "required"))
    async with running_gateway(config) as gw:
        soc = gw.auth(sub="soc1", dept="soc", clearance=4, roles=["soc"])
        with pytest.raises(aiohttp.ClientError):
            async with gw.session.get(
                gw.admin_url + "/incidents", ssl=client_context(pki.ca.file), headers=soc
            ):
                pass
        context = client_context(pki.ca.file, pki.client)
        async with gw.session.get(gw.admin_url + "/incidents", ssl=context, headers=soc) as resp:
            assert resp.status == 200
        bound = gw.token(
            sub="soc1", dept="soc", clearance=4, roles=["soc"], cert_thumbprint="x" * 43
        )
        headers = {"Authorization": f"Bearer {bound}"}
        async with gw.session.get(gw.admin_url + "/incidents", ssl=context, headers=headers) as r:
            assert r.status == 401
            assert (await r.json())["reason"] == "certificate_mismatch"


async def test_one_keep_alive_connection_binds_each_token_on_its_own(
    tmp_path: Path, pki: PKI, upstream: RecordsUpstream
) -> None:
    config = tls_config(tmp_path, upstream.url, server=mtls(pki, "optional"))
    context = client_context(pki.ca.file, pki.client)
    opened: list[object] = []
    trace = aiohttp.TraceConfig()

    async def on_connection(*_: object) -> None:
        opened.append(_)

    trace.on_connection_create_end.append(on_connection)
    async with running_gateway(config) as gw:
        ours = gw.token(sub="etl", cert_thumbprint=pki.client.thumbprint)
        theirs = gw.token(sub="etl-2", cert_thumbprint=pki.colleague.thumbprint)
        plain = gw.token(sub="analyst")
        connector = aiohttp.TCPConnector(limit=1)  # every request on the one connection
        async with aiohttp.ClientSession(connector=connector, trace_configs=[trace]) as session:
            statuses = []
            for token in (ours, theirs, ours, plain, theirs):
                headers = {"Authorization": f"Bearer {token}"}
                async with session.get(
                    gw.url + "/api/open/1", ssl=context, headers=headers
                ) as resp:
                    await resp.read()
                    statuses.append(resp.status)
    assert statuses == [200, 401, 200, 200, 401]
    assert len(opened) == 1, "all on one connection"
    accepted = [(e["principal"], e["cert_subject"]) for e in audit_events(gw) if e["status"] == 200]
    assert accepted == [("etl", pki.client.subject)] * 2 + [("analyst", pki.client.subject)]
