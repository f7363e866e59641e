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
STATES = "https://vein2vein.dev/fhir/CodeSystem/order-state"


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


def _inbox(service: OrderService) -> list[Any]:
    from gateway.store.tables import inbox

    with service.engine.connect() as conn:
        return list(conn.execute(select(inbox).order_by(inbox.c.id)))


def test_a_body_of_another_media_type_is_stored_with_its_415(
    fhir: TestClient, service: OrderService
) -> None:
    """An EHR sending XML (or text/plain) is refused, and the message is kept like every
    refused one, so nothing an EHR sent leaves no trace."""
    xml = b'<Bundle xmlns="http://hl7.org/fhir"><type value="transaction"/></Bundle>'
    response = fhir.post("/fhir", content=xml, headers={"Content-Type": "application/fhir+xml"})
    assert response.status_code == 415, response.text
    assert response.json()["issue"][0]["code"] == "not-supported"
    again = fhir.post("/fhir", content=xml, headers={"Content-Type": "application/fhir+xml"})
    assert (again.status_code, again.content) == (415, response.content)
    stored = _inbox(service)
    assert len(stored) == 1
    assert (stored[0].status, bytes(stored[0].body)) == ("rejected", xml)


def test_a_bundle_refused_for_its_media_type_is_read_when_resent_as_json(
    fhir: TestClient, service: OrderService
) -> None:
    body = json.dumps({k: v for k, v in _bundle().items() if k != "id"})
    refused = fhir.post("/fhir", content=body, headers={"Content-Type": "text/plain"})
    assert refused.status_code == 415
    accepted = fhir.post("/fhir", content=body)
    assert accepted.status_code == 200, accepted.text
    assert _order_count(service) == 1


def test_a_service_request_and_a_task_update_of_another_media_type_are_stored(
    fhir: TestClient, service: OrderService, ordered: dict[str, Any]
) -> None:
    order_id = ordered["entry"][4]["response"]["location"].split("/")[1]
    text = {"Content-Type": "text/plain"}
    assert fhir.post("/fhir/ServiceRequest", content=b"{}", headers=text).status_code == 415
    assert fhir.put(f"/fhir/Task/{order_id}", content=b"{}", headers=text).status_code == 415
    refused = [row for row in _inbox(service) if row.status == "rejected"]
    assert len(refused) == 2


def test_a_merge_patch_under_its_own_media_type_is_applied(
    fhir: TestClient, ordered: dict[str, Any]
) -> None:
    """docs/fhir.md: PATCH takes a merge patch; RFC 7396 names its media type."""
    order_id = ordered["entry"][4]["response"]["location"].split("/")[1]
    patch = {"status": "cancelled", "statusReason": {"text": "patient withdrew consent"}}
    response = fhir.patch(
        f"/fhir/Task/{order_id}",
        content=json.dumps(patch),
        headers={"Content-Type": "application/merge-patch+json", "If-Match": 'W/"1"'},
    )
    assert response.status_code == 200, response.text
    assert response.json()["businessStatus"]["coding"][0]["code"] == "CANCELLED"
    metadata = fhir.get("/fhir/metadata").json()
    assert "application/merge-patch+json" in metadata["patchFormat"]


def test_a_format_other_than_json_is_refused_406_not_answered_as_json(
    fhir: TestClient, ordered: dict[str, Any]
) -> None:
    order_id = ordered["entry"][4]["response"]["location"].split("/")[1]
    for path in (f"/fhir/Task/{order_id}?_format=xml", "/fhir/Task?_format=application/fhir+xml"):
        response = fhir.get(path)
        assert response.status_code == 406, (path, response.text)
        issue = response.json()["issue"][0]
        assert (issue["code"], issue["location"]) == ("not-supported", ["http._format"])
    xml_only = {"Accept": "application/fhir+xml"}
    response = fhir.get("/fhir/metadata", headers=xml_only)
    assert response.status_code == 406
    assert response.json()["issue"][0]["location"] == ["http.Accept"]
    for accept in ("*/*", "application/fhir+json", "application/fhir+xml;q=1, application/json"):
        assert fhir.get("/fhir/metadata", headers={"Accept": accept}).status_code == 200
    assert fhir.get(f"/fhir/Task/{order_id}?_format=json").status_code == 200
    # _format overrides Accept, as FHIR says
    json_format = f"/fhir/Task/{order_id}?_format=application/fhir%2Bjson"
    assert fhir.get(json_format, headers=xml_only).status_code == 200


def _two_patients(fhir: TestClient) -> tuple[str, str]:
    """Two orders of two patients; returns the first one's order id and patient reference."""
    first = fhir.post("/fhir", content=json.dumps(_bundle())).json()
    other = json.loads(_another_patient(json.dumps(_bundle()).replace("LS-ORD-0001", "LS-2")))
    other["id"] = "lakeside-order-2"
    assert fhir.post("/fhir", content=json.dumps(other)).status_code == 200
    order_id = first["entry"][4]["response"]["location"].split("/")[1]
    task = fhir.get(f"/fhir/Task/{order_id}").json()
    return order_id, task["for"]["reference"]


