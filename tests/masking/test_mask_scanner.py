"""The identifier scanner: kinds, checksums, boundaries, full-width digits, JSON escapes."""

from __future__ import annotations

import random

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.masking import identifiers
from gateway.masking.scanner import classify, kinds_in, scan_bytes, scan_text

FULL_WIDTH = str.maketrans("0123456789X", "０１２３４５６７８９Ｘ")


def test_reference_examples_pass_their_checksums() -> None:
    assert identifiers.is_resident_id("11010519491231002X")
    assert identifiers.is_resident_id("440524188001010014")
    assert identifiers.is_uscc("91350100M000100Y43")
    assert identifiers.is_uscc("91512081MA62K0260E")
    assert identifiers.luhn_ok("6222021234567890128")


@pytest.mark.parametrize(
    ("token", "kind"),
    [
        ("11010519491231002X", "resident_id"),
        ("11010519491231002x", "resident_id"),
        ("91350100M000100Y43", "uscc"),
        ("13812345678", "mobile"),
        ("8613812345678", "mobile"),
        ("6222021234567890128", "bank_card"),
        ("11010519491231002Y", None),  # wrong check character
        ("110105194902300011", None),  # 30 February: no real birth date
        ("12812345678", None),  # not a mobile prefix
        ("6222021234567890127", None),  # fails Luhn
        ("91350100M000100Y44", None),
    ],
)
def test_classify(token: str, kind: str | None) -> None:
    assert classify(token) == kind


def test_ids_embedded_in_chinese_text_without_spaces() -> None:
    counts: dict[str, int] = {}
    out = scan_text("身份证号11010519491231002X手机13812345678邮箱dong@example.com。", counts)
    assert out == "身份证号110105********002X手机138****5678邮箱d***@example.com。"
    assert counts == {"resident_id": 1, "mobile": 1, "email": 1}


def test_full_width_digits_are_normalised() -> None:
    counts: dict[str, int] = {}
    text = (
        "证件号"
        + "11010519491231002X".translate(FULL_WIDTH)
        + "，电话"
        + "13812345678".translate(FULL_WIDTH)
    )
    out = scan_bytes(text.encode(), counts).decode()
    assert out == "证件号110105********002X，电话138****5678"
    assert counts == {"resident_id": 1, "mobile": 1}


def test_boundaries_longer_digit_runs_are_not_identifiers() -> None:
    assert kinds_in("order 138123456789 and 1381234567") == set()
    assert kinds_in("(13812345678)") == {"mobile"}
    assert kinds_in("+86-13812345678") == {"mobile"}


def test_json_escapes_do_not_hide_an_identifier() -> None:
    body = b'{"a":"x\\n13812345678","b":"\\u000113812345678","c":"\\ndong@example.com"}'
    counts: dict[str, int] = {}
    out = scan_bytes(body, counts)
    assert out == b'{"a":"x\\n138****5678","b":"\\u0001138****5678","c":"\\nd***@example.com"}'
    assert counts == {"mobile": 2, "email": 1}


def test_usccs_and_cards_are_masked_with_their_strategy() -> None:
    out = scan_text("统一社会信用代码91350100M000100Y43 卡号6222021234567890128", {})
    assert out == "统一社会信用代码91350100********** 卡号622202*********0128"


def test_report_mode_counts_without_masking() -> None:
    counts: dict[str, int] = {}
    assert scan_text("call 13812345678", counts, mask=False) == "call 13812345678"
    assert counts == {"mobile": 1}


def test_masked_output_is_stable() -> None:
    once = scan_text("11010519491231002X 13812345678 6222021234567890128 a@b.cn", {})
    counts: dict[str, int] = {}
    assert scan_text(once, counts) == once
    assert counts == {}


separators = st.sampled_from([" ", "，", "号", "：", "\n", "|", "的"])
filler = st.text(alphabet="的了是在人有我他这中大来上国个到说们为子和你地出道也时年", max_size=8)


