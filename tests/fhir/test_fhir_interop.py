"""What real EHRs commonly send is answered, not refused: DSTU2's JSON media type; notes,
priorities and dosage text (accepted with a warning naming them). Modifier elements, which
change what a resource means, are never downgraded to a warning."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.fhir.fhir_support import fixture_body, load_fixture

DSTU2_JSON = "application/json+fhir"


def _order_id(ordered: dict[str, Any]) -> str:
    return str(ordered["entry"][4]["response"]["location"].split("/")[1])


# --- media types ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "accept", [DSTU2_JSON, "text/json+fhir", f"application/fhir+xml;q=0.5, {DSTU2_JSON};q=1"]
)
def test_the_dstu2_json_media_type_in_accept_is_answered_as_json(
    fhir: TestClient, ordered: dict[str, Any], accept: str
) -> None:
    order_id = _order_id(ordered)
    for path in ("/fhir/metadata", f"/fhir/Task/{order_id}", "/fhir/Task"):
        response = fhir.get(path, headers={"Accept": accept})
        assert response.status_code == 200, (path, accept, response.text)
        assert response.json()["resourceType"] in ("CapabilityStatement", "Task", "Bundle")


@pytest.mark.parametrize(
    "value", ["application/json%2Bfhir", "application/json+fhir", "application/fhir+json"]
)
def test_the_dstu2_json_format_parameter_is_answered_as_json(
    fhir: TestClient, ordered: dict[str, Any], value: str
) -> None:
    """An unencoded ``+`` reads as a space in a query string; it is taken as the ``+``."""
    order_id = _order_id(ordered)
    response = fhir.get(f"/fhir/Task/{order_id}?_format={value}")
    assert response.status_code == 200, response.text
    # _format still overrides Accept, and other formats are still refused.
    xml_only = {"Accept": "application/fhir+xml"}
    assert fhir.get(f"/fhir/Task/{order_id}?_format={value}", headers=xml_only).status_code == 200
    assert fhir.get(f"/fhir/Task/{order_id}?_format=application/fhir+xml").status_code == 406
    assert fhir.get(f"/fhir/Task/{order_id}?_format=application/xml+fhir").status_code == 406


def test_a_body_sent_as_dstu2_json_is_read(fhir: TestClient) -> None:
    dstu2 = {"Content-Type": f"{DSTU2_JSON}; charset=utf-8"}
    bundle = fixture_body(load_fixture("01-order-transaction"))
    placed = fhir.post("/fhir", content=bundle, headers=dstu2)
    assert placed.status_code == 200, placed.text
    order_id = _order_id(placed.json())

    fixture = load_fixture("04-single-servicerequest")
    created = fhir.post(
        "/fhir/ServiceRequest",
        content=fixture_body(fixture),
        headers={**fixture["headers"], **dstu2},
    )
    assert created.status_code in (200, 201), created.text

    task = fhir.get(f"/fhir/Task/{order_id}").json()
    task["status"] = "cancelled"
    task["statusReason"] = {"text": "withdrew consent"}
    updated = fhir.put(f"/fhir/Task/{order_id}", content=json.dumps(task), headers=dstu2)
    assert updated.status_code == 200, updated.text
    assert updated.json()["status"] == "cancelled"
