"""The demo upstream served on a loopback port: paging, single records, CSV, NDJSON, errors."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest

from gateway.demo.data import make_demo_data
from gateway.demo.upstream import start_upstream

SEED = 11
SIZE = 120
LISTS = {
    "/api/population/persons": "persons",
    "/api/enterprise/companies": "companies",
    "/api/social-security/accounts": "accounts",
    "/api/medical/records": "medical_records",
}
DATA = make_demo_data(SEED, SIZE)


@pytest.fixture
async def client() -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    runner = await start_upstream("127.0.0.1", 0, SEED, SIZE)
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as session:
        yield session, f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def get_json(
    client: tuple[aiohttp.ClientSession, str], path: str, status: int = 200
) -> object:
    session, base = client
    async with session.get(base + path) as response:
        assert response.status == status
        assert response.content_type == "application/json"
        return orjson.loads(await response.read())


@pytest.mark.parametrize("path", list(LISTS))
async def test_list_default_page(client: tuple[aiohttp.ClientSession, str], path: str) -> None:
    body = await get_json(client, path)
    records = getattr(DATA, LISTS[path])
    assert body == {"items": records[:20], "page": 1, "size": 20, "total": SIZE}


@pytest.mark.parametrize("path", list(LISTS))
async def test_single_record(client: tuple[aiohttp.ClientSession, str], path: str) -> None:
    records = getattr(DATA, LISTS[path])
    assert await get_json(client, f"{path}/7") == records[6]
    assert await get_json(client, f"{path}/{SIZE}") == records[-1]


async def test_paging_walks_every_record_once(client: tuple[aiohttp.ClientSession, str]) -> None:
    seen: list[int] = []
    for page in (1, 2, 3):
        body = await get_json(client, f"/api/population/persons?page={page}&size=50")
        assert isinstance(body, dict)
        assert (body["page"], body["size"], body["total"]) == (page, 50, SIZE)
        seen += [item["id"] for item in body["items"]]
    assert seen == list(range(1, SIZE + 1))


async def test_page_past_the_end_is_empty(client: tuple[aiohttp.ClientSession, str]) -> None:
    body = await get_json(client, "/api/enterprise/companies?page=99&size=100")
    assert body == {"items": [], "page": 99, "size": 100, "total": SIZE}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("page=0", "page must be an integer between 1 and 1000000000"),
        ("page=-1", "page must be an integer between 1 and 1000000000"),
        ("page=abc", "page must be an integer between 1 and 1000000000"),
        ("page=1.5", "page must be an integer between 1 and 1000000000"),
        ("page=", "page must be an integer between 1 and 1000000000"),
        ("page=%EF%BC%91", "page must be an integer between 1 and 1000000000"),
        ("page=1&page=2", "page must be given once"),
        ("size=0", "size must be an integer between 1 and 100"),
        ("size=101", "size must be an integer between 1 and 100"),
        ("size=99999999999999999999", "size must be an integer between 1 and 100"),
        ("size=x", "size must be an integer between 1 and 100"),
    ],
)
async def test_bad_paging_parameters_are_400(
    client: tuple[aiohttp.ClientSession, str], query: str, message: str
) -> None:
    body = await get_json(client, f"/api/social-security/accounts?{query}", status=400)
    assert body == {"error": "bad_request", "message": message}


@pytest.mark.parametrize("path", list(LISTS))
async def test_missing_record_is_404(client: tuple[aiohttp.ClientSession, str], path: str) -> None:
    body = await get_json(client, f"{path}/{SIZE + 1}", status=404)
    assert body == {"error": "not_found", "message": f"no record with id {SIZE + 1}"}


@pytest.mark.parametrize("record_id", ["abc", "-1", "1.0", "%EF%BC%91", "1234567890"])
async def test_non_integer_id_is_400(
    client: tuple[aiohttp.ClientSession, str], record_id: str
) -> None:
    body = await get_json(client, f"/api/medical/records/{record_id}", status=400)
    assert body == {"error": "bad_request", "message": "id must be an integer"}


async def test_unknown_path_and_method_are_json_errors(
    client: tuple[aiohttp.ClientSession, str],
) -> None:
    body = await get_json(client, "/api/population/households", status=404)
    assert body == {"error": "not_found", "message": "Not Found"}
    session, base = client
    async with session.post(base + "/api/population/persons") as response:
        assert response.status == 405
        assert response.headers["Allow"] == "GET,HEAD"
        body = orjson.loads(await response.read())
    assert body == {"error": "method_not_allowed", "message": "Method Not Allowed"}


async def test_persons_csv(client: tuple[aiohttp.ClientSession, str]) -> None:
    session, base = client
    async with session.get(base + "/api/population/persons.csv") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
        text = await response.text()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert text.startswith("id,name,id_card,phone,address,birth_date,gender\r\n")
    assert len(rows) == SIZE
    for row, person in zip(rows, DATA.persons, strict=True):
        assert row == {key: str(person[key]) for key in row}


async def test_accounts_ndjson(client: tuple[aiohttp.ClientSession, str]) -> None:
    session, base = client
    async with session.get(base + "/api/social-security/accounts.ndjson") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/x-ndjson; charset=utf-8"
        body = await response.read()
    assert body.endswith(b"\n")
    assert [orjson.loads(line) for line in body.splitlines()] == DATA.accounts


async def test_responses_are_not_compressed(client: tuple[aiohttp.ClientSession, str]) -> None:
    session, base = client
    headers = {"Accept-Encoding": "gzip, br"}
    async with session.get(base + "/api/enterprise/companies", headers=headers) as response:
        assert "Content-Encoding" not in response.headers
