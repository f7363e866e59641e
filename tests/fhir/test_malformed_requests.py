"""Malformed input the review found answered with HTTP 500: each is now a 4xx
OperationOutcome naming what is wrong, and nothing that was accepted breaks later reads."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.fhir.fhir_support import fixture_body, load_fixture


def _outcome(response: Any, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return body  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "query",
    [
        "_count=\u00b2",
        "_lastUpdated=9999-12-31",
        "_lastUpdated=9999-12-31T23:59:59Z",
        "_lastUpdated=0001-01-01T00:00:00%2B01:00",
    ],
)
def test_search_values_out_of_range_are_refused(fhir: TestClient, query: str) -> None:
    _outcome(fhir.get(f"/fhir/Task?{query}"))


def test_a_body_nested_too_deeply_is_refused(fhir: TestClient) -> None:
    deep = b'{"resourceType": "Bundle", "entry": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    issue = _outcome(fhir.post("/fhir", content=deep))["issue"][0]
    assert issue["code"] == "structure"


def test_a_patch_index_that_is_not_an_ascii_number_is_refused(
    fhir: TestClient, ordered: dict[str, Any]
) -> None:
    order_id = ordered["entry"][4]["response"]["location"].split("/")[1]
    patch = [{"op": "replace", "path": "/identifier/\u00b2/value", "value": "x"}]
    response = fhir.patch(
        f"/fhir/Task/{order_id}",
        content=json.dumps(patch),
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert 400 <= response.status_code < 500, response.text


def test_a_time_with_no_utc_is_refused_and_reads_stay_whole(fhir: TestClient) -> None:
    body = fixture_body(load_fixture("01-order-transaction")).replace(
        b"2027-01-15T09:00:00Z", b"9999-12-31T23:00:00-05:00"
    )
    issue = _outcome(fhir.post("/fhir", content=body))["issue"][0]
    assert "dateTime" in issue["diagnostics"]
    assert fhir.get("/fhir/Task").status_code == 200
