"""Body codecs: JSON, NDJSON, CSV/TSV, encodings, limits, and every fail-closed case."""

from __future__ import annotations

import gzip
import random
import tracemalloc
import zlib

import brotli
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.masking import identifiers
from gateway.masking.codecs import open_transform
from gateway.masking.config import MaskingConfig
from gateway.masking.errors import MaskingError
from gateway.masking.plan import MaskPlan, compile_plan
from tests.masking.mask_helpers import make_config, make_dataset, run_body

ID = "11010519491231002X"
MOBILE = "13812345678"


def person(i: int = 0) -> dict[str, object]:
    return {
        "id": i,
        "name": "张三",
        "id_card": ID,
        "mobile": MOBILE,
        "email": "dong@example.com",
        "income": 12345,
        "diagnosis": "流感",
        "remarks": f"备注：身份证{ID}联系{MOBILE}",
    }


def masked_person(i: int = 0) -> dict[str, object]:
    return {
        "id": i,
        "name": "张*",
        "id_card": "110105********002X",
        "mobile": "138****5678",
        # level 2 (visible at clearance 2), but the scanner masks e-mails below its level 3
        "email": "d***@example.com",
        "income": "10000-15000",
        "remarks": "备注：身份证110105********002X联系138****5678",
    }


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_top_level_array_streams_masked(plan: MaskPlan, config: MaskingConfig, chunk: int) -> None:
    body = orjson.dumps([person(i) for i in range(40)])
    out, report = run_body(plan, config, body, chunk=chunk)
    assert orjson.loads(out) == [masked_person(i) for i in range(40)]
    assert report.records_out == 40
    assert report.masked_fields == {
        "name": 40,
        "id_card": 40,
        "mobile": 40,
        "income": 40,
        "diagnosis": 40,
    }
    assert report.findings == {"resident_id": 40, "mobile": 40, "email": 40}


@pytest.mark.parametrize("ctype", ["application/json", "application/x-ndjson", "text/csv"])
def test_large_bodies_stream_with_bounded_buffers(plan, config, ctype: str) -> None:
    rows = [person(i) for i in range(3000)]
    if ctype == "text/csv":
        body = b"id,name,mobile\n" + b"".join(f"{i},张三,{MOBILE}\n".encode() for i in range(3000))
    elif ctype == "application/json":
        body = orjson.dumps(rows)
    else:
        body = b"\n".join(map(orjson.dumps, rows))
    transform = open_transform(
        plan, config, content_type=ctype, content_encoding=None, content_length=None, key=b""
    )
    streamed = 0
    for i in range(0, len(body), 4096):
        streamed += len(transform.feed(body[i : i + 4096]))
        codec = transform._codec
        held = codec._buf if hasattr(codec, "_buf") else codec._text
        assert len(held) < 4096 + config.batch_bytes + 2048  # never the whole body
    tail = len(transform.finish())
    assert streamed > 20 * tail
    assert transform.report.records_out == 3000


def test_records_under_the_records_key_stream_with_the_envelope(
    plan: MaskPlan, config: MaskingConfig
) -> None:
    doc = {
        "total": 30,
        "owner": {"name": "李四"},
        "items": [person(i) for i in range(30)],
        "next": MOBILE,
    }
    out, report = run_body(plan, config, orjson.dumps(doc, option=orjson.OPT_INDENT_2), chunk=50)
    assert orjson.loads(out) == {
        "total": 30,
        "owner": {"name": "李*"},
        "items": [masked_person(i) for i in range(30)],
        "next": "138****5678",
    }
    assert report.records_out == 30


def test_nested_arrays_of_objects_and_mixed_levels_in_one_object(
    plan: MaskPlan, config: MaskingConfig
) -> None:
    doc = [
        {
            "household": {
                "members": [{"name": "王五", "diagnosis": "x", "tags": [{"mobile": MOBILE}]}]
            },
            "family": [
                {"id": ID, "relation": "父"},
                {"id": "440524188001010014", "relation": "母"},
            ],
            "email": "a@b.cn",
            "level1": "ok",
        }
    ] * 50
    out, report = run_body(plan, config, orjson.dumps(doc), chunk=333)
    first = orjson.loads(out)[0]
    assert first == {
        "household": {"members": [{"name": "王*", "tags": [{"mobile": "138****5678"}]}]},
        "family": [
            {"id": "110105********002X", "relation": "父"},
            {"id": "440524********0014", "relation": "母"},
        ],
        "email": "a***@b.cn",  # visible field, but the scanner masks e-mails below level 3
        "level1": "ok",
    }
    assert report.masked_fields["family[*].id"] == 100