def test_subject_finds_the_patients_orders_instead_of_being_ignored(fhir: TestClient) -> None:
    """R4's ServiceRequest and Task take `subject` as well as `patient`; ignoring it
    answered every order of the site to a client asking for one patient's."""
    order_id, patient = _two_patients(fhir)
    for path in (f"/fhir/ServiceRequest?subject={patient}", f"/fhir/Task?subject={patient}"):
        found = fhir.get(path).json()
        assert [entry["resource"]["id"] for entry in found["entry"]] == [order_id], path


def test_for_on_a_service_request_is_reported_not_silently_dropped(fhir: TestClient) -> None:
    _, patient = _two_patients(fhir)
    found = fhir.get(f"/fhir/ServiceRequest?for={patient}").json()
    outcome = found["entry"][-1]
    assert outcome["search"]["mode"] == "outcome"
    assert outcome["resource"]["issue"][0]["expression"] == ["for"]


def test_patient_and_for_together_must_both_hold(fhir: TestClient) -> None:
    order_id, patient = _two_patients(fhir)
    other_task = fhir.get("/fhir/Task?identifier=" + PLACER + "|LS-2").json()
    other = other_task["entry"][0]["resource"]["for"]["reference"]
    assert fhir.get(f"/fhir/Task?patient={patient}&for={other}").json()["entry"] == []
    both = fhir.get(f"/fhir/Task?patient={patient}&for={patient}").json()
    assert [entry["resource"]["id"] for entry in both["entry"]] == [order_id]


def test_a_refused_transition_names_the_element_that_asked_for_it(
    fhir: TestClient, ordered: dict[str, Any]
) -> None:
    order_id = ordered["entry"][4]["response"]["location"].split("/")[1]
    task = fhir.get(f"/fhir/Task/{order_id}").json()
    completed = fhir.put(f"/fhir/Task/{order_id}", json={**task, "status": "completed"})
    assert completed.status_code == 422, completed.text
    issue = completed.json()["issue"][0]
    assert (issue["code"], issue["expression"]) == ("business-rule", ["Task.status"])
    assert issue["diagnostics"].startswith("illegal_transition")
    infused = {"coding": [{"system": STATES, "code": "INFUSED"}]}
    response = fhir.put(f"/fhir/Task/{order_id}", json={**task, "businessStatus": infused})
    assert response.status_code == 422, response.text
    assert response.json()["issue"][0]["expression"] == ["Task.businessStatus"]


def test_malformed_json_is_located_at_the_resource_the_endpoint_reads(
    fhir: TestClient, ordered: dict[str, Any]
) -> None:
    order_id = ordered["entry"][4]["response"]["location"].split("/")[1]
    broken = b'{"resourceType": "ServiceRequest",'
    for method, path, root in (
        ("POST", "/fhir", "Bundle"),
        ("POST", "/fhir/ServiceRequest", "ServiceRequest"),
        ("PUT", f"/fhir/Task/{order_id}", "Task"),
    ):
        response = fhir.request(method, path, content=broken)
        assert response.status_code == 400, response.text
        issue = response.json()["issue"][0]
        assert (issue["code"], issue["expression"]) == ("structure", [root]), path


def test_a_body_over_the_limit_is_refused_413_before_it_is_read_whole(
    fhir: TestClient, service: OrderService
) -> None:
    bundle = _bundle()
    bundle["entry"][4]["resource"]["note"] = [{"text": "x" * (5 * 1024 * 1024)}]
    body = json.dumps(bundle).encode()
    response = fhir.post("/fhir", content=body)
    assert response.status_code == 413, response.text[:300]
    assert response.json()["issue"][0]["code"] == "too-costly"

    def chunks() -> Any:  # no Content-Length: counted as it streams in
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    streamed = fhir.post("/fhir/ServiceRequest", content=chunks())
    assert streamed.status_code == 413, streamed.text[:300]
    assert _order_count(service) == 0
    assert fhir.post("/fhir", content=json.dumps(_bundle())).status_code == 200


def test_a_request_not_to_treat_is_not_placed_as_an_order(
    fhir: TestClient, service: OrderService
) -> None:
    bundle = _bundle()
    bundle["entry"][4]["resource"]["doNotPerform"] = True
    response = fhir.post("/fhir", content=json.dumps(bundle))
    assert response.status_code == 422, response.text
    issue = response.json()["issue"][0]
    assert issue["expression"] == ["Bundle.entry[4].resource.doNotPerform"]
    assert _order_count(service) == 0


def test_a_modifier_extension_is_refused_not_ignored(
    fhir: TestClient, service: OrderService
) -> None:
    modifier = [{"url": "http://ehr.example/fhir/ext/on-trial-hold", "valueBoolean": True}]
    bundle = _bundle()
    bundle["entry"][4]["resource"]["code"]["modifierExtension"] = modifier
    response = fhir.post("/fhir", content=json.dumps(bundle))
    assert response.status_code == 400, response.text
    issue = response.json()["issue"][0]
    assert issue["code"] == "not-supported"
    assert issue["expression"] == ["Bundle.entry[4].resource.code.modifierExtension"]
    patient_modified = _bundle()
    patient_modified["entry"][0]["resource"]["modifierExtension"] = modifier
    response = fhir.post("/fhir", content=json.dumps(patient_modified))
    assert response.status_code == 400, response.text
    assert response.json()["issue"][0]["expression"] == [
        "Bundle.entry[0].resource.modifierExtension"
    ]
    assert _order_count(service) == 0
