"""The synthetic demo datasets: valid identifiers, internal consistency, determinism."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.demo.data import COMPOUND_SURNAMES, DISTRICTS, DemoData, make_demo_data
from gateway.masking.identifiers import is_bank_card, is_resident_id, is_uscc

MOBILE = re.compile(r"1[3-9]\d{9}")
EMBEDDED_MOBILE = re.compile(r"(?<![0-9A-Za-z])1[3-9]\d{9}(?![0-9A-Za-z])")
EMBEDDED_ID = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dX](?![0-9A-Za-z])")


@pytest.fixture(scope="module")
def data() -> DemoData:
    return make_demo_data(seed=7, size=500)


def assert_identifiers_valid(data: DemoData) -> None:
    for person in data.persons:
        assert is_resident_id(person["id_card"]), person
        assert MOBILE.fullmatch(person["phone"]), person
        assert is_resident_id(person["household"]["head"]["id_card"]), person
        for contact in person["contacts"]:
            assert MOBILE.fullmatch(contact["phone"]), contact
    for company in data.companies:
        assert is_uscc(company["uscc"]), company
        assert MOBILE.fullmatch(company["contact_phone"]), company
    for account in data.accounts:
        assert is_resident_id(account["id_card"]), account
        assert is_bank_card(account["bank_card"]), account
        assert account["bank_card"].startswith("62"), account
        for found in EMBEDDED_ID.findall(account["remarks"]):
            assert is_resident_id(found), account
    for record in data.medical_records:
        assert is_resident_id(record["id_card"]), record


def test_every_identifier_has_a_valid_checksum(data: DemoData) -> None:
    assert_identifiers_valid(data)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32), size=st.integers(min_value=1, max_value=40))
def test_identifiers_are_valid_for_any_seed_and_size(seed: int, size: int) -> None:
    data = make_demo_data(seed, size)
    assert_identifiers_valid(data)
    for records in (data.persons, data.companies, data.accounts, data.medical_records):
        assert [record["id"] for record in records] == list(range(1, size + 1))


def test_resident_id_agrees_with_birth_date_gender_and_address(data: DemoData) -> None:
    for person in data.persons:
        id_card = person["id_card"]
        assert id_card[6:14] == person["birth_date"].replace("-", "")
        assert int(id_card[16]) % 2 == (1 if person["gender"] == "男" else 0)
        district = DISTRICTS[id_card[:6]]
        assert person["address"].startswith(district.region + district.name)


def test_company_address_lies_in_the_uscc_district(data: DemoData) -> None:
    for company in data.companies:
        district = DISTRICTS[company["uscc"][2:8]]
        assert company["address"].startswith(district.region + district.name)


def test_accounts_and_medical_records_belong_to_population_persons(data: DemoData) -> None:
    names = {person["id_card"]: person["name"] for person in data.persons}
    assert {account["id_card"] for account in data.accounts} == set(names)
    for account in data.accounts:
        assert names[account["id_card"]] == account["name"]
    for record in data.medical_records:
        assert names[record["id_card"]] == record["patient_name"]


def test_names_include_compound_surnames(data: DemoData) -> None:
    compound = [p["name"] for p in data.persons if p["name"].startswith(COMPOUND_SURNAMES)]
    assert compound
    assert all(len(name) >= 3 for name in compound)


def test_some_remarks_embed_a_phone_or_resident_id_without_spaces(data: DemoData) -> None:
    remarks = [account["remarks"] for account in data.accounts]
    with_phone = [text for text in remarks if EMBEDDED_MOBILE.search(text)]
    with_id = [text for text in remarks if EMBEDDED_ID.search(text)]
    plain = [text for text in remarks if text not in with_phone and text not in with_id]
    assert with_phone and with_id and plain
    assert any(text.startswith("联系电话") and "，" in text for text in with_phone)
    assert all(" " not in text for text in with_phone + with_id)


def test_persons_carry_nested_contacts_and_household(data: DemoData) -> None:
    assert any(len(person["contacts"]) == 2 for person in data.persons)
    assert any(person["contacts"] == [] for person in data.persons)
    heads = [p for p in data.persons if p["household"]["relation"] == "户主"]
    assert heads and all(p["household"]["head"]["id_card"] == p["id_card"] for p in heads)


def test_same_seed_gives_the_same_data_and_another_seed_differs() -> None:
    assert make_demo_data(3, 30) == make_demo_data(3, 30)
    assert make_demo_data(3, 30).persons != make_demo_data(4, 30).persons


def test_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="size must be at least 1, got 0"):
        make_demo_data(7, 0)