def test_full_width_identifiers_in_free_text(plan, config) -> None:
    full = str.maketrans("0123456789X", "０１２３４５６７８９Ｘ")
    doc = [{"remarks": f"身份证{ID.translate(full)}，手机{MOBILE.translate(full)}"}]
    out, report = run_body(plan, config, orjson.dumps(doc))
    assert orjson.loads(out) == [{"remarks": "身份证110105********002X，手机138****5678"}]
    assert report.findings == {"resident_id": 1, "mobile": 1}


def test_a_single_json_object_is_masked_whole(plan: MaskPlan, config: MaskingConfig) -> None:
    out, report = run_body(plan, config, orjson.dumps(person()))
    assert orjson.loads(out) == masked_person()
    assert report.records_out == 1


def test_numbers_holding_identifiers_become_masked_strings(
    plan: MaskPlan, config: MaskingConfig
) -> None:
    doc = {"phone": 13812345678, "card": 6222021234567890128, "ratio": 0.13812345678, "n": 5}
    out, report = run_body(plan, config, orjson.dumps(doc))
    assert orjson.loads(out) == {
        "phone": "138****5678",
        "card": "622202*********0128",
        "ratio": "0.138****5678",
        "n": 5,
    }
    assert report.findings == {"mobile": 2, "bank_card": 1}


def test_pseudonyms_are_per_consumer(plan: MaskPlan, config: MaskingConfig) -> None:
    body = orjson.dumps({"member_id": "M-1"})
    a1, _ = run_body(plan, config, body, key=b"a")
    a2, _ = run_body(plan, config, body, key=b"a")
    b1, _ = run_body(plan, config, body, key=b"b")
    assert a1 == a2 != b1
    assert b"M-1" not in a1


@pytest.mark.parametrize(
    "body",
    [
        b'[{"name": "\xe5\xbc\xa0\xe4\xb8\x89"',
        b'{"name": }',
        b"[1, 2,, 3]",
        b"",
        b"   ",
        b"[1] [2]",
        b'{"a": 1} x',
    ],
)
def test_malformed_upstream_json_fails_closed(
    plan: MaskPlan, config: MaskingConfig, body: bytes
) -> None:
    with pytest.raises(MaskingError) as err:
        run_body(plan, config, body)
    assert err.value.reason == "malformed_body"
    assert err.value.gateway_error().status == 502


def test_malformed_json_inside_a_long_array_fails_closed(
    plan: MaskPlan, config: MaskingConfig
) -> None:
    body = orjson.dumps([person(i) for i in range(30)])[:-200] + b"}}, oops]"
    with pytest.raises(MaskingError, match="malformed"):
        run_body(plan, config, body, chunk=512)


def test_json_document_over_the_limit_is_413_or_502(dataset) -> None:
    body = orjson.dumps({"blob": "x" * 5000})
    for status, code in ((413, "payload_too_large"), (502, "upstream_error")):
        config = make_config(max_json_document_bytes=2048, oversize_status=status)
        with pytest.raises(MaskingError) as err:
            run_body(compile_plan(dataset, 2, config), config, body, chunk=1024)
        assert err.value.gateway_error().code == code


def test_one_record_over_the_limit_is_refused(dataset) -> None:
    config = make_config(max_record_bytes=2048, batch_bytes=1024)
    body = orjson.dumps([{"blob": "x" * 5000}])
    with pytest.raises(MaskingError, match="record over 2048"):
        run_body(compile_plan(dataset, 2, config), config, body, chunk=1024)


