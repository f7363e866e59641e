"""Element names the reader does not know are never dropped in silence: a name that is not
R4 is refused with the name it likely meant; an R4 element the gateway does not read is
refused, or placed with a warning when the EHR asks for lenient handling."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from adapters.fhir.element_names import KNOWN, UNREAD
from gateway.service.orders import OrderService
from gateway.store.tables import inbox, orders
from tests.fhir.fhir_support import fixture_body, load_fixture

ORDER_AT = 4  # the ServiceRequest's entry in 01-order-transaction
LENIENT = {"Prefer": "handling=lenient"}


def _bundle() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(fixture_body(load_fixture("01-order-transaction")))
    return data


def _order() -> dict[str, Any]:
    request: dict[str, Any] = _bundle()["entry"][ORDER_AT]["resource"]
    return request


def _renamed(resource: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """The resource with one element renamed, keeping its value and place."""
    return {new if key == old else key: value for key, value in resource.items()}


def _order_count(service: OrderService) -> int:
    with service.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(orders)).scalar() or 0)


def _stored(service: OrderService) -> list[Any]:
    with service.engine.connect() as conn:
        return list(conn.execute(select(inbox.c.status, inbox.c.body)).all())


def _miscased(name: str) -> str:
    """``occurrenceDateTime`` → ``occurrenceDatetime``; ``status`` → ``Status``."""
    upper = [index for index, char in enumerate(name) if char.isupper()]
    at = upper[-1] if upper else 0
    return name[:at] + name[at].swapcase() + name[at + 1 :]


def test_a_misspelt_occurrence_date_is_refused_and_stored(
    fhir: TestClient, service: OrderService
) -> None:
    bundle = _bundle()
    request = bundle["entry"][ORDER_AT]["resource"]
    bundle["entry"][ORDER_AT]["resource"] = _renamed(
        request, "occurrenceDateTime", "occurrenceDatetime"
    )
    body = json.dumps(bundle).encode()
    response = fhir.post("/fhir", content=body)
    assert response.status_code == 400, response.text
    (issue,) = response.json()["issue"]
    assert issue["code"] == "structure"
    assert issue["expression"] == [f"Bundle.entry[{ORDER_AT}].resource.occurrenceDatetime"]
    assert "not an element of ServiceRequest in FHIR R4" in issue["diagnostics"]
    assert "Did you mean 'occurrenceDateTime'?" in issue["diagnostics"]
    assert _order_count(service) == 0
    assert [(row.status, row.body) for row in _stored(service)] == [("rejected", body)]


def test_a_misspelt_element_of_one_posted_service_request_is_named_there(
    fhir: TestClient, service: OrderService
) -> None:
    fixture = load_fixture("04-single-servicerequest")
    resource = json.loads(fixture_body(fixture))
    resource["occurrenceDatetime"] = "2027-01-15T09:00:00Z"
    body = json.dumps(resource).encode()
    response = fhir.post("/fhir/ServiceRequest", content=body, headers=fixture["headers"])
    assert response.status_code == 400, response.text
    issue = response.json()["issue"][0]
    assert issue["expression"] == ["ServiceRequest.occurrenceDatetime"]
    assert "occurrenceDateTime" in issue["diagnostics"]
    assert [(row.status, row.body) for row in _stored(service)] == [("rejected", body)]


ORDER_ELEMENTS = sorted(name for name in _order() if name != "resourceType")


@pytest.mark.parametrize("name", ORDER_ELEMENTS)
def test_every_element_of_the_order_miscased_is_refused_with_its_right_name(
    fhir: TestClient, service: OrderService, name: str
) -> None:
    wrong = _miscased(name)
    bundle = _bundle()
    bundle["entry"][ORDER_AT]["resource"] = _renamed(_order(), name, wrong)
    response = fhir.post("/fhir", content=json.dumps(bundle))
    assert response.status_code == 400, response.text
    issue = response.json()["issue"][0]
    assert (issue["code"], issue["expression"]) == (
        "structure",
        [f"Bundle.entry[{ORDER_AT}].resource.{wrong}"],
    )
    assert f"Did you mean '{name}'?" in issue["diagnostics"]
    assert _order_count(service) == 0


def _mutations(name: str) -> st.SearchStrategy[str]:
    letters = st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789")
    at = st.integers(0, len(name) - 1)
    return st.one_of(
        at.map(lambda i: name[:i] + name[i + 1 :]),  # a letter left out
        st.tuples(at, letters).map(lambda p: name[: p[0]] + p[1] + name[p[0] :]),  # one too many
        st.tuples(at, letters).map(lambda p: name[: p[0]] + p[1] + name[p[0] + 1 :]),  # mistyped
        at.map(lambda i: name[:i] + name[i].swapcase() + name[i + 1 :]),  # wrong case
    )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.sampled_from(ORDER_ELEMENTS).flatmap(lambda name: st.tuples(st.just(name), _mutations(name)))
)
def test_any_misspelling_of_an_order_element_is_refused_never_dropped(
    fhir: TestClient, service: OrderService, renaming: tuple[str, str]
) -> None:
    name, wrong = renaming
    bundle = _bundle()
    bundle["entry"][ORDER_AT]["resource"] = _renamed(_order(), name, wrong)
    # The database outlives each example: an earlier one may rightly have placed an order.
    before = _order_count(service)
    response = fhir.post("/fhir", content=json.dumps(bundle))
    if wrong in KNOWN["ServiceRequest"]:
        # Another real element (status → _status): then the original is missing, which the
        # reader's own checks answer; what matters here is only that it is answered.
        assert response.status_code < 500
        return
    assert response.status_code == 400, response.text
    issue = response.json()["issue"][0]
    assert issue["code"] == "structure"
    assert issue["expression"] == [f"Bundle.entry[{ORDER_AT}].resource.{wrong}"]
    assert _order_count(service) == before


def test_an_unread_occurrence_timing_is_refused_unless_the_ehr_asks_for_lenient(
    fhir: TestClient, service: OrderService
) -> None:
    bundle = _bundle()
    request = bundle["entry"][ORDER_AT]["resource"]
    del request["occurrenceDateTime"]
    request["occurrenceTiming"] = {"event": ["2027-01-15T09:00:00Z"]}
    body = json.dumps(bundle).encode()

    refused = fhir.post("/fhir", content=body)
    assert refused.status_code == 400, refused.text
    issue = refused.json()["issue"][0]
    where = f"Bundle.entry[{ORDER_AT}].resource.occurrenceTiming"
    assert (issue["severity"], issue["code"], issue["expression"]) == (
        "error",
        "not-supported",
        [where],
    )
    assert "handling=lenient" in issue["diagnostics"]
    assert _order_count(service) == 0
    # Sent again with the same answer, not read afresh: it is the same message.
    assert fhir.post("/fhir", content=body).headers.get("Idempotent-Replayed") == "true"

    # Asked for lenient handling, the same body is a new message: placed, and warned.
    placed = fhir.post("/fhir", content=body, headers=LENIENT)
    assert placed.status_code == 200, placed.text
    response = placed.json()["entry"][ORDER_AT]["response"]
    assert response["status"].startswith("201")
    (warning,) = response["outcome"]["issue"]
    assert (warning["severity"], warning["code"], warning["expression"]) == (
        "warning",
        "not-supported",
        [where],
    )
    assert _order_count(service) == 1
    assert [row.status for row in _stored(service)] == ["rejected", "accepted"]


@pytest.mark.parametrize("name", sorted(UNREAD["ServiceRequest"]))
def test_each_unread_order_element_is_refused(
    fhir: TestClient, service: OrderService, name: str
) -> None:
    bundle = _bundle()
    bundle["entry"][ORDER_AT]["resource"][name] = {"text": "sent by the EHR"}
    response = fhir.post("/fhir", content=json.dumps(bundle))
    assert response.status_code == 400, response.text
    issue = response.json()["issue"][0]
    assert issue["code"] == "not-supported"
    assert issue["expression"] == [f"Bundle.entry[{ORDER_AT}].resource.{name}"]
    assert _order_count(service) == 0


def test_elements_the_gateway_safely_ignores_make_no_noise(fhir: TestClient) -> None:
    bundle = _bundle()
    request = bundle["entry"][ORDER_AT]["resource"]
    request["text"] = {"status": "generated", "div": "<div>Exampleucel order</div>"}
    request["meta"] = {"lastUpdated": "2026-10-01T08:00:00Z"}
    request["category"] = [{"text": "cell therapy"}]
    request["reasonCode"] = [{"text": "relapsed DLBCL"}]
    request["priority"] = "routine"
    request["authoredOn"] = "2026-10-01T08:00:00Z"
    request["_status"] = {"extension": [{"url": "http://ehr.example/x", "valueString": "y"}]}
    patient = bundle["entry"][0]["resource"]
    patient.update(active=True, deceasedBoolean=False, telecom=[{"system": "phone"}])
    response = fhir.post("/fhir", content=json.dumps(bundle), headers=LENIENT)
    assert response.status_code == 200, response.text
    answers = [entry["response"] for entry in response.json()["entry"]]
    assert "outcome" not in answers[ORDER_AT] and "outcome" not in answers[0]


def test_extensions_of_a_non_primitive_element_are_not_r4(fhir: TestClient) -> None:
    bundle = _bundle()
    bundle["entry"][ORDER_AT]["resource"]["_code"] = {"extension": []}
    response = fhir.post("/fhir", content=json.dumps(bundle))
    assert response.status_code == 400
    issue = response.json()["issue"][0]
    assert issue["expression"] == [f"Bundle.entry[{ORDER_AT}].resource._code"]


def test_the_patient_is_checked_too(fhir: TestClient, service: OrderService) -> None:
    bundle = _bundle()
    bundle["entry"][0]["resource"] = _renamed(bundle["entry"][0]["resource"], "birthDate", "dob")
    misspelt = fhir.post("/fhir", content=json.dumps(bundle))
    assert misspelt.status_code == 400
    assert misspelt.json()["issue"][0]["expression"] == ["Bundle.entry[0].resource.dob"]

    bundle = _bundle()
    bundle["entry"][0]["resource"]["link"] = [
        {"other": {"display": "the surviving record"}, "type": "replaced-by"}
    ]
    merged = fhir.post("/fhir", content=json.dumps(bundle))
    assert merged.status_code == 400
    assert merged.json()["issue"][0]["code"] == "not-supported"
    assert merged.json()["issue"][0]["expression"] == ["Bundle.entry[0].resource.link"]
    # Patient.link is an R4 modifier: refused even when lenient handling is asked for.
    lenient = fhir.post("/fhir", content=json.dumps(bundle), headers=LENIENT)
    assert lenient.status_code == 400, lenient.text
    assert lenient.json()["issue"][0]["expression"] == ["Bundle.entry[0].resource.link"]
    assert _order_count(service) == 0


def test_a_contained_patient_is_checked_where_it_is(fhir: TestClient) -> None:
    fixture = load_fixture("04-single-servicerequest")
    resource = json.loads(fixture_body(fixture))
    resource["contained"][0]["deceasedDateTime"] = "2026-09-30"
    assert resource["contained"][0]["resourceType"] == "Patient"
    response = fhir.post(
        "/fhir/ServiceRequest", content=json.dumps(resource), headers=fixture["headers"]
    )
    assert response.status_code == 422, response.text
    issue = response.json()["issue"][0]
    assert issue["expression"] == ["ServiceRequest.contained[0].deceasedDateTime"]
    assert "2026-09-30" not in issue["diagnostics"]
    # The answer to one ServiceRequest is the order itself: no place for a warning.
    assert "handling=lenient" not in issue["diagnostics"]


def test_a_batch_entry_with_an_unread_element_fails_alone(
    fhir: TestClient, service: OrderService
) -> None:
    bundle = _bundle()
    bundle["type"] = "batch"
    bundle["entry"][ORDER_AT]["resource"]["quantityQuantity"] = {"value": 2}
    response = fhir.post("/fhir", content=json.dumps(bundle))
    assert response.status_code == 200, response.text
    answer = response.json()["entry"][ORDER_AT]["response"]
    assert answer["status"].startswith("400")
    assert answer["outcome"]["issue"][0]["expression"] == [
        f"Bundle.entry[{ORDER_AT}].resource.quantityQuantity"
    ]
    assert _order_count(service) == 0


def test_a_folded_medication_request_is_checked_like_an_order(fhir: TestClient) -> None:
    bundle = _bundle()
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
                "dispenseRequest": {"numberOfRepeatsAllowed": 1},
            },
            "request": {"method": "POST", "url": "MedicationRequest"},
        }
    )
    assert bundle["entry"][ORDER_AT]["fullUrl"].endswith("000000000005")
    refused = fhir.post("/fhir", content=json.dumps(bundle))
    assert refused.status_code == 400
    where = "Bundle.entry[8].resource.dispenseRequest"
    assert refused.json()["issue"][0]["expression"] == [where]
    placed = fhir.post("/fhir", content=json.dumps(bundle), headers=LENIENT)
    assert placed.status_code == 200, placed.text
    issues = placed.json()["entry"][8]["response"]["outcome"]["issue"]
    assert [issue["severity"] for issue in issues] == ["information", "warning"]


def _order_id(ordered: dict[str, Any]) -> str:
    return str(ordered["entry"][ORDER_AT]["response"]["location"].split("/")[1])


def test_a_misspelt_business_status_on_a_task_is_refused_not_a_no_op(
    fhir: TestClient, ordered: dict[str, Any], service: OrderService
) -> None:
    order_id = _order_id(ordered)
    task = fhir.get(f"/fhir/Task/{order_id}").json()
    business = task.pop("businessStatus")
    business["coding"][0]["code"] = "ENROLLED"
    task["bussinessStatus"] = business
    response = fhir.put(f"/fhir/Task/{order_id}", json=task)
    assert response.status_code == 400, response.text
    issue = response.json()["issue"][0]
    assert (issue["code"], issue["expression"]) == ("structure", ["Task.bussinessStatus"])
    assert "Did you mean 'businessStatus'?" in issue["diagnostics"]
    assert fhir.get(f"/fhir/Task/{order_id}").json()["meta"]["versionId"] == "1"
    assert _stored(service)[-1].status == "rejected"
