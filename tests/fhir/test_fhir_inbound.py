"""Order bundles in: the fixture library's scenarios, conditional create, all-or-nothing,
stored raw messages and their replayed answers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from gateway.service.orders import OrderService
from gateway.store.tables import inbox, orders
from tests.fhir.fhir_support import all_fixtures, fixture_body, load_fixture

ORDER_FIXTURES = [name for name in all_fixtures() if not name.startswith(("04-", "1", "2"))]
BAD_FIXTURES = [name for name in all_fixtures() if name[:1] in "12"]


def _order_count(service: OrderService) -> int:
    with service.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(orders)).scalar() or 0)


def _post(fhir: TestClient, fixture: dict[str, Any]) -> Any:
    return fhir.post("/fhir", content=fixture_body(fixture), headers=fixture.get("headers", {}))


@pytest.mark.parametrize("name", ORDER_FIXTURES)
def test_order_fixture_is_answered_as_its_metadata_says(fhir: TestClient, name: str) -> None:
    fixture = load_fixture(name)
    expected = fixture["expected"]
    response = _post(fhir, fixture)
    assert response.status_code == expected["status"], response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    bundle = response.json()
    assert bundle["type"] == expected["bundle_type"]
    statuses = [entry["response"]["status"].split()[0] for entry in bundle["entry"]]
    assert statuses == expected["entry_status"]
    for entry, issue in zip(bundle["entry"], expected.get("entry_issue", []), strict=False):
        if issue:
            found = entry["response"]["outcome"]["issue"][0]
            assert found["code"] == issue["code"]
            assert found["expression"] == [issue["expression"]]
    if "task_status" in expected:
        order_entry = next(
            e for e in bundle["entry"] if e["response"].get("location", "").startswith("Service")
        )
        order_id = order_entry["response"]["location"].split("/")[1]
        task = fhir.get(f"/fhir/Task/{order_id}").json()
        assert task["status"] == expected["task_status"]
        assert task["businessStatus"]["coding"][0]["code"] == expected["business_status"]


@pytest.mark.parametrize("name", BAD_FIXTURES)
def test_bad_input_is_a_4xx_operation_outcome_naming_the_element(
    fhir: TestClient, service: OrderService, name: str
) -> None:
    fixture = load_fixture(name)
    expected = fixture["expected"]
    response = _post(fhir, fixture)
    assert response.status_code == expected["status"], response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    issue = outcome["issue"][0]
    assert issue["severity"] == "error"
    assert issue["code"] == expected["code"]
    assert issue["expression"] == [expected["expression"]]
    assert issue["diagnostics"]
    assert _order_count(service) == 0
    with service.engine.connect() as conn:
        stored = conn.execute(select(inbox.c.status, inbox.c.body, inbox.c.error)).all()
    assert [(row.status, row.body) for row in stored] == [("rejected", fixture_body(fixture))]
    # The operator's list shows why, not the whole OperationOutcome.
    assert stored[0].error == issue["diagnostics"]


def test_a_retried_bundle_gets_the_stored_answer_and_changes_nothing(
    fhir: TestClient, service: OrderService
) -> None:
    body = fixture_body(load_fixture("01-order-transaction"))
    first = fhir.post("/fhir", content=body)
    again = fhir.post("/fhir", content=body)
    assert again.status_code == first.status_code == 200
    assert again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"
    assert _order_count(service) == 1


def test_a_retried_rejection_is_the_same_rejection(fhir: TestClient) -> None:
    body = fixture_body(load_fixture("15-bad-servicerequest-status"))
    first, again = fhir.post("/fhir", content=body), fhir.post("/fhir", content=body)
    assert (again.status_code, again.content) == (first.status_code, first.content)


def test_conditional_create_finds_the_existing_order(
    fhir: TestClient, service: OrderService
) -> None:
    fixture = load_fixture("01-order-transaction")
    first = _post(fhir, fixture).json()
    resent = json.loads(fixture_body(fixture))
    resent["id"] = "lakeside-order-0001-resent"  # a new message, the same order
    second = fhir.post("/fhir", content=json.dumps(resent)).json()
    assert second["entry"][4]["response"]["status"] == "200 OK"
    assert second["entry"][4]["response"]["location"] == first["entry"][4]["response"]["location"]
    assert second["entry"][0]["response"]["status"] == "200 OK"  # the patient existed too
    assert _order_count(service) == 1


def test_a_duplicate_placer_number_without_condition_is_a_409(fhir: TestClient) -> None:
    fixture = load_fixture("01-order-transaction")
    _post(fhir, fixture)
    resent = json.loads(fixture_body(fixture))
    resent["id"] = "another-message"
    del resent["entry"][4]["request"]["ifNoneExist"]
    response = fhir.post("/fhir", content=json.dumps(resent))
    assert response.status_code == 409
    issue = response.json()["issue"][0]
    assert issue["code"] == "duplicate"
    assert issue["expression"] == ["Bundle.entry[4].resource.identifier"]


def test_a_transaction_is_all_or_nothing(fhir: TestClient, service: OrderService) -> None:
    bundle = json.loads(fixture_body(load_fixture("01-order-transaction")))
    second = json.loads(json.dumps(bundle["entry"][4]))
    second["fullUrl"] = "urn:uuid:6f1c0d0e-0000-4000-8000-0000000000ff"
    second["resource"]["identifier"][0]["value"] = "LS-ORD-0001"  # same placer: conflicts
    del second["request"]["ifNoneExist"]
    bundle["entry"].append(second)
    response = fhir.post("/fhir", content=json.dumps(bundle))
    assert response.status_code == 409, response.text
    assert response.json()["issue"][0]["expression"] == ["Bundle.entry[8].resource.identifier"]
    assert _order_count(service) == 0  # the first order was rolled back with the second


def test_one_resource_post_with_if_none_exist(fhir: TestClient, service: OrderService) -> None:
    fixture = load_fixture("04-single-servicerequest")
    body = fixture_body(fixture)
    first = fhir.post("/fhir/ServiceRequest", content=body, headers=fixture["headers"])
    assert first.status_code == fixture["expected"]["status"], first.text
    assert first.headers["Location"].startswith(f"ServiceRequest/{first.json()['id']}")
    assert first.headers["ETag"] == 'W/"1"'
    changed = json.loads(body)
    # Resent changed (a note would now be refused: the gateway does not read notes).
    changed["authoredOn"] = "2026-10-01T08:00:00Z"
    second = fhir.post(
        "/fhir/ServiceRequest", content=json.dumps(changed), headers=fixture["headers"]
    )
    assert second.status_code == fixture["expected"]["retry_status"]
    assert second.json()["id"] == first.json()["id"]
    assert _order_count(service) == 1


def test_one_resource_post_of_the_wrong_type(fhir: TestClient) -> None:
    response = fhir.post("/fhir/ServiceRequest", content=b'{"resourceType": "Patient"}')
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["resourceType"]


def test_unsupported_condition_is_refused(fhir: TestClient) -> None:
    bundle = json.loads(fixture_body(load_fixture("01-order-transaction")))
    bundle["entry"][4]["request"]["ifNoneExist"] = "status=active"
    response = fhir.post("/fhir", content=json.dumps(bundle))
    assert response.status_code == 400
    issue = response.json()["issue"][0]
    assert (issue["code"], issue["expression"]) == (
        "not-supported",
        ["Bundle.entry[4].request.ifNoneExist"],
    )


def test_framework_errors_under_fhir_are_operation_outcomes(fhir: TestClient) -> None:
    unknown = fhir.get("/fhir/Condition/1")
    assert unknown.status_code in (404, 405)
    assert unknown.json()["resourceType"] == "OperationOutcome"
    media = fhir.post("/fhir", content=b"<Bundle/>", headers={"Content-Type": "application/xml"})
    assert media.status_code == 415
    assert media.json()["issue"][0]["code"] == "not-supported"
    missing = fhir.get("/fhir/Task/ord-nope")
    assert (missing.status_code, missing.json()["issue"][0]["code"]) == (404, "not-found")
    elsewhere = fhir.get("/orders/ord-nope")
    assert elsewhere.headers["content-type"].startswith("application/problem+json")


def test_medication_request_based_on_the_service_request_is_one_order(
    fhir: TestClient, service: OrderService
) -> None:
    bundle = json.loads(fixture_body(load_fixture("01-order-transaction")))
    bundle["entry"].append(
        {
            "fullUrl": "urn:uuid:6f1c0d0e-0000-4000-8000-0000000000aa",
            "resource": {
                "resourceType": "MedicationRequest",
                "status": "active",
                "intent": "order",
                "medicationCodeableConcept": {"text": "Exampleucel"},
                "subject": {"reference": "urn:uuid:6f1c0d0e-0000-4000-8000-000000000001"},
                "basedOn": [{"reference": "urn:uuid:6f1c0d0e-0000-4000-8000-000000000005"}],
            },
            "request": {"method": "POST", "url": "MedicationRequest"},
        }
    )
    response = fhir.post("/fhir", content=json.dumps(bundle))
    assert response.status_code == 200, response.text
    assert _order_count(service) == 1


def test_a_condition_never_matches_another_sites_order(
    fhir: TestClient, service: OrderService, new_order: Any
) -> None:
    """If-None-Exist by order id or CoI must not answer with an order the caller may not see."""
    from adapters.fhir import terminology as t

    elsewhere = new_order(site="st-mary")
    fixture = load_fixture("04-single-servicerequest")
    for number, condition in enumerate(
        (f"{t.ORDER_SYSTEM}|{elsewhere.id}", f"{t.COI_SYSTEM}|{elsewhere.coi}")
    ):
        body = fixture_body(fixture).replace(b"LS-ORD-0201", f"LS-ORD-090{number}".encode())
        headers = {**fixture["headers"], "If-None-Exist": f"identifier={condition}"}
        answer = fhir.post("/fhir/ServiceRequest", content=body, headers=headers)
        assert answer.status_code == 201, answer.text  # nothing the caller can see matched
        assert elsewhere.id not in answer.text


def test_relative_references_resolve_against_an_absolute_full_url(fhir: TestClient) -> None:
    # Engines that give entries server URLs write references relative to that server, and
    # entries being POSTed have no id: FHIR resolves "Patient/p1" to the fullUrl
    # http://…/fhir/Patient/p1 of the same bundle.
    bundle = json.loads(fixture_body(load_fixture("01-order-transaction")))
    base = "http://lakeside.example.org/fhir"
    names: dict[str, str] = {}
    for index, entry in enumerate(bundle["entry"]):
        kind = entry["resource"]["resourceType"]
        names[entry["fullUrl"]] = f"{kind}/e{index}"
        entry["fullUrl"] = f"{base}/{kind}/e{index}"
    text = json.dumps(bundle)
    for urn, relative in names.items():
        text = text.replace(f'"reference": "{urn}"', f'"reference": "{relative}"')
    assert "urn:uuid" not in text
    response = fhir.post("/fhir", content=text)
    assert response.status_code == 200, response.text
    assert response.json()["entry"][4]["response"]["status"].startswith("201")
