"""The authenticate stage: principal and purpose from the verified token, never from headers."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from gateway.context import RequestContext
from gateway.errors import GatewayError
from gateway.identity.headers import IDENTITY_HEADERS
from gateway.identity.verifier import Verifier
from gateway.stages.authenticate import AuthenticateStage
from tests.identity.helpers import NOW, Clock, claims, hs_issuer, identity_config, sign


@pytest.fixture
def stage(clock: Clock) -> AuthenticateStage:
    verifier = Verifier(identity_config([hs_issuer()], realm="data"), None, clock=clock)
    return AuthenticateStage(verifier)


def context(*headers: tuple[str, str]) -> RequestContext:
    request = make_mocked_request("GET", "/population/1", headers=CIMultiDict(headers))
    return RequestContext(
        request=request, request_id="r1", ts=NOW, started=0.0, client_ip="10.0.0.1", method="GET"
    )


async def run(stage: AuthenticateStage, *headers: tuple[str, str]) -> RequestContext:
    ctx = context(*headers)
    await stage(ctx)
    return ctx


async def refusal(stage: AuthenticateStage, *headers: tuple[str, str]) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        await run(stage, *headers)
    return info.value


def test_name(stage: AuthenticateStage) -> None:
    assert stage.name == "authenticate"


async def test_principal_comes_from_the_token_not_identity_headers(
    stage: AuthenticateStage,
) -> None:
    spoofed = [(name, "mallory") for name in IDENTITY_HEADERS]
    ctx = await run(stage, ("Authorization", f"Bearer {sign(claims())}"), *spoofed)
    assert ctx.principal is not None
    assert (ctx.principal.subject, ctx.principal.department) == ("alice", "health")
    assert ctx.purpose is None


def test_identity_headers_cover_the_usual_spoofing_names() -> None:
    for name in (
        "x-user",
        "x-department",
        "x-forwarded-user",
        "x-remote-user",
        "x-clearance",
        "x-roles",
        "x-principal",
    ):
        assert name in IDENTITY_HEADERS
    assert all(name == name.lower() for name in IDENTITY_HEADERS)
    assert len(set(IDENTITY_HEADERS)) == len(IDENTITY_HEADERS)


async def test_missing_token(stage: AuthenticateStage) -> None:
    exc = await refusal(stage, ("X-User", "admin"))
    assert (exc.status, exc.reason) == (401, "missing")
    assert exc.headers == {"WWW-Authenticate": 'Bearer realm="data"'}


async def test_invalid_token_challenge(stage: AuthenticateStage) -> None:
    exc = await refusal(stage, ("Authorization", "Bearer x.y.z"))
    assert exc.headers == {"WWW-Authenticate": 'Bearer realm="data", error="invalid_token"'}
    assert exc.body("r1") == {
        "error": "unauthenticated",
        "message": exc.message,
        "reason": "malformed",
        "request_id": "r1",
    }


async def test_two_authorization_headers_are_refused(stage: AuthenticateStage) -> None:
    token = sign(claims())
    exc = await refusal(stage, ("Authorization", f"Bearer {token}"), ("Authorization", "Bearer x"))
    assert (exc.status, exc.reason) == (401, "malformed")


async def test_purpose_from_the_token_claim(stage: AuthenticateStage) -> None:
    ctx = await run(stage, ("Authorization", f"Bearer {sign(claims(purpose='audit'))}"))
    assert ctx.purpose == "audit"


async def test_purpose_header_allowed_by_the_token(stage: AuthenticateStage) -> None:
    token = sign(claims(purpose="audit", purposes=["research", "statistics"]))
    auth = ("Authorization", f"Bearer {token}")
    assert (await run(stage, auth, ("X-Purpose", "research"))).purpose == "research"
    assert (await run(stage, auth, ("X-Purpose", " statistics "))).purpose == "statistics"
    assert (await run(stage, auth, ("X-Purpose", "audit"))).purpose == "audit"
    assert (await run(stage, auth, ("X-Purpose", ""))).purpose == "audit"


async def test_purpose_header_not_allowed_by_the_token(stage: AuthenticateStage) -> None:
    token = sign(claims(purposes=["research"]))
    exc = await refusal(stage, ("Authorization", f"Bearer {token}"), ("X-Purpose", "marketing"))
    assert (exc.status, exc.code, exc.reason) == (403, "forbidden", "purpose_not_allowed")
    bare = sign(claims())
    exc = await refusal(stage, ("Authorization", f"Bearer {bare}"), ("X-Purpose", "research"))
    assert exc.reason == "purpose_not_allowed"


async def test_two_purpose_headers_are_refused(stage: AuthenticateStage) -> None:
    token = sign(claims(purposes=["a", "b"]))
    exc = await refusal(
        stage, ("Authorization", f"Bearer {token}"), ("X-Purpose", "a"), ("X-Purpose", "b")
    )
    assert (exc.status, exc.reason) == (400, "ambiguous_purpose")


async def test_configured_purpose_header(clock: Clock) -> None:
    cfg = identity_config([hs_issuer()], purpose_header="X-Data-Purpose")
    stage = AuthenticateStage(Verifier(cfg, None, clock=clock))
    auth = ("Authorization", f"Bearer {sign(claims(purposes=['a']))}")
    assert (await run(stage, auth, ("X-Data-Purpose", "a"))).purpose == "a"
    assert (await run(stage, auth, ("X-Purpose", "zzz"))).purpose is None