@pytest.mark.parametrize("lead", [b'{"items":[{"remarks":"', b'[{"remarks":"', b'{"remarks":"'])
def test_a_long_unfinished_string_is_refused_without_blowing_up_memory(
    dataset, lead: bytes
) -> None:
    """One record (or the envelope before the records) that is a single huge string, streamed
    in chunks: refused at the limit. Lexing it used to cost the regex engine backtracking
    state per character (145 MiB for 1 MiB of string) and a rescan per chunk."""
    config = make_config(max_record_bytes=1 << 20, max_json_document_bytes=1 << 20)
    transform = open_transform(
        compile_plan(dataset, 2, config),
        config,
        content_type="application/json",
        content_encoding=None,
        content_length=None,
        key=b"",
    )
    tracemalloc.start()
    try:
        with pytest.raises(MaskingError, match="over 1048576 bytes"):
            transform.feed(lead)
            for _ in range(40):
                transform.feed(b" " * 65536)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{peak >> 20} MiB traced while lexing"


def test_gzip_deflate_and_br_are_decoded_and_sent_as_identity(
    plan: MaskPlan, config: MaskingConfig
) -> None:
    body = orjson.dumps([person(i) for i in range(20)])
    for encoding, data in (
        ("gzip", gzip.compress(body)),
        ("deflate", zlib.compress(body)),
        ("deflate", _raw_deflate(body)),
        ("br", brotli.compress(body)),
        ("gzip, br", brotli.compress(gzip.compress(body))),
    ):
        out, _ = run_body(plan, config, data, encoding=encoding, chunk=100)
        assert orjson.loads(out) == [masked_person(i) for i in range(20)], encoding


def _raw_deflate(body: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-15)
    return compressor.compress(body) + compressor.flush()


@pytest.mark.parametrize("encoding", ["gzip", "br"])
def test_compression_bombs_are_refused(dataset, encoding: str) -> None:
    config = make_config(max_decoded_bytes=4 * 1024 * 1024)
    bomb = b"[" + b"0," * (8 * 1024 * 1024) + b"0]"
    data = gzip.compress(bomb) if encoding == "gzip" else brotli.compress(bomb)
    with pytest.raises(MaskingError) as err:
        run_body(compile_plan(dataset, 2, config), config, data, encoding=encoding, chunk=4096)
    assert err.value.reason == "decoded_too_large"
    assert err.value.gateway_error().status == 413


def test_inflate_ratio_is_bounded(dataset) -> None:
    config = make_config(max_inflate_ratio=10)
    bomb = gzip.compress(b"[" + b"0," * (2 * 1024 * 1024) + b"0]")
    with pytest.raises(MaskingError, match="inflates more than 10 times"):
        run_body(compile_plan(dataset, 2, config), config, bomb, encoding="gzip", chunk=4096)


@pytest.mark.parametrize(
    ("data", "encoding", "reason"),
    [
        (b"not gzip at all", "gzip", "bad_encoding"),
        (gzip.compress(b"[1,2,3]")[:-6], "gzip", "bad_encoding"),  # truncated
        (b"[1]", "compress", "unsupported_encoding"),
        (b"[1]", "zstd", "unsupported_encoding"),
    ],
)
def test_bad_or_unknown_encodings_fail_closed(
    plan, config, data: bytes, encoding: str, reason: str
) -> None:
    with pytest.raises(MaskingError) as err:
        run_body(plan, config, data, encoding=encoding)
    assert err.value.reason == reason


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/html",
        "application/octet-stream",
        "application/xml",
        "",
        "application/jsonx",
    ],
)
def test_other_content_types_fail_closed(plan, config, content_type: str) -> None:
    with pytest.raises(MaskingError) as err:
        run_body(plan, config, orjson.dumps(person()), content_type)  # JSON labelled text/plain too
    assert err.value.reason == "unsupported_content_type"
    assert err.value.gateway_error().code == "upstream_error"


def test_json_content_type_variants(plan, config) -> None:
    for ctype in (
        "application/json; charset=UTF-8",
        "application/vnd.api+json",
        "application/problem+json",
    ):
        out, _ = run_body(plan, config, orjson.dumps(person()), ctype)
        assert orjson.loads(out) == masked_person()
    with pytest.raises(MaskingError, match="JSON must be UTF-8"):
        run_body(plan, config, b"{}", "application/json; charset=gbk")


def test_an_upstream_that_lies_in_content_length_fails_closed(plan, config) -> None:
    body = orjson.dumps([person(i) for i in range(3)])
    with pytest.raises(MaskingError) as err:
        run_body(plan, config, body, length=len(body) + 10)
    assert err.value.reason == "length_mismatch"
    out, _ = run_body(plan, config, body, length=len(body))
    assert orjson.loads(out) == [masked_person(i) for i in range(3)]


