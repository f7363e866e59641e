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


# --- commentary: notes, priority, dosage text -----------------------------------------

ORDER_AT = 4  # the ServiceRequest's entry in 01-order-transaction
LENIENT = {"Prefer": "handling=lenient"}
NOTE = [{"text": "Patient prefers morning apheresis; Smith, MRN 12345."}]


def _bundle() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(fixture_body(load_fixture("01-order-transaction")))
    return data


def _warnings(answer: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    issues = answer.get("outcome", {}).get("issue", [])
    return [
        (issue["severity"], issue["code"], issue.get("expression", []))
        for issue in issues
        if issue["severity"] == "warning"
    ]


@pytest.mark.parametrize("headers", [{}, LENIENT], ids=["strict", "lenient"])
@pytest.mark.parametrize(
    ("name", "value"),
    [("note", NOTE), ("priority", "urgent"), ("priority", "stat"), ("priority", "asap")],
)
def test_a_service_request_note_or_priority_is_placed_with_a_warning(
    fhir: TestClient, headers: dict[str, str], name: str, value: Any
) -> None:
    bundle = _bundle()
    bundle["entry"][ORDER_AT]["resource"][name] = value
    response = fhir.post("/fhir", content=json.dumps(bundle), headers=headers)
    assert response.status_code == 200, response.text
    answer = response.json()["entry"][ORDER_AT]["response"]
    assert answer["status"].startswith("201")
    where = f"Bundle.entry[{ORDER_AT}].resource.{name}"
    assert _warnings(answer) == [("warning", "not-supported", [where])]
    diagnostics = answer["outcome"]["issue"][0]["diagnostics"]
    assert "accepted" in diagnostics and "not carried" in diagnostics


def test_a_routine_priority_says_nothing(fhir: TestClient) -> None:
    bundle = _bundle()
    bundle["entry"][ORDER_AT]["resource"]["priority"] = "routine"
    response = fhir.post("/fhir", content=json.dumps(bundle))
    assert response.status_code == 200, response.text
    assert "outcome" not in response.json()["entry"][ORDER_AT]["response"]


def _medication_order() -> dict[str, Any]:
    """The order as a MedicationRequest standing alone, as many EHRs send a CAR-T."""
    bundle = _bundle()
    request = bundle["entry"][ORDER_AT]["resource"]
    coding = request["code"]
    medication = {
        "resourceType": "MedicationRequest",
        **{key: request[key] for key in ("identifier", "status", "intent", "subject")},
        "medicationCodeableConcept": coding,
        "requester": request["requester"],
        "dosageInstruction": [
            {"text": "Infuse one bag IV over 5-30 minutes", "route": {"text": "intravenous"}}
        ],
        "priority": "urgent",
        "note": NOTE,
    }
    bundle["entry"][ORDER_AT]["resource"] = medication
    bundle["entry"][ORDER_AT]["request"]["url"] = "MedicationRequest"
    return bundle


@pytest.mark.parametrize("headers", [{}, LENIENT], ids=["strict", "lenient"])
def test_a_medication_request_with_dosage_note_and_priority_is_placed_with_warnings(
    fhir: TestClient, headers: dict[str, str]
) -> None:
    bundle = _medication_order()
    response = fhir.post("/fhir", content=json.dumps(bundle), headers=headers)
    assert response.status_code == 200, response.text
    answer = response.json()["entry"][ORDER_AT]["response"]
    assert answer["status"].startswith("201")
    named = sorted(where[0].rsplit(".", 1)[1] for _, _, where in _warnings(answer))
    assert named == ["dosageInstruction", "note", "priority"]


def test_one_posted_service_request_with_a_note_and_urgency_is_created(
    fhir: TestClient,
) -> None:
    """The answer is the order itself, with no place for a warning; the stored message
    keeps the note."""
    fixture = load_fixture("04-single-servicerequest")
    resource = json.loads(fixture_body(fixture))
    resource.update(note=NOTE, priority="stat")
    response = fhir.post(
        "/fhir/ServiceRequest", content=json.dumps(resource), headers=fixture["headers"]
    )
    assert response.status_code == 201, response.text
    assert response.json()["resourceType"] == "ServiceRequest"


def test_a_task_update_with_a_note_and_priority_is_applied(
    fhir: TestClient, ordered: dict[str, Any]
) -> None:
    order_id = _order_id(ordered)
    task = fhir.get(f"/fhir/Task/{order_id}").json()
    task.update(
        status="cancelled",
        statusReason={"text": "withdrew consent"},
        note=NOTE,
        priority="urgent",
    )
    updated = fhir.put(f"/fhir/Task/{order_id}", json=task)
    assert updated.status_code == 200, updated.text
    assert updated.json()["status"] == "cancelled"
    # A note alone changes nothing tracked: answered with the Task, not refused.
    patched = fhir.patch(f"/fhir/Task/{order_id}", json={"note": NOTE})
    assert patched.status_code == 200, patched.text
    assert patched.json()["meta"]["versionId"] == updated.json()["meta"]["versionId"]
    # restriction still changes what is asked, and is still refused.
    restricted = fhir.patch(f"/fhir/Task/{order_id}", json={"restriction": {"repetitions": 1}})
    assert restricted.status_code == 400, restricted.text
    assert restricted.json()["issue"][0]["expression"] == ["Task.restriction"]


# --- modifiers: never downgraded to a warning ------------------------------------------

PATIENT_AT = 0  # the Patient's entry in 01-order-transaction
MODIFIED_PATIENTS = [
    ("active", False, 422),
    ("active", "false", 422),
    ("deceasedBoolean", True, 422),
    ("deceasedDateTime", "2026-09-30T10:00:00Z", 422),
    ("link", [{"other": {"display": "the surviving record"}, "type": "replaced-by"}], 400),
    ("implicitRules", "http://ehr.example/rules", 400),
]


@pytest.mark.parametrize("headers", [{}, LENIENT], ids=["strict", "lenient"])
@pytest.mark.parametrize(("name", "value", "status"), MODIFIED_PATIENTS)
def test_a_patient_modifier_refuses_the_order_in_every_mode(
    fhir: TestClient, service: Any, headers: dict[str, str], name: str, value: Any, status: int
) -> None:
    from tests.fhir.test_fhir_element_names import _order_count

    bundle = _bundle()
    bundle["entry"][PATIENT_AT]["resource"][name] = value
    response = fhir.post("/fhir", content=json.dumps(bundle), headers=headers)
    assert response.status_code == status, response.text
    issue = response.json()["issue"][0]
    assert issue["severity"] == "error"
    assert issue["expression"] == [f"Bundle.entry[{PATIENT_AT}].resource.{name}"]
    assert "modifier element of Patient" in issue["diagnostics"]
    assert _order_count(service) == 0


def test_a_contained_patient_modifier_refuses_the_posted_service_request(
    fhir: TestClient,
) -> None:
    fixture = load_fixture("04-single-servicerequest")
    resource = json.loads(fixture_body(fixture))
    resource["contained"][0]["active"] = False
    response = fhir.post(
        "/fhir/ServiceRequest", content=json.dumps(resource), headers=fixture["headers"]
    )
    assert response.status_code == 422, response.text
    assert response.json()["issue"][0]["expression"] == ["ServiceRequest.contained[0].active"]


def test_a_patient_modifier_in_a_batch_refuses_the_order_on_it_too(fhir: TestClient) -> None:
    """The Patient's entry fails alone; the order naming it must not be placed either,
    wherever the Patient's entry stands in the bundle."""
    bundle = _bundle()
    bundle["type"] = "batch"
    bundle["entry"][PATIENT_AT]["resource"]["active"] = False
    bundle["entry"].append(bundle["entry"].pop(PATIENT_AT))  # the Patient after the order
    response = fhir.post("/fhir", content=json.dumps(bundle), headers=LENIENT)
    assert response.status_code == 200, response.text
    answers = [entry["response"] for entry in response.json()["entry"]]
    assert answers[ORDER_AT - 1]["status"].startswith("422"), answers[ORDER_AT - 1]
    assert answers[-1]["status"].startswith("422"), answers[-1]


def test_a_patient_with_default_modifier_values_is_placed_without_a_word(
    fhir: TestClient,
) -> None:
    bundle = _bundle()
    bundle["entry"][PATIENT_AT]["resource"].update(active=True, deceasedBoolean=False)
    response = fhir.post("/fhir", content=json.dumps(bundle))
    assert response.status_code == 200, response.text
    assert "outcome" not in response.json()["entry"][PATIENT_AT]["response"]


@pytest.mark.parametrize("headers", [{}, LENIENT], ids=["strict", "lenient"])
@pytest.mark.parametrize(
    ("name", "value", "status"),
    [
        ("doNotPerform", True, 422),
        ("status", "entered-in-error", 422),
        ("intent", "proposal", 422),
        ("implicitRules", "http://ehr.example/rules", 400),
    ],
)
def test_a_folded_medication_request_modifier_refuses_the_bundle(
    fhir: TestClient, headers: dict[str, str], name: str, value: Any, status: int
) -> None:
    """A MedicationRequest based on the bundle's ServiceRequest is not an order of its own,
    but one not to perform, entered in error or only proposed still changes what is asked."""
    bundle = _bundle()
    medication = {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"text": "Exampleucel"},
        "subject": {"reference": bundle["entry"][PATIENT_AT]["fullUrl"]},
        "basedOn": [{"reference": bundle["entry"][ORDER_AT]["fullUrl"]}],
        name: value,
    }
    bundle["entry"].append(
        {"resource": medication, "request": {"method": "POST", "url": "MedicationRequest"}}
    )
    at = len(bundle["entry"]) - 1
    response = fhir.post("/fhir", content=json.dumps(bundle), headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["issue"][0]["expression"] == [f"Bundle.entry[{at}].resource.{name}"]


@pytest.mark.parametrize("headers", [{}, LENIENT], ids=["strict", "lenient"])
def test_an_order_modifier_refuses_the_order_in_every_mode(
    fhir: TestClient, headers: dict[str, str]
) -> None:
    bundle = _bundle()
    bundle["entry"][ORDER_AT]["resource"]["implicitRules"] = "http://ehr.example/rules"
    response = fhir.post("/fhir", content=json.dumps(bundle), headers=headers)
    assert response.status_code == 400, response.text
    issue = response.json()["issue"][0]
    assert issue["expression"] == [f"Bundle.entry[{ORDER_AT}].resource.implicitRules"]


def test_a_modifier_extension_on_a_task_update_is_refused(
    fhir: TestClient, ordered: dict[str, Any]
) -> None:
    order_id = _order_id(ordered)
    task = fhir.get(f"/fhir/Task/{order_id}").json()
    task["status"] = "cancelled"
    task["statusReason"] = {"text": "withdrew consent"}
    task["modifierExtension"] = [{"url": "http://ehr.example/ext/tentative", "valueBoolean": True}]
    response = fhir.put(f"/fhir/Task/{order_id}", json=task)
    assert response.status_code == 400, response.text
    assert response.json()["issue"][0]["expression"] == ["Task.modifierExtension"]
    assert fhir.get(f"/fhir/Task/{order_id}").json()["status"] != "cancelled"


@pytest.mark.parametrize("headers", [{}, LENIENT], ids=["strict", "lenient"])
@pytest.mark.parametrize(
    ("name", "value", "code"),
    [
        ("priority", "bogus", "code-invalid"),
        ("priority", 5, "code-invalid"),
        ("priority", {"x": 1}, "code-invalid"),
        ("note", "call the ward", "structure"),
        ("note", [{"author": "Dr Who"}], "structure"),
    ],
)
def test_commentary_that_is_not_what_r4_says_it_is_is_refused(
    fhir: TestClient, headers: dict[str, str], name: str, value: Any, code: str
) -> None:
    bundle = _bundle()
    bundle["entry"][ORDER_AT]["resource"][name] = value
    response = fhir.post("/fhir", content=json.dumps(bundle), headers=headers)
    assert response.status_code == 400, response.text
    [issue] = response.json()["issue"]
    assert issue["code"] == code
    assert issue["expression"] == [f"Bundle.entry[{ORDER_AT}].resource.{name}"]
