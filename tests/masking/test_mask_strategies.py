"""Masking strategies: conventions, hidden characters, formats, idempotence, bad params."""

from __future__ import annotations

import datetime as dt
import re
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import ConfigError
from gateway.masking.strategies import (
    STAR,
    compile_strategy,
    mask_address,
    mask_date,
    mask_email,
    mask_mobile,
    mask_name,
    mask_resident_id,
    pseudonym_key,
    pseudonymise,
)

WHERE = "dataset 'citizens' field 'x'"
digits = st.text(alphabet=string.digits, min_size=1, max_size=24)
cjk = st.text(
    alphabet=st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5), min_size=1, max_size=6
)


def strategy(name: str, **params: object):
    fn = compile_strategy(name, params, "***", WHERE)
    assert fn is not None
    return lambda value: fn(value, b"key")


@pytest.mark.parametrize(
    ("fn", "clear", "masked"),
    [
        (mask_name, "张三", "张*"),
        (mask_name, "欧阳娜娜", "欧阳**"),
        (mask_mobile, "13812345678", "138****5678"),
        (mask_mobile, "+86 13812345678", "+86 138****5678"),
        (mask_mobile, "１３８１２３４５６７８", "138****5678"),
        (mask_resident_id, "110105194912310038", "110105********0038"),
        (mask_address, "北京市朝阳区建国路88号", "北京市朝阳区****"),
        (
            mask_address,
            "新疆维吾尔自治区乌鲁木齐市天山区解放路1号",
            "新疆维吾尔自治区乌鲁木齐市天山区****",
        ),
        (mask_address, "浙江省杭州市西湖小区3栋", "浙江省杭州市****"),
        (mask_email, "dong@example.com", "d***@example.com"),
        (mask_date, "1949-12-31", "1949"),
        (mask_date, "1949年12月31日", "1949"),
    ],
)
def test_reference_conventions(fn, clear: str, masked: str) -> None:
    assert fn(clear) == masked
    assert fn(masked) == masked  # idempotent


def test_bank_card_first6_last4_and_last4() -> None:
    assert strategy("bank_card")("6222021234567890128") == "622202*********0128"
    assert strategy("bank_card", show="last4")("6222021234567890128") == STAR * 15 + "0128"


def test_keep_last_redact_bucket() -> None:
    assert strategy("keep_last", n=4)("ABCDEFGH") == "****EFGH"
    assert strategy("keep_last", n=4)("abc") == "***"
    assert strategy("redact")("secret") == "***"
    assert strategy("redact", token="[hidden]")("secret") == "[hidden]"
    by_size = strategy("bucket", size=5000)
    assert by_size(12345) == "10000-15000"
    assert by_size("12,345") == "10000-15000"
    assert by_size("10000-15000") == "10000-15000"
    assert by_size("n/a") == "***"
    by_edges = strategy("bucket", edges=[0, 3000, 8000])
    assert [by_edges(v) for v in (-1, 0, 2999, 3000, 9000)] == [
        "<0",
        "0-3000",
        "0-3000",
        "3000-8000",
        ">=8000",
    ]
    assert by_edges(">=8000") == ">=8000"


def test_pseudonym_is_stable_per_consumer_and_unlinkable_across() -> None:
    a, b = pseudonym_key("s", "consumer-a"), pseudonym_key("s", "consumer-b")
    assert pseudonymise("110105194912310038", a) == pseudonymise("110105194912310038", a)
    assert pseudonymise("110105194912310038", a) != pseudonymise("110105194912310038", b)
    assert pseudonym_key("other", "consumer-a") != a
    once = pseudonymise("x", a)
    assert once.startswith("pn_") and len(once) == 35
    assert pseudonymise(once, a) == once


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("shuffle", {}, "unknown strategy 'shuffle'"),
        ("bank_card", {"show": "first4"}, "show must be"),
        ("keep_last", {"n": -1}, "n must be an integer"),
        ("keep_last", {"n": "4"}, "n must be an integer"),
        ("bucket", {}, "exactly one of size or edges"),
        ("bucket", {"size": 0}, "size must be a positive number"),
        ("bucket", {"edges": [5, 1]}, "edges must be increasing"),
        ("name", {"keep": 2}, "unknown params keep"),
        ("remove", {"x": 1}, "takes no params"),
        ("redact", {"token": ""}, "token must be a non-empty string"),
    ],
)
def test_bad_strategy_names_and_params_name_the_dataset_and_field(name, params, message) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        compile_strategy(name, params, "***", WHERE)
    assert str(err.value).startswith(WHERE)


