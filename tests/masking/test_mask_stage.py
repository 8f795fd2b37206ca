"""The mask stage: query guard before forwarding, body transforms after, and the context."""

from __future__ import annotations

import dataclasses

import orjson
import pytest
from aiohttp.test_utils import make_mocked_request

from gateway.context import RequestContext
from gateway.errors import ConfigError, GatewayError
from gateway.identity.principal import Principal
from gateway.masking.errors import MaskingError
from gateway.stages.mask import MaskStage, effective_clearance
from tests.masking.mask_helpers import make_config, make_dataset


@dataclasses.dataclass
class Decision:
    mask_clearance: int | None = None


def context(
    url: str = "/api/citizens/", clearance: int | None = 2, method: str = "GET", **kw
) -> RequestContext:
    ctx = RequestContext(
        request=make_mocked_request(method, url),
        request_id="req-1",
        ts=0.0,
        started=0.0,
        client_ip="10.0.0.1",
        method=method,
        dataset=make_dataset(),
        query=url.partition("?")[2],  # as the route stage leaves it
    )
    if clearance is not None:
        ctx.principal = Principal(
            subject="alice", department="civil", clearance=clearance, client_id="app-1"
        )
    for name, value in kw.items():
        setattr(ctx, name, value)
    return ctx


JSON = {"Content-Type": "application/json"}


@pytest.fixture
def stage() -> MaskStage:
    return MaskStage(make_config())


def test_stage_name(stage: MaskStage) -> None:
    assert stage.name == "mask"


async def test_query_on_a_masked_field_is_forbidden(stage: MaskStage) -> None:
    with pytest.raises(GatewayError) as err:
        await stage(context("/api/citizens/?id_card=110105194912310038"))
    assert (err.value.code, err.value.status, err.value.reason) == (
        "forbidden",
        403,
        "masked_field_query",
    )
    assert "110105" not in err.value.message


async def test_query_allowed_when_the_field_is_visible(stage: MaskStage) -> None:
    declared = make_dataset(query_params={"page": "integer", "id_card": "exact"})
    url = "/api/citizens/?id_card=110105194912310038"
    await stage(context(url, clearance=3, dataset=declared))
    await stage(context("/api/citizens/?page=2"))
    await stage(context("/api/citizens/?id_card=1", dataset=None))


async def test_a_visible_field_is_still_an_undeclared_parameter(stage: MaskStage) -> None:
    """Clearance 3 sees id_card but not diagnosis: only declared parameters pass."""
    with pytest.raises(GatewayError) as err:
        await stage(context("/api/citizens/?id_card=110105194912310038", clearance=3))
    assert (err.value.status, err.value.reason) == (403, "undeclared_query_param")
    assert "page, size" in err.value.message


def test_effective_clearance() -> None:
    assert effective_clearance(context(clearance=2)) == 2
    assert effective_clearance(context(clearance=2, decision=Decision(3))) == 3
    assert effective_clearance(context(clearance=2, decision=Decision(None))) == 2
    assert effective_clearance(context(clearance=None)) == 1


async def test_a_grant_raises_the_mask_clearance(stage: MaskStage) -> None:
    ctx = context(
        "/api/citizens/?id_card=1",
        decision=Decision(mask_clearance=3),
        dataset=make_dataset(query_params={"id_card": "exact"}),
    )
    await stage(ctx)
    transform = stage.body_transform(ctx, 200, JSON)
    assert transform is not None
    out = (
        transform.feed(orjson.dumps({"id_card": "11010519491231002X", "diagnosis": "x"}))
        + transform.finish()
    )
    assert orjson.loads(out) == {"id_card": "11010519491231002X"}


def test_body_transform_masks_and_fills_the_context(stage: MaskStage) -> None:
    ctx = context()
    transform = stage.body_transform(ctx, 200, {**JSON, "Content-Length": "200"})
    assert transform is not None and transform.content_type == "application/json"
    body = orjson.dumps([{"name": "张三", "remarks": "电话13812345678", "diagnosis": "x"}]).ljust(
        200
    )
    out = transform.feed(body) + transform.finish()
    assert orjson.loads(out) == [{"name": "张*", "remarks": "电话138****5678"}]
    assert ctx.masked_fields == {"name": 1, "diagnosis": 1}
    assert ctx.findings == {"mobile": 1}
    assert ctx.records_out == 1


def test_pass_through_when_nothing_to_mask(stage: MaskStage) -> None:
    assert stage.body_transform(context(clearance=4), 200, {"Content-Type": "image/png"}) is None
    public = make_dataset(level=1, fields=[])
    assert (
        stage.body_transform(context(dataset=public), 200, {"Content-Type": "text/plain"}) is None
    )
    assert stage.body_transform(context(dataset=None), 200, JSON) is None


@pytest.mark.parametrize(("method", "status"), [("HEAD", 200), ("GET", 204), ("GET", 304)])
def test_no_body_responses(stage: MaskStage, method: str, status: int) -> None:
    assert stage.body_transform(context(method=method), status, JSON) is None


def test_partial_content_and_unknown_types_fail_closed(stage: MaskStage) -> None:
    with pytest.raises(MaskingError) as err:
        stage.body_transform(context(), 206, JSON)
    assert err.value.reason == "partial_content"
    assert stage.gateway_error(err.value).code == "upstream_error"
    with pytest.raises(MaskingError) as err:
        stage.body_transform(context(), 200, {"Content-Type": "text/plain"})
    assert err.value.reason == "unsupported_content_type"
    with pytest.raises(MaskingError) as err:
        stage.body_transform(context(), 200, {**JSON, "Content-Length": "-1"})
    assert err.value.reason == "bad_length"


def test_error_responses_are_masked_too(stage: MaskStage) -> None:
    transform = stage.body_transform(context(), 500, JSON)
    assert transform is not None
    out = transform.feed(b'{"error": "no row for 11010519491231002X"}') + transform.finish()
    assert b"11010519491231002X" not in out


def test_pseudonyms_differ_per_consumer(stage: MaskStage) -> None:
    outputs = []
    for client in ("app-1", "app-2"):
        ctx = context()
        ctx.principal = Principal(subject="s", department="d", clearance=2, client_id=client)
        transform = stage.body_transform(ctx, 200, JSON)
        assert transform is not None
        outputs.append(transform.feed(b'{"member_id": "M-1"}') + transform.finish())
    assert outputs[0] != outputs[1]


def test_oversize_maps_to_413_by_default() -> None:
    stage = MaskStage(make_config(max_json_document_bytes=1024))
    transform = stage.body_transform(context(), 200, JSON)
    assert transform is not None
    with pytest.raises(MaskingError) as err:
        transform.feed(orjson.dumps({"blob": "x" * 4096}))
    error = stage.gateway_error(err.value)
    assert (error.code, error.status, error.reason) == ("payload_too_large", 413, "body_too_large")


def test_pseudonym_without_secret_is_a_config_error() -> None:
    stage = MaskStage(make_config(pseudonym_secret=None))
    with pytest.raises(ConfigError, match="pseudonym_secret"):
        stage.check([make_dataset()])
    with pytest.raises(ConfigError, match="pseudonym_secret"):
        stage.body_transform(context(), 200, JSON)
