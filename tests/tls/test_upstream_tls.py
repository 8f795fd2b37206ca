"""TLS to upstreams on loopback: verified against the configured CA bundle, with a client
certificate for upstreams that require one; a failed verification is 502 and nothing is
served; `verify: false` works only with a warning at start."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import orjson
import structlog

from gateway import logs
from tests.gateway.conftest import running_gateway
from tests.tls.conftest import (
    ID_CARD,
    MASKED_ID_CARD,
    RecordsUpstream,
    server_context,
    serving,
    tls_config,
)
from tests.tls.pki import PKI


async def fetch(config: Any, path: str = "/api/secret/1") -> tuple[int, dict[str, Any]]:
    async with (
        running_gateway(config) as gw,
        gw.session.get(gw.url + path, headers=gw.auth(clearance=2)) as resp,
    ):
        return resp.status, orjson.loads(await resp.read())


async def test_an_upstream_verified_against_its_ca_answers_through_the_pipeline(
    tmp_path: Path, pki: PKI
) -> None:
    async with serving(RecordsUpstream(), server_context(pki)) as up:
        config = tls_config(tmp_path, up.url, upstream_tls={"ca_file": str(pki.ca.file)})
        status, body = await fetch(config)
    assert status == 200
    assert body["id_card"] == MASKED_ID_CARD
    assert [(s.path, s.secure) for s in up.seen] == [("/api/secret/1", True)]


async def test_an_upstream_with_a_certificate_from_another_ca_is_refused(
    tmp_path: Path, pki: PKI
) -> None:
    async with serving(RecordsUpstream(), server_context(pki, other=True)) as up:
        config = tls_config(tmp_path, up.url, upstream_tls={"ca_file": str(pki.ca.file)})
        status, body = await fetch(config)
    assert (status, body["error"]) == (502, "upstream_error")
    assert body["message"] == (
        "the upstream failed: the upstream's certificate failed verification "
        "(unable to get local issuer certificate)"
    )
    assert ID_CARD not in str(body)
    assert up.seen == [], "the handshake failed before any request was sent"


async def test_without_a_ca_file_the_system_cas_are_used_never_no_verification(
    tmp_path: Path, pki: PKI
) -> None:
    async with serving(RecordsUpstream(), server_context(pki)) as up:
        status, body = await fetch(tls_config(tmp_path, up.url))  # no tls section
    assert (status, body["error"]) == (502, "upstream_error")
    assert up.seen == []


async def test_upstream_mtls_presents_the_gateways_client_certificate(
    tmp_path: Path, pki: PKI
) -> None:
    context = server_context(pki, client_ca=pki.ca.file)
    async with serving(RecordsUpstream(), context) as up:
        without = tls_config(tmp_path, up.url, upstream_tls={"ca_file": str(pki.ca.file)})
        status, body = await fetch(without)
        assert (status, body["error"]) == (502, "upstream_error")
        assert up.seen == []
        with_cert = tls_config(
            tmp_path,
            up.url,
            upstream_tls={
                "ca_file": str(pki.ca.file),
                "cert_file": str(pki.gateway_client.cert),
                "key_file": str(pki.gateway_client.key),
            },
        )
        status, body = await fetch(with_cert)
    assert status == 200 and body["id_card"] == MASKED_ID_CARD
    (seen,) = up.seen
    assert (("commonName", "datagate-gateway"),) in seen.client_subject


async def test_verify_false_works_but_warns_at_start(tmp_path: Path, pki: PKI) -> None:
    stream = io.BytesIO()
    try:
        logs.configure("info", stream)
        async with serving(RecordsUpstream(), server_context(pki, other=True)) as up:
            status, _ = await fetch(tls_config(tmp_path, up.url, upstream_tls={"verify": False}))
        logs.flush()
    finally:
        structlog.reset_defaults()
    assert status == 200
    warnings = [
        line
        for line in map(orjson.loads, stream.getvalue().splitlines())
        if line["event"] == "upstream_tls_unverified"
    ]
    assert len(warnings) == 1
    assert warnings[0]["level"] == "warning" and warnings[0]["upstream"] == "up"
    assert warnings[0]["url"] == up.url
