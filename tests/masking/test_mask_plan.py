"""Mask plans: which fields are hidden at which clearance, paths, caching, the query guard."""

from __future__ import annotations

import pytest
from multidict import MultiDict

from gateway.errors import ConfigError
from gateway.masking.plan import (
    PlanCache,
    check_dataset,
    compile_plan,
    guarded_query_field,
    parse_path,
)
from gateway.policy.catalog import Dataset
from tests.masking.mask_helpers import make_config, make_dataset


def test_fields_above_the_clearance_get_their_strategy(dataset: Dataset) -> None:
    config = make_config()
    at2 = compile_plan(dataset, 2, config)
    assert set(at2.by_name) == {"name", "idcard", "mobile", "income", "diagnosis", "memberid"}
    assert at2.by_name["diagnosis"].fn is None  # level 4: removed
    at3 = compile_plan(dataset, 3, config)
    assert set(at3.by_name) == {"diagnosis"}
    at4 = compile_plan(dataset, 4, config)
    assert not at4.active
    assert compile_plan(dataset, 1, config).by_name["email"].strategy == "email"


def test_level_4_fields_are_removed_whatever_their_strategy() -> None:
    ds = make_dataset(fields=[{"name": "diagnosis", "level": 4, "strategy": "redact"}])
    assert compile_plan(ds, 3, make_config()).by_name["diagnosis"].strategy == "remove"


def test_scanner_runs_below_the_scanner_level_on_classified_datasets(dataset: Dataset) -> None:
    config = make_config()
    assert compile_plan(dataset, 2, config).scan
    assert not compile_plan(dataset, 3, config).scan
    assert compile_plan(dataset, 4, make_config(scanner_level=5)).scan
    public = make_dataset(level=1, fields=[])
    assert not compile_plan(public, 1, config).active


@pytest.mark.parametrize(
    ("path", "segments"),
    [
        ("items[*].id_card", ["items", "[*]", "id_card"]),
        ("a.b", ["a", "b"]),
        ("$.a[*][*].b", ["a", "[*]", "[*]", "b"]),
        ("[*].x", ["[*]", "x"]),
    ],
)
def test_parse_path(path: str, segments: list[str]) -> None:
    assert parse_path(path) == segments


@pytest.mark.parametrize("path", ["", "a.", "a..b", ".a", "a[0].b", "a[*]b", "a b]"])
def test_bad_paths_are_config_errors_naming_the_field(path: str) -> None:
    ds = make_dataset(fields=[{"name": "x", "level": 3, "strategy": "redact", "paths": [path]}])
    with pytest.raises(ConfigError, match="dataset 'citizens' field 'x': bad JSON path"):
        check_dataset(ds, make_config())


def test_unknown_strategy_is_a_config_error_naming_dataset_and_field() -> None:
    ds = make_dataset(fields=[{"name": "x", "level": 3, "strategy": "scramble"}])
    with pytest.raises(ConfigError, match="dataset 'citizens' field 'x': unknown strategy"):
        compile_plan(ds, 1, make_config())


def test_pseudonym_needs_a_secret(dataset: Dataset) -> None:
    with pytest.raises(ConfigError, match=r"field 'member_id'.*pseudonym_secret"):
        check_dataset(dataset, make_config(pseudonym_secret=None))


def test_plans_are_cached_per_dataset_and_clearance(dataset: Dataset) -> None:
    cache = PlanCache(make_config())
    first = cache.get(dataset, 2)
    assert cache.get(dataset, 2) is first
    assert cache.get(dataset, 3) is not first
    reloaded = make_dataset()
    assert cache.get(reloaded, 2) is not first


@pytest.mark.parametrize(
    "query",
    [
        {"id_card": "110105194912310038"},
        {"ID_CARD": "x"},
        {"idCard": "x"},
        {"idno": "x"},  # alias
        {"filter[id_card]": "x"},
        {"id_card[eq]": "x"},
        {"mobile__startswith": "138"},
        {"diagnosis": "flu"},  # removed field
        {"sort": "-income"},
        {"order_by": "name:asc"},
        {"q": "13812345678"},  # searching by an identifier value
        {"guardian_id": "x"},
        {"id": "x"},  # last segment of a hidden path (family[*].id)
        {"q": "11010519491231002x"},
        # Found by tests/fuzz/test_fuzz_masking.py: a lower-case USCC was not read.
        {"q": "91350100m000100y43"},
    ],
)
def test_query_guard_refuses_hidden_fields(dataset: Dataset, query: dict[str, str]) -> None:
    plan = compile_plan(dataset, 2, make_config())
    assert guarded_query_field(plan, MultiDict(query)) == next(iter(query))


@pytest.mark.parametrize(
    "query", [{"page": "2"}, {"sort": "updated_at"}, {"email": "x"}, {"q": "张"}]
)
def test_query_guard_allows_visible_fields(dataset: Dataset, query: dict[str, str]) -> None:
    plan = compile_plan(dataset, 2, make_config())
    assert guarded_query_field(plan, MultiDict(query)) is None


def test_query_guard_follows_the_clearance(dataset: Dataset) -> None:
    query = MultiDict({"id_card": "110105194912310038"})
    assert guarded_query_field(compile_plan(dataset, 3, make_config()), query) is None
    assert (
        guarded_query_field(compile_plan(dataset, 3, make_config()), {"diagnosis": "x"})
        == "diagnosis"
    )
