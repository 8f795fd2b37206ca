"""The authorise stage: sets the decision, refuses with 403 and the decision's reason."""

from __future__ import annotations

import time
from datetime import UTC
from pathlib import Path

import pytest
from aiohttp.test_utils import make_mocked_request

from gateway.context import RequestContext
from gateway.errors import GatewayError
from gateway.policy.decider import Decider, NoGrants
from gateway.stages.authorise import AuthoriseStage
from tests.policy.conftest import MONDAY_10, bundle_with, who


def _ctx(dataset_id: str, principal: object, purpose: str | None, bundle: object) -> RequestContext:
    ctx = RequestContext(
        request=make_mocked_request("GET", "/"),
        request_id="r1",
        ts=MONDAY_10,
        started=time.perf_counter(),
        client_ip="10.0.0.1",
        method="GET",
    )
    ctx.dataset = bundle.catalog.datasets[dataset_id]  # type: ignore[attr-defined]
    ctx.action = "read"
    ctx.principal = principal  # type: ignore[assignment]
    ctx.purpose = purpose
    return ctx


async def test_allow_sets_the_decision(policy_dir: Path) -> None:
    bundle = bundle_with(policy_dir)
    stage = AuthoriseStage(Decider(lambda: bundle, NoGrants(), UTC))
    ctx = _ctx("medical", who("dr-chen", "health", 4), None, bundle)
    await stage(ctx)
    assert ctx.decision is not None and ctx.decision.reason == "owner"


async def test_deny_is_403_with_reason(policy_dir: Path) -> None:
    bundle = bundle_with(policy_dir)
    stage = AuthoriseStage(Decider(lambda: bundle, NoGrants(), UTC))
    ctx = _ctx("medical", who("officer-wang", "public-security", 4), "x", bundle)
    with pytest.raises(GatewayError) as err:
        await stage(ctx)
    assert (err.value.status, err.value.code, err.value.reason) == (
        403,
        "forbidden",
        "sharing_none",
    )
    assert (
        err.value.message == "read on dataset 'medical' refused: "
        "this dataset is shared with its owner department only"
    )
    assert ctx.decision is not None and ctx.decision.effect == "deny"


async def test_monitor_mode_lets_the_request_through(policy_dir: Path) -> None:
    bundle = bundle_with(policy_dir)
    stage = AuthoriseStage(Decider(lambda: bundle, NoGrants(), UTC, monitor=True))
    ctx = _ctx("medical", who("officer-wang", "public-security", 4), "x", bundle)
    await stage(ctx)
    assert ctx.decision is not None and ctx.decision.monitor and ctx.decision.allowed


async def test_token_purpose_is_used_when_none_declared(policy_dir: Path) -> None:
    bundle = bundle_with(policy_dir)
    stage = AuthoriseStage(Decider(lambda: bundle, NoGrants(), UTC))
    from gateway.identity.principal import Principal

    caller = Principal("clerk-zhao", "civil-affairs", 2, purpose="benefit-eligibility")
    ctx = _ctx("population", caller, None, bundle)
    await stage(ctx)
    assert ctx.decision is not None and ctx.decision.reason == "policy_allow"
