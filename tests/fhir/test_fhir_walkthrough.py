"""What hospital IT ran into connecting an EHR over FHIR R4 by the docs: each test is one
mistake or one documented call, and the answer the gateway owes it."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from gateway.service.orders import OrderService
from gateway.store.tables import orders
from tests.fhir.fhir_support import fixture_body, load_fixture

PLACER = "http://lakeside.example.org/fhir/sid/order-number"


def _order_count(service: OrderService) -> int:
    with service.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(orders)).scalar() or 0)


def _bundle() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(fixture_body(load_fixture("01-order-transaction")))
    return data


def _another_patient(text: str) -> str:
    return text.replace("MRN-SYN-0001", "MRN-SYN-0999").replace("Alpha", "Bravo")


def test_a_condition_matching_another_patients_order_is_refused_not_answered_with_it(
    fhir: TestClient, service: OrderService, ordered: dict[str, Any]
) -> None:
    """The placer number reused (or mistyped) for another patient: the conditional create
    must not hand back the first patient's order and patient as if they were this one's."""
    first_order = ordered["entry"][4]["response"]["location"]
    resent = json.loads(_another_patient(json.dumps(_bundle())))
    resent["id"] = "lakeside-order-other-patient"
    response = fhir.post("/fhir", content=json.dumps(resent))
    assert response.status_code == 409, response.text
    issue = response.json()["issue"][0]
    assert issue["code"] == "conflict"
    assert issue["expression"] == ["Bundle.entry[4].request.ifNoneExist"]
    assert "another patient" in issue["diagnostics"]
    assert "MRN-SYN-0001" not in response.text  # the other patient's MRN is not told
    assert first_order.split("/")[1] in issue["diagnostics"]
    assert _order_count(service) == 1


def test_a_condition_matching_an_order_for_another_therapy_is_refused(
    fhir: TestClient, service: OrderService, ordered: dict[str, Any]
) -> None:
    resent = _bundle()
    resent["id"] = "lakeside-order-other-therapy"
    resent["entry"][4]["resource"]["code"]["coding"][0]["code"] = "CART-SAM-01"
    response = fhir.post("/fhir", content=json.dumps(resent))
    assert response.status_code == 409, response.text
    assert "another therapy" in response.json()["issue"][0]["diagnostics"]
    assert _order_count(service) == 1


def test_a_single_resource_condition_matching_another_patient_is_refused(
    fhir: TestClient, service: OrderService
) -> None:
    fixture = load_fixture("04-single-servicerequest")
    first = fhir.post(
        "/fhir/ServiceRequest", content=fixture_body(fixture), headers=fixture["headers"]
    )
    assert first.status_code == 201, first.text
    other = fixture_body(fixture).replace(b"MRN-SYN-0201", b"MRN-SYN-0299")
    response = fhir.post("/fhir/ServiceRequest", content=other, headers=fixture["headers"])
    assert response.status_code == 409, response.text
    issue = response.json()["issue"][0]
    assert issue["code"] == "conflict"
    assert issue["location"] == ["http.If-None-Exist"]
    assert _order_count(service) == 1
