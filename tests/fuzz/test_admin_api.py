"""schemathesis against the admin API's OpenAPI description, on a real gateway's admin
listener with a valid SOC token: no 5xx, responses and status codes as described."""

from __future__ import annotations

import hypothesis
import requests
import schemathesis
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.admin.app import openapi_document
from tests.fuzz.budget import examples
from tests.fuzz.conftest import AdminUnderTest

schema = schemathesis.openapi.from_dict(openapi_document())
# The SOC token is the test's own (schemathesis must not generate or mutate it); the
# `ignored_auth` check still calls every operation without it and with a bad one.
schema.config.generation.update(
    modes=["positive", "negative"], max_examples=examples(25), with_security_parameters=False
)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
]
SESSION = requests.Session()
DATASETS = ("population", "enterprise")  # in the catalog of tests/fuzz/conftest.py


@schema.parametrize()
@schema.given(pick=st.integers(0, 9))
@hypothesis.settings(deadline=None)
def test_admin_api_conforms_to_its_description(
    case: schemathesis.Case, pick: int, admin_under_test: AdminUnderTest
) -> None:
    # Half the cases that name an incident, a grant or a dataset name one that exists, so
    # workflow steps, revocations and grants run, not only their 404s and 400s.
    ids = {"/incidents": admin_under_test.incident_ids, "/grants": admin_under_test.grant_ids}
    for prefix, known in ids.items():
        if case.path.startswith(prefix + "/{id}") and pick < 5:
            case.path_parameters = {**(case.path_parameters or {}), "id": known[pick % len(known)]}
    if (
        case.path == "/grants"
        and isinstance(case.body, dict)
        and "dataset" in case.body
        and pick < 5
    ):
        case.body = {**case.body, "dataset": DATASETS[pick % len(DATASETS)]}
    case.call_and_validate(
        base_url=admin_under_test.url,
        session=SESSION,
        headers={"Authorization": f"Bearer {admin_under_test.token}"},
        checks=CHECKS,
    )
