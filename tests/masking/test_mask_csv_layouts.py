"""CSV layouts that once let classified columns through (issue 18, item 4): other
delimiters, Excel's `sep=` line, no header, comma data labelled TSV, other header names."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.masking.errors import MaskingError
from gateway.masking.plan import MaskPlan
from gateway.reports.quality import Quality
from tests.masking.mask_helpers import run_body

ID = "110105194912310038"
PHONE = "13812345678"


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (
            f"name;id_card;mobile\n张三;{ID};{PHONE}\n",
            "text/csv",
            "张*;110105********0038;138****5678",
        ),
        (
            f"name|id_card|mobile\n张三|{ID}|{PHONE}\n",
            "text/csv",
            "张*|110105********0038|138****5678",
        ),
        (
            f"name\tid_card\tmobile\n张三\t{ID}\t{PHONE}\n",
            "text/csv",
            "张*\t110105********0038\t138****5678",
        ),
        (
            f"name,id_card,mobile\n张三,{ID},{PHONE}\n",
            "text/tab-separated-values",
            "张*,110105********0038,138****5678",
        ),
        (
            f"sep=;\nname;id_card;mobile\n张三;{ID};{PHONE}\n",
            "text/csv",
            "张*;110105********0038;138****5678",
        ),
    ],
    ids=["semicolon", "pipe", "tab-as-csv", "comma-as-tsv", "excel-sep"],
)
def test_the_delimiter_is_found_from_the_header(
    plan: MaskPlan, config, body: str, content_type: str, expected: str
) -> None:
    out, _ = run_body(plan, config, body.encode(), content_type)
    text = out.decode()
    assert expected in text, text
    assert ID not in text and PHONE not in text and "张三" not in text


@pytest.mark.parametrize(
    "body",
    [
        f"张三,{ID},{PHONE}\n李四,11010519491231002X,13912345678\n",  # no header row
        f"姓名,身份证号,手机\n张三,{ID},{PHONE}\n",  # names the catalog does not know
        "a,b,c\n张三,x,y\n",  # nothing classified seen at all
    ],
    ids=["no-header", "chinese-header", "other-columns"],
)
def test_a_csv_naming_no_classified_column_is_refused(plan: MaskPlan, config, body: str) -> None:
    with pytest.raises(MaskingError) as refused:
        run_body(plan, config, body.encode(), "text/csv")
    assert refused.value.reason == "unmaskable_csv"
    assert refused.value.code == "upstream_error"
    assert "names none of the dataset's classified columns" in refused.value.message


def test_csv_cells_are_counted_for_data_quality(plan: MaskPlan, config) -> None:
    """The cells the CSV codec masks are the ones data quality counts (issue 15): empty,
    a short row's missing cell, a resident ID failing its checksum."""
    quality = Quality()
    observed = dataclasses.replace(plan, observe=quality.observer("people", frozenset()))
    body = f"name,id_card\n张三,{ID}\n李四,110105194912310039\n王五,\n赵六\n"
    out, _ = run_body(observed, config, body.encode(), "text/csv")
    assert "110105194912310039" not in out.decode()
    (row,) = [r for r in quality.snapshot()["fields"] if r["field"] == "id_card"]
    assert (row["seen"], row["empty"], row["invalid"]) == (4, 2, 1)