@settings(max_examples=150)
@given(
    st.randoms(use_true_random=False),
    st.lists(st.tuples(filler, separators), min_size=1, max_size=5),
)
def test_generated_identifiers_never_survive(rng: random.Random, parts) -> None:
    values = []
    text = ""
    for words, sep in parts:
        value = rng.choice(
            [
                identifiers.make_resident_id(rng),
                identifiers.make_uscc(rng),
                identifiers.make_mobile(rng),
                identifiers.make_bank_card(rng, rng.randrange(16, 20)),
            ]
        )
        if rng.random() < 0.3:
            value = value.translate(FULL_WIDTH)
        values.append(value)
        text += words + sep + value + sep
    out = scan_bytes(text.encode(), {}).decode()
    for value in values:
        assert value not in out
    assert len(scan_text(out, {})) == len(out)


# Found by tests/fuzz/test_fuzz_masking.py, each one a way past the scanner.
ESCAPED_MOBILE = "".join(f"\\u{ord(c):04x}" for c in "13812345678")
FULL_WIDTH_ESCAPED = "".join(f"\\u{ord(c) + 0xFEE0:04x}" for c in "13812345678")


@pytest.mark.parametrize(
    ("text", "masked", "kind"),
    [
        # Lower-case letters inside a run hid it (a USCC has letters anywhere); a lower-case
        # check letter at the end of a resident ID was always read (a control).
        ("代码91350100m000100y43", "代码91350100**********", "uscc"),
        ("身份证11010519491231002x号", "身份证110105********002x号", "resident_id"),
        # A backslash before a digit was taken for a JSON escape and the digit skipped; an
        # escaped backslash was always text (a control).
        ("\\110105194912310038", "\\110105********0038", "resident_id"),
        ("a\\\\13812345678", "a\\\\138****5678", "mobile"),
        # A lower-case USCC that begins with a JSON escape letter, after a backslash (the long
        # run): the letter was skipped as an escape's.
        ("\\b0000000000000000l", "\\b0000000**********", "uscc"),
        # Digits written as JSON escapes where nothing decodes them (a CSV cell, JSON inside
        # a JSON string), also full-width, also with the escapes escaped again.
        (f"电话{ESCAPED_MOBILE}", "电话138****5678", "mobile"),
        (f"{FULL_WIDTH_ESCAPED}。", "138****5678。", "mobile"),
        (ESCAPED_MOBILE.replace("\\", "\\\\"), "138****5678", "mobile"),
        ("\\u0031\\u0033812345678", "138****5678", "mobile"),
    ],
)
def test_spellings_found_by_fuzzing_are_masked(text: str, masked: str, kind: str) -> None:
    counts: dict[str, int] = {}
    assert scan_text(text, counts) == masked
    assert counts == {kind: 1}
    counts = {}
    assert scan_bytes(text.encode(), counts) == masked.encode()
    assert counts == {kind: 1}


@pytest.mark.parametrize(
    "text",
    [
        "\\n13812345678",  # a JSON escape letter is still skipped: \n then the mobile
        "\\u000113812345678",
    ],
)
def test_json_escape_letters_before_a_run_are_still_skipped(text: str) -> None:
    assert scan_text(text, {}).endswith("138****5678")


def test_escapes_of_other_characters_are_left_alone() -> None:
    text = "\\u0020\\u4e2d 1381234567"  # a space, a CJK character, ten digits
    assert scan_text(text, {}) == text


def test_an_escape_after_an_escaped_backslash_starts_a_new_identifier() -> None:
    """Found by the long fuzz run: in `...005\\\\\\u0031...` the first two backslashes are a
    literal backslash, which separates the card before it from the resident ID after it;
    read as one 36-digit run, neither was masked."""
    text = "620000\\u003000000000005\\\\\\u003110105200001\\u003010008"
    counts: dict[str, int] = {}
    assert scan_text(text, counts) == "620000********0005\\\\110105********0008"
    assert counts == {"bank_card": 1, "resident_id": 1}


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("\\u00313812345678", "138****5678"),  # JSON in JSON: an escape, escaped once more
        ("\\\\\\u00313812345678", "\\\\138****5678"),  # a backslash, then an escape
        ("\\\\u00313812345678", "\\\\u00313812345678"),  # backslashes and text: no digit
    ],
)
def test_masking_escapes_keeps_the_json_valid(value: str, masked: str) -> None:
    """Masking from the escape's own backslash (not from the first backslash before it) keeps
    an even number of backslashes, so the JSON stays valid."""
    out = scan_bytes(orjson.dumps({"a": value}), {})
    assert orjson.loads(out) == {"a": masked}
