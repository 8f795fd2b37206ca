"""The consumers' catalog on the data listener and the admin listener, and the reserved path."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.errors import ConfigError
from tests.access.conftest import CATALOG, Workflow
from tests.gateway.conftest import gateway_config, raw_http

CATALOG_PATH = "/.well-known/datagate/catalog"


def by_id(view: dict) -> dict:
    return {d["id"]: d for d in view["datasets"]}


async def test_what_a_consumer_can_read_now(workflow: Workflow) -> None:
    status, view = await workflow.call("GET", CATALOG_PATH, workflow.auth("analyst", "taxation", 1))
    assert status == 200
    assert (view["principal"], view["department"], view["clearance"]) == ("analyst", "taxation", 1)
    datasets = by_id(view)
    assert list(datasets) == ["accounts", "register", "medical"]
    register = datasets["register"]
    assert {k: register[k] for k in ("title", "owner", "level", "level_name", "sharing")} == {
        "title": "Enterprise register",
        "owner": "statistics",
        "level": 1,
        "level_name": "public",
        "sharing": "unconditional",
    }
    assert register["fields"] == [{"name": "contact_phone", "level": 2}]
    read = register["actions"]["read"]
    assert read["access"] == "masked"
    assert read["fields"] == [
        {"name": "contact_phone", "level": 2, "access": "masked", "strategy": "mobile"}
    ]
    # Export and write need their own row or grant; conditional data needs one for all.
    assert register["actions"]["export"] == {"access": "refused", "reason": "default_deny"}
    assert register["actions"]["write"]["access"] == "refused"
    assert {a["access"] for a in datasets["accounts"]["actions"].values()} == {"refused"}
    assert datasets["medical"]["actions"]["read"] == {
        "access": "refused",
        "reason": "sharing_none",
    }
    # Nothing beyond the catalog file: no upstream, no policy rows.
    assert "upstream" not in register and "rules" not in register


async def test_the_owner_reads_in_clear_and_a_grant_changes_the_view(workflow: Workflow) -> None:
    owner = workflow.auth("officer-zhao", "statistics", 2)
    _, view = await workflow.call("GET", CATALOG_PATH, owner)
    assert by_id(view)["register"]["actions"]["read"]["access"] == "clear"

    auditor = workflow.auth("auditor-he", "taxation", 2, purpose="tax-audit")
    _, body = await workflow.ask(auditor, fields=["id_card"])
    officer = workflow.auth("officer-hr", "human-resources", roles=["data-officer"])
    await workflow.step(body["access_request"]["id"], "approve", officer)
    _, view = await workflow.call("GET", CATALOG_PATH, auditor)
    accounts = by_id(view)["accounts"]["actions"]
    assert accounts["read"]["access"] == "clear"
    assert accounts["read"]["clearance"] == 3
    assert accounts["read"]["grant_id"].startswith("g-")
    assert accounts["list"]["access"] == "refused"  # the request named read only
    # Without the purpose the grant was for, the grant does not apply.
    _, view = await workflow.call("GET", CATALOG_PATH, workflow.auth("auditor-he", "taxation", 2))
    assert by_id(view)["accounts"]["actions"]["read"]["access"] == "refused"


async def test_the_catalog_on_the_admin_listener(workflow: Workflow) -> None:
    officer = workflow.auth("officer-hr", "human-resources", 3, roles=["data-officer"])
    status, view = await workflow.call("GET", "/catalog/access", officer, admin=True)
    assert status == 200
    assert by_id(view)["accounts"]["actions"]["read"]["access"] == "clear"


async def test_the_catalog_needs_a_token_and_takes_no_parameters(workflow: Workflow) -> None:
    status, body = await workflow.call("GET", CATALOG_PATH, None)
    assert (status, body["error"]) == (401, "unauthenticated")
    status, body = await workflow.call(
        "GET", CATALOG_PATH + "?x=1", workflow.auth("analyst", "taxation")
    )
    assert (status, body["reason"]) == (400, "unknown_parameter")


async def test_encoded_spellings_of_the_reserved_path_are_never_forwarded(
    workflow: Workflow,
) -> None:
    token = workflow.token("analyst", "taxation")
    for path, status in (
        ("/.well-known/datagate%2Fcatalog", 400),
        ("/.well-known/%64atagate/catalog", 404),
        ("/.well-known/datagate", 404),
        ("/.well-known/datagate/../api/register/x/1", 404),
    ):
        request = (
            f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        )
        got, _ = await raw_http(workflow.gw.port, request.encode())
        assert got == status, path
    assert workflow.upstream_seen == []


@pytest.mark.parametrize("route", ["/", "/.well-known/", "/.well-known/datagate/x/"])
def test_a_catalog_route_over_the_reserved_path_is_refused(tmp_path: Path, route: str) -> None:
    catalog = CATALOG + (
        f"  - {{id: sneaky, route: '{route}', upstream: up, owner: health, level: 1}}\n"
    )
    config = gateway_config(tmp_path, {"up": "http://127.0.0.1:9"}, catalog)
    with pytest.raises(ConfigError, match="covers the gateway's reserved path"):
        Gateway(config)