@given(digits)
def test_mobile_hides_the_middle_digits(value: str) -> None:
    out = mask_mobile(value)
    assert len(out) == len(value)
    shown = [i for i, c in enumerate(out) if c != STAR]
    if len(value) <= 7:
        assert not shown
    else:
        cut = 2 if len(value) > 11 and value.startswith("86") else 0
        assert shown == [*range(cut + 3), *range(len(value) - 4, len(value))]
    assert mask_mobile(out) == out


@given(st.text(alphabet=string.digits + "Xx", min_size=1, max_size=30))
def test_resident_id_keeps_first6_last4_only(value: str) -> None:
    out = mask_resident_id(value)
    assert len(out) == len(value)
    if len(value) > 10:
        assert out[:6] == value[:6] and out[-4:] == value[-4:]
        assert set(out[6:-4]) == {STAR}
    else:
        assert set(out) == {STAR}
    assert mask_resident_id(out) == out


@given(
    st.from_regex(r"[6][0-9]{15,18}", fullmatch=True), st.sampled_from(["first6_last4", "last4"])
)
def test_bank_card_never_shows_the_middle(value: str, show: str) -> None:
    fn = strategy("bank_card", show=show)
    out = fn(value)
    first = 6 if show == "first6_last4" else 0
    assert out[:first] == value[:first] and out[-4:] == value[-4:]
    assert set(out[first:-4]) == {STAR}
    assert fn(out) == out


@given(cjk, cjk)
def test_name_keeps_only_the_surname(surname: str, given_name: str) -> None:
    value = surname[:1] + given_name
    out = mask_name(value)
    keep = len(out) - out.count(STAR)
    assert out[:keep] == value[:keep] and keep <= 2
    assert set(out[keep:]) <= {STAR}
    assert mask_name(out) == out


@given(st.from_regex(r"[a-z0-9._]{1,20}@[a-z0-9]{1,10}\.(com|cn|org)", fullmatch=True))
def test_email_shows_only_the_first_character(value: str) -> None:
    out = mask_email(value)
    local, domain = value.split("@")
    assert out == f"{local[0]}***@{domain}"
    assert mask_email(out) == out


@given(st.text(max_size=40))
def test_address_is_a_prefix_plus_stars(value: str) -> None:
    out = mask_address(value)
    kept = out.removesuffix("****")
    assert value.startswith(kept)
    assert mask_address(out) == out


@given(
    st.dates(dt.date(1000, 1, 1), dt.date(2999, 12, 31)),
    st.sampled_from(["%Y-%m-%d", "%Y%m%d", "%Y/%m/%d"]),
)
def test_date_keeps_the_year_only(day, fmt: str) -> None:
    out = mask_date(day.strftime(fmt))
    assert out == str(day.year)
    assert mask_date(out) == out


@given(st.integers(min_value=-(10**9), max_value=10**9), st.integers(min_value=1, max_value=10**6))
def test_bucket_is_a_range_holding_the_value(value: int, size: int) -> None:
    fn = strategy("bucket", size=size)
    out = fn(value)
    m = re.fullmatch(r"(-?[0-9]+)-(-?[0-9]+)", out)
    assert m is not None
    assert int(m.group(1)) <= value < int(m.group(2)) == int(m.group(1)) + size
    assert fn(out) == out
