"""The read/search facade: every resource validates as R4B, search parameters, paging,
ETags and Task updates, and Patient only for hospital credentials."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B import get_fhir_model_class

from adapters.fhir import resources
from gateway.domain.model import ScanVerdict
from gateway.domain.patient import PatientIdentity
from gateway.service.orders import OrderService
from gateway.store.audit import entries
from tests.conftest import FixedClock
from tests.fhir.fhir_journey import advance_to_stored
from tests.fhir.fhir_support import fixture_body, load_fixture


def validate(resource: dict[str, Any]) -> None:
    """fhir.resources.R4B parses it without complaint (structure, types, cardinality)."""
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def _order_id(ordered: dict[str, Any]) -> str:
    return str(ordered["entry"][4]["response"]["location"].split("/")[1])


@pytest.fixture
def journey(fhir: TestClient, ordered: dict[str, Any], service: OrderService, clock: FixedClock):  # type: ignore[no-untyped-def]
    order_id = _order_id(ordered)
    advance_to_stored(service, clock, order_id)
    return order_id


def test_every_facade_resource_validates_as_r4b(
    fhir: TestClient, journey: str, service: OrderService
) -> None:
    seen: set[str] = set()
    task = fhir.get(f"/fhir/Task/{journey}").json()
    request = fhir.get(f"/fhir/ServiceRequest/{journey}").json()
    products = fhir.get(f"/fhir/BiologicallyDerivedProduct?request=ServiceRequest/{journey}")
    custody = fhir.get(f"/fhir/Provenance?target=Task/{journey}")
    audits = fhir.get(f"/fhir/AuditEvent?entity=Task/{journey}")
    patient_id = task["for"]["reference"].split("/")[1]
    patient = fhir.get(f"/fhir/Patient/{patient_id}", headers={"X-V2V-Role": "hospital"})
    bundles = [products.json(), custody.json(), audits.json()]
    singles = [task, request, patient.json(), fhir.get("/fhir/metadata").json()]
    for bundle in bundles:
        validate(bundle)
        singles += [entry["resource"] for entry in bundle["entry"]]
    for resource in singles:
        validate(resource)
        seen.add(resource["resourceType"])
    order = service.get(journey)
    scan = ScanVerdict(
        at=order.updated_at,
        checkpoint="bedside",
        user="Zz-Nurse",
        unit_id="A999926000099",
        green=False,
        reason_code="wrong_patient",
        reason="Wristband does not match the bag",
    )
    with_scan = order.model_copy(update={"scans": [scan]})
    validate(resources.scan_audit_event(with_scan, scan))
    assert seen >= {
        "Task",
        "ServiceRequest",
        "BiologicallyDerivedProduct",
        "Provenance",
        "AuditEvent",
        "Patient",
        "CapabilityStatement",
    }
    assert len(products.json()["entry"]) == 2
    final = next(
        e["resource"] for e in products.json()["entry"] if e["resource"]["id"].endswith("099")
    )
    assert final["storage"][0]["duration"]["end"]  # expiry
    assert final["storage"][0]["temperature"] == -150
    assert final["productCode"]["coding"][0]["code"] == order.therapy.product_code
    assert final["parent"][0]["reference"].endswith("A999926000001")


def test_task_carries_the_milestone_and_reads_with_an_etag(fhir: TestClient, journey: str) -> None:
    response = fhir.get(f"/fhir/Task/{journey}")
    task = response.json()
    assert task["status"] == "in-progress"
    assert task["businessStatus"]["coding"][0]["code"] == "STORED"
    assert response.headers["ETag"] == f'W/"{task["meta"]["versionId"]}"'
    milestones = {output["type"]["coding"][0]["code"] for output in task["output"]}
    assert {"collected_at", "released_at", "stored_at"} <= milestones
    assert "MRN-SYN" not in response.text and "Zz-Testpatient" not in response.text


def test_patient_is_for_hospital_credentials_only(
    fhir: TestClient, ordered: dict[str, Any], service: OrderService
) -> None:
    patient_path = ordered["entry"][0]["response"]["location"]
    refused = fhir.get(f"/fhir/{patient_path}", headers={"X-V2V-Role": "manufacturer"})
    assert refused.status_code == 403
    assert refused.json()["issue"][0]["code"] == "forbidden"
    assert fhir.get(f"/fhir/{patient_path}").status_code == 403
    allowed = fhir.get(f"/fhir/{patient_path}", headers={"X-V2V-Role": "hospital"})
    assert allowed.status_code == 200
    assert allowed.json()["identifier"][0]["value"] == "MRN-SYN-0001"
    audit = fhir.get(f"/fhir/AuditEvent?entity=Task/{_order_id(ordered)}").json()
    actions = {e["resource"]["subtype"][0]["code"]: e["resource"] for e in audit["entry"]}
    # The read is in the log, on no order (see the pseudonym test below).
    assert "patient.read" not in actions
    with service.engine.connect() as conn:
        reads = [e for e in entries(conn) if e.action == "patient.read"]
    assert reads and reads[-1].order_id is None
    assert reads[-1].payload["orders"] == [_order_id(ordered)]
    # Registering the order's patient is audited against the order, as a create, by field
    # names only: the order's partners read this trail.
    registered = actions["patient.created"]
    assert registered["action"] == "C"
    assert "MRN-SYN" not in json.dumps(registered)


def test_a_patient_registered_without_an_order_is_found_by_mrn(
    fhir: TestClient, service: OrderService, clock: FixedClock
) -> None:
    # As an ADT A04 leaves it: a patient at St Mary's that no order names yet.
    with service.uow() as uow:
        service.register_patient(
            uow,
            "st-mary",
            PatientIdentity(mrn="MRN-SYN-0404", family_name="Zz-Testpatient", given_name="Ada"),
            actor="hl7v2:st-mary",
            at=clock(),
        )
        uow.commit()
    hospital = {"X-V2V-Role": "hospital", "X-V2V-Tenant": "st-mary"}
    found = fhir.get("/fhir/Patient?identifier=MRN-SYN-0404", headers=hospital)
    assert found.status_code == 200, found.text
    validate(found.json())
    [entry] = found.json()["entry"]
    assert entry["resource"]["name"][0]["family"] == "Zz-Testpatient"
    mrn = entry["resource"]["identifier"][0]
    assert mrn["value"] == "MRN-SYN-0404"
    with_system = f"/fhir/Patient?identifier={mrn['system']}|MRN-SYN-0404"
    assert len(fhir.get(with_system, headers=hospital).json()["entry"]) == 1
    other_system = "/fhir/Patient?identifier=urn:example:other|MRN-SYN-0404"
    assert fhir.get(other_system, headers=hospital).json().get("entry", []) == []
    # Another site's credentials find nothing; a partner is refused; the search is audited.
    lakeside = {"X-V2V-Role": "hospital", "X-V2V-Tenant": "lakeside"}
    elsewhere = fhir.get("/fhir/Patient?identifier=MRN-SYN-0404", headers=lakeside)
    assert elsewhere.json().get("entry", []) == []
    partner = fhir.get("/fhir/Patient?identifier=MRN-SYN-0404", headers={"X-V2V-Role": "courier"})
    assert partner.status_code == 403
    assert "X-V2V-Role: hospital" in partner.json()["issue"][0]["diagnostics"]
    missing = fhir.get("/fhir/Patient", headers=hospital)
    assert missing.status_code == 400
    assert missing.json()["issue"][0]["expression"] == ["identifier"]
    with service.engine.connect() as conn:
        searches = [e for e in entries(conn) if e.action == "patient.search"]
    assert len(searches) == 2  # the two searches that found the patient
    assert searches[-1].order_id is None


def _place(fhir: TestClient, placer: str, mrn: str) -> str:
    bundle = json.loads(fixture_body(load_fixture("01-order-transaction")))
    bundle["id"] = f"msg-{placer}"
    bundle["entry"][4]["resource"]["identifier"][0]["value"] = placer
    del bundle["entry"][4]["request"]["ifNoneExist"]
    bundle["entry"][0]["resource"]["identifier"][0]["value"] = mrn
    response = fhir.post("/fhir", content=json.dumps(bundle))
    assert response.status_code == 200, response.text
    return str(response.json()["entry"][4]["response"]["location"].split("/")[1])


def _ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    return [e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == mode]


def test_search_parameters(fhir: TestClient, service: OrderService, clock: FixedClock) -> None:
    first = _place(fhir, "LS-S-1", "MRN-SYN-0001")
    clock.advance(days=1)
    second = _place(fhir, "LS-S-2", "MRN-SYN-0002")
    clock.advance(days=1)
    advance_to_stored(service, clock, second)
    coi = service.get(second).coi
    placer = "http://lakeside.example.org/fhir/sid/order-number"

    def search(query: str) -> dict[str, Any]:
        response = fhir.get(f"/fhir/Task?{query}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    assert _ids(search("status=requested")) == [first]
    assert _ids(search("status=in-progress,requested")) == [second, first]
    assert _ids(search("status=completed")) == []
    assert _ids(search(f"identifier=https://vein2vein.dev/fhir/sid/coi|{coi}")) == [second]
    assert _ids(search(f"identifier={placer}|LS-S-1")) == [first]
    assert _ids(search("identifier=LS-S-2")) == [second]
    assert _ids(search("identifier=http://elsewhere.example/sid|LS-S-2")) == []
    patient = service.get(first)
    task = fhir.get(f"/fhir/Task/{first}").json()
    assert patient and _ids(search(f"patient={task['for']['reference']}")) == [first]
    assert _ids(search("_lastUpdated=le2026-11-02")) == [first]
    assert _ids(search("_lastUpdated=ge2026-11-03T00:00:00Z")) == [second]
    assert _ids(search("_lastUpdated=gt2026-11-02&_lastUpdated=lt2026-11-03")) == []
    included = search(f"_id={first}&_include=Task:focus")
    assert _ids(included, "include") == [first]
    assert included["entry"][1]["resource"]["resourceType"] == "ServiceRequest"
    assert _ids(fhir.get("/fhir/ServiceRequest?status=active").json()) == [second, first]
    counted = search("_count=0")
    assert (counted["total"] == 2 and "entry" not in counted) or counted["entry"] == []
    bad = fhir.get("/fhir/Task?status=finished")
    assert (bad.status_code, bad.json()["issue"][0]["code"]) == (400, "code-invalid")
    bad_date = fhir.get("/fhir/Task?_lastUpdated=ap2026")
    assert bad_date.status_code == 400


def test_unknown_parameters_are_reported_or_refused_when_strict(fhir: TestClient) -> None:
    lenient = fhir.get("/fhir/Task?colour=blue").json()
    outcome = [e for e in lenient["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome[0]["resource"]["issue"][0]["expression"] == ["colour"]
    assert "colour" not in lenient["link"][0]["url"]
    strict = fhir.get("/fhir/Task?colour=blue", headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400


def test_a_modifier_the_server_does_not_support_is_refused_not_ignored(
    fhir: TestClient,
) -> None:
    # Ignored, status:not=completed would list the completed orders it asks to leave out.
    for query in ("status:not=completed", "identifier:exact=LS-1", "_id:missing=true"):
        refused = fhir.get(f"/fhir/Task?{query}")
        assert refused.status_code == 400, query
        issue = refused.json()["issue"][0]
        assert issue["code"] == "not-supported"
        assert issue["expression"] == [query.split("=")[0]]
        modifier = query.split("=")[0].split(":")[1]
        assert f"the modifier '{modifier}'" in issue["diagnostics"], issue
    # An unknown parameter with a modifier is still only reported (lenient handling).
    assert fhir.get("/fhir/Task?colour:exact=blue").status_code == 200
    # Modifiers that mean what the plain parameter means here are honoured.
    for query in ("patient:Patient=Patient/none", "for:Patient=Patient/none"):
        found = fhir.get(f"/fhir/Task?{query}")
        assert found.status_code == 200 and _ids(found.json()) == [], query
    assert fhir.get("/fhir/Task?_include:iterate=Task:focus").status_code == 200


def test_a_comma_is_or_also_across_the_order_id_system_and_another(fhir: TestClient) -> None:
    first = _place(fhir, "LS-OR-1", "MRN-SYN-0001")
    second = _place(fhir, "LS-OR-2", "MRN-SYN-0002")
    either = (
        f"identifier=https://vein2vein.dev/fhir/sid/order|{first},"
        "http://lakeside.example.org/fhir/sid/order-number|LS-OR-2"
    )
    found = fhir.get(f"/fhir/Task?{either}")
    assert found.status_code == 200, found.text
    assert sorted(_ids(found.json())) == sorted([first, second])


def test_paging_follows_next_links(fhir: TestClient, clock: FixedClock) -> None:
    placed = []
    for index in range(5):
        clock.advance(minutes=1)
        placed.append(_place(fhir, f"LS-P-{index}", f"MRN-SYN-01{index:02d}"))
    seen: list[str] = []
    url: str | None = "/fhir/Task?_count=2"
    pages = 0
    while url:
        bundle = fhir.get(url).json()
        validate(bundle)
        seen += _ids(bundle)
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
        pages += 1
    assert pages == 3
    assert seen == list(reversed(placed))


def test_task_update_with_if_match(fhir: TestClient, ordered: dict[str, Any]) -> None:
    order_id = _order_id(ordered)
    task = fhir.get(f"/fhir/Task/{order_id}").json()
    task["businessStatus"]["coding"][0]["code"] = "ENROLLED"
    updated = fhir.put(f"/fhir/Task/{order_id}", json=task, headers={"If-Match": 'W/"1"'})
    assert updated.status_code == 200, updated.text
    assert updated.headers["ETag"] == 'W/"2"'
    assert updated.json()["status"] == "accepted"
    # The same update again is a retry (its answer was lost): the stored answer, no change.
    retried = fhir.put(f"/fhir/Task/{order_id}", json=task, headers={"If-Match": 'W/"1"'})
    assert (retried.status_code, retried.content) == (200, updated.content)
    # Another update decided on version 1 is stale.
    task["businessStatus"]["coding"][0]["code"] = "SLOT_REQUESTED"
    stale = fhir.put(f"/fhir/Task/{order_id}", json=task, headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412
    assert stale.json()["resourceType"] == "OperationOutcome"
    patch = [{"op": "replace", "path": "/businessStatus/coding/0/code", "value": "SLOT_REQUESTED"}]
    patched = fhir.patch(
        f"/fhir/Task/{order_id}",
        content=json.dumps(patch),
        headers={"Content-Type": "application/json-patch+json", "If-Match": 'W/"2"'},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["businessStatus"]["coding"][0]["code"] == "SLOT_REQUESTED"
    hold = fhir.patch(
        f"/fhir/Task/{order_id}",
        json={"status": "on-hold", "statusReason": {"text": "insurance check"}},
    )
    assert hold.json()["status"] == "on-hold"
    assert hold.json()["statusReason"]["text"] == "insurance check"


def test_task_update_refusals_are_operation_outcomes(
    fhir: TestClient, ordered: dict[str, Any]
) -> None:
    order_id = _order_id(ordered)
    task = fhir.get(f"/fhir/Task/{order_id}").json()
    task["businessStatus"]["coding"][0]["code"] = "INFUSED"
    refused = fhir.put(f"/fhir/Task/{order_id}", json=task)
    assert refused.status_code == 422
    assert "illegal_transition" in refused.json()["issue"][0]["diagnostics"]
    task["businessStatus"]["coding"][0]["code"] = "NOT_A_STATE"
    assert fhir.put(f"/fhir/Task/{order_id}", json=task).status_code == 400
    task["status"] = "finished"
    invalid = fhir.put(f"/fhir/Task/{order_id}", json=task)
    assert invalid.json()["issue"][0]["expression"] == ["Task.status"]
    assert fhir.put(f"/fhir/Task/{order_id}", content=b"{nope").status_code == 400
    assert fhir.put("/fhir/Task/ord-missing", json=task).status_code == 404


def test_capability_statement_claims_only_what_works(fhir: TestClient, journey: str) -> None:
    statement = fhir.get("/fhir/metadata").json()
    validate(statement)
    rest = statement["rest"][0]
    assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch"}
    samples = {
        "_id": journey,
        "status": "in-progress",
        "identifier": "LS-ORD-0001",
        "patient": fhir.get(f"/fhir/Task/{journey}").json()["for"]["reference"],
    }
    samples |= {
        "subject": samples["patient"],
        "for": samples["patient"],
        "_lastUpdated": "ge2026-01-01",
        "_count": "1",
        "request": f"ServiceRequest/{journey}",
        "target": f"Task/{journey}",
        "entity": f"Task/{journey}",
    }
    for resource in rest["resource"]:
        for param in resource.get("searchParam", []):
            value = samples[param["name"]]
            if resource["type"] == "BiologicallyDerivedProduct" and param["name"] == "identifier":
                value = "A999926000099"
            if resource["type"] == "ServiceRequest" and param["name"] == "status":
                value = "active"
            if resource["type"] == "Patient" and param["name"] == "identifier":
                value = "MRN-SYN-0001"
            required = {
                "Provenance": {"target": samples["target"]},
                "AuditEvent": {"entity": samples["entity"]},
                "Patient": {"identifier": "MRN-SYN-0001"},
            }.get(resource["type"], {})
            params = {**required, param["name"]: value}
            # Patient is PHI: only a hospital's credentials may search it.
            headers = {"X-V2V-Role": "hospital"} if resource["type"] == "Patient" else {}
            response = fhir.get(f"/fhir/{resource['type']}", params=params, headers=headers)
            assert response.status_code == 200, (resource["type"], param, response.text)
            assert not [e for e in response.json()["entry"] if e["search"]["mode"] == "outcome"]
            assert response.json()["entry"], (resource["type"], param["name"])


def test_a_signature_meaning_becomes_a_valid_policy_uri(
    fhir: TestClient, journey: str, service: OrderService
) -> None:
    from datetime import UTC, datetime

    from gateway.domain.model import Actor, CustodyAction, CustodyEvent

    order = service.get(journey)
    event = CustodyEvent(
        at=datetime(2026, 11, 5, 9, 0, tzinfo=UTC),
        action=CustodyAction.VERIFICATION,
        who=Actor(person="Zz-Nurse", role="nurse"),
        signature_meaning="bedside identity check",
    )
    rendered = resources.provenance(order, event)
    validate(rendered)
    # An R4 uri has no whitespace; the meaning is kept, percent-encoded.
    assert rendered["policy"] == ["urn:v2v:signature-meaning:bedside%20identity%20check"]


def test_orders_name_their_patient_by_the_orders_pseudonym_not_a_shared_id(
    fhir: TestClient, service: OrderService
) -> None:
    # Two orders of one patient: a partner reading both Tasks must not learn they share a
    # patient, so each names Patient/<its own pseudonym>.
    first = _place(fhir, "LS-PSN-1", "MRN-SYN-0001")
    second = _place(fhir, "LS-PSN-2", "MRN-SYN-0001")
    references = [
        fhir.get(f"/fhir/Task/{order_id}").json()["for"]["reference"]
        for order_id in (first, second)
    ]
    assert references == [
        f"Patient/{service.get(first).patient_pseudonym}",
        f"Patient/{service.get(second).patient_pseudonym}",
    ]
    assert "pat-" not in fhir.get(f"/fhir/ServiceRequest/{first}").text
    hospital = {"X-V2V-Role": "hospital"}
    read = fhir.get(f"/fhir/{references[0]}", headers=hospital)
    assert read.status_code == 200 and read.json()["id"] == references[0].split("/")[1]
    assert read.json()["identifier"][0]["value"] == "MRN-SYN-0001"
    # The read is audited once, on no order: entries on both orders, written together,
    # would show a partner reading their trails that they share a patient.
    for order_id in (first, second):
        audit = fhir.get(f"/fhir/AuditEvent?entity=Task/{order_id}").json()
        assert "patient.read" not in json.dumps(audit)
    with service.engine.connect() as conn:
        [read] = [e for e in entries(conn) if e.action == "patient.read"]
    assert read.order_id is None and sorted(read.payload["orders"]) == sorted([first, second])