def test_ndjson_line_by_line(plan, config) -> None:
    body = b"\n".join(orjson.dumps(person(i)) for i in range(10)) + b"\n\n"
    for ctype in ("application/x-ndjson", "application/jsonl"):
        out, report = run_body(plan, config, body, ctype, chunk=33)
        assert [orjson.loads(line) for line in out.splitlines()] == [
            masked_person(i) for i in range(10)
        ]
        assert report.records_out == 10


def test_ndjson_without_a_final_newline(plan, config) -> None:
    out, _ = run_body(plan, config, orjson.dumps(person()), "application/x-ndjson")
    assert orjson.loads(out) == masked_person()


def test_ndjson_with_one_bad_line_fails_closed(plan, config) -> None:
    lines = [orjson.dumps(person(i)) for i in range(5)]
    lines[3] = b'{"name": "broken'
    with pytest.raises(MaskingError, match=r"NDJSON \(line 4\)"):
        run_body(plan, config, b"\n".join(lines) + b"\n", "application/x-ndjson")


CSV = (
    "\ufeffid,name,id_card,mobile,diagnosis,remarks\r\n"
    '1,张三,11010519491231002X,13812345678,流感,"多行备注\r\n第二行 13812345678, 含逗号"\r\n'
    '2,"欧阳娜娜",440524188001010014,13900001111,无,"引号""内"""\r\n'
)


@pytest.mark.parametrize("chunk", [1, 5, 4096])
def test_csv_with_quoted_newlines_and_a_bom(plan, config, chunk: int) -> None:
    out, report = run_body(plan, config, CSV.encode(), "text/csv; charset=utf-8", chunk=chunk)
    assert out.decode() == (
        "id,name,id_card,mobile,remarks\r\n"
        '1,张*,110105********002X,138****5678,"多行备注\r\n第二行 138****5678, 含逗号"\r\n'
        '2,欧阳**,440524********0014,139****1111,"引号""内"""\r\n'
    )
    assert report.records_out == 2
    assert report.masked_fields == {"name": 2, "id_card": 2, "mobile": 2, "diagnosis": 2}
    assert report.findings == {"mobile": 1}


def test_tsv_and_other_charsets(plan, config) -> None:
    tsv = "name\tmobile\n张三\t13812345678\n"
    out, _ = run_body(
        plan, config, tsv.encode("gb18030"), "text/tab-separated-values; charset=gb18030"
    )
    assert out.decode() == "name\tmobile\n张*\t138****5678\n"


def test_csv_columns_by_configured_column_name(config) -> None:
    ds = make_dataset(
        fields=[{"name": "mobile", "level": 3, "strategy": "mobile", "column": "手机号"}]
    )
    out, _ = run_body(
        compile_plan(ds, 2, config), config, "姓名,手机号\n张三,13812345678\n".encode(), "text/csv"
    )
    assert out.decode() == "姓名,手机号\n张三,138****5678\n"


@pytest.mark.parametrize(
    "body", [b'mobile,b\n"unclosed,1\n', b"mobile,b\n\xff\xfe,1\n", b'mobile,b\n1,"x"y\n']
)
def test_malformed_csv_fails_closed(plan, config, body: bytes) -> None:
    with pytest.raises(MaskingError) as err:
        run_body(plan, config, body, "text/csv")
    assert err.value.reason == "malformed_body"


def test_unknown_charset_fails_closed(plan, config) -> None:
    with pytest.raises(MaskingError) as err:
        run_body(plan, config, b"a\n1\n", "text/csv; charset=klingon")
    assert err.value.reason == "unsupported_charset"


def test_block_and_report_scanner_actions(config) -> None:
    body = orjson.dumps([{"remarks": f"电话{MOBILE}"}])
    block = compile_plan(make_dataset(scanner="block"), 2, config)
    with pytest.raises(MaskingError) as err:
        run_body(block, config, body)
    assert err.value.reason == "unlabelled_identifier"
    report_plan = compile_plan(make_dataset(scanner="report"), 2, config)
    out, report = run_body(report_plan, config, body)
    assert orjson.loads(out) == [{"remarks": f"电话{MOBILE}"}]
    assert report.findings == {"mobile": 1}


def test_a_failed_transform_stays_failed(plan, config) -> None:
    transform = open_transform(
        plan,
        config,
        content_type="application/x-ndjson",
        content_encoding=None,
        content_length=None,
        key=b"",
    )
    with pytest.raises(MaskingError):
        transform.feed(b"{bad\n")
    with pytest.raises(MaskingError):
        transform.feed(b"{}\n")
    with pytest.raises(MaskingError):
        transform.finish()


fields = st.sampled_from(
    ["name", "id_card", "mobile", "remarks", "note", "contact", "items", "family"]
)


@st.composite
def records(draw: st.DrawFn) -> tuple[object, list[str]]:
    """Random JSON holding valid generated identifiers; returns it with the identifiers."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    planted: list[str] = []

    def value(depth: int) -> object:
        choice = draw(st.integers(0, 5 if depth < 3 else 2))
        if choice <= 2:
            ident = rng.choice(
                [
                    identifiers.make_resident_id(rng),
                    identifiers.make_mobile(rng),
                    identifiers.make_bank_card(rng, rng.randrange(16, 20)),
                    identifiers.make_uscc(rng),
                ]
            )
            planted.append(ident)
            wrap = draw(st.sampled_from(["{}", "号码{}。", "id:{}", "{} ", "备注\n{}"]))
            return wrap.format(ident)
        if choice == 3:
            return draw(st.integers(-1000, 1000))
        if choice == 4:
            return [value(depth + 1) for _ in range(draw(st.integers(0, 3)))]
        return {draw(fields): value(depth + 1) for _ in range(draw(st.integers(0, 4)))}

    return [value(0) for _ in range(draw(st.integers(1, 6)))], planted


@settings(max_examples=60, deadline=None)
@given(
    records(), st.sampled_from(["application/json", "application/x-ndjson"]), st.integers(1, 300)
)
def test_no_valid_identifier_survives_for_a_caller_below_its_level(data, ctype, chunk) -> None:
    config = make_config(batch_bytes=1024)
    plan = compile_plan(make_dataset(), 2, config)
    value, planted = data
    body = (
        orjson.dumps(value) if ctype == "application/json" else b"\n".join(map(orjson.dumps, value))
    )
    out, _ = run_body(plan, config, body, ctype, chunk=chunk)
    text = out.decode()
    for ident in planted:
        assert ident not in text


# Found by tests/fuzz/test_fuzz_masking.py: removing columns until one (or none) was left.
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # One column left: itemgetter gave the bare cell and csv wrote one character per
        # column ("h,e,l,l,o").
        ("diagnosis,remarks\r\nflu,hello world\r\n", "remarks\r\nhello world\r\n"),
        # Every column removed: a TypeError, not a MaskingError.
        ("diagnosis\r\nflu\r\ncold\r\n", "\r\n\r\n\r\n"),
    ],
)
def test_csv_with_one_or_no_column_left(
    plan: MaskPlan, config: MaskingConfig, body: str, expected: str
) -> None:
    out, report = run_body(plan, config, body.encode(), "text/csv", chunk=5)
    assert out.decode() == expected
    assert report.masked_fields == {"diagnosis": body.count("\n") - 1}


# Found by tests/fuzz/test_fuzz_codecs.py: a zlib-wrapped deflate body whose first chunk
# had one byte was taken for raw deflate and refused (invalid stored block lengths).
@pytest.mark.parametrize("chunk", [1, 2, 3])
def test_deflate_read_one_byte_at_a_time(plan: MaskPlan, config: MaskingConfig, chunk: int) -> None:
    body = orjson.dumps([person(i) for i in range(3)])
    out, report = run_body(plan, config, zlib.compress(body), encoding="deflate", chunk=chunk)
    assert orjson.loads(out) == [masked_person(i) for i in range(3)]
    assert report.records_out == 3


def test_a_one_byte_deflate_body_is_truncated(plan: MaskPlan, config: MaskingConfig) -> None:
    with pytest.raises(MaskingError, match="the compressed upstream body is truncated"):
        run_body(plan, config, zlib.compress(b"[]")[:1], encoding="deflate")
