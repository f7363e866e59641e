"""The FHIR facade under real authentication: the same tenant rules as the canonical API."""

from __future__ import annotations

from tests.security.conftest import Secured
from tests.security.test_partner_isolation import headers_for


def task_ids(secured: Secured, headers: dict[str, str]) -> set[str]:
    bundle = secured.client.get("/fhir/Task", headers=headers).json()
    return {
        entry["resource"]["id"]
        for entry in bundle.get("entry", [])
        if entry["resource"]["resourceType"] == "Task"
    }


def test_fhir_needs_a_credential(secured: Secured) -> None:
    response = secured.client.get(f"/fhir/Task/{secured.orders['st-mary']}")
    assert response.status_code == 401
    assert response.json()["resourceType"] == "OperationOutcome"
    assert secured.client.get("/fhir/metadata").status_code == 200


def test_task_reads_and_searches_stay_inside_the_tenant(secured: Secured) -> None:
    st_mary, lakeside = secured.orders["st-mary"], secured.orders["lakeside"]
    helix = headers_for(secured, "helix-portal")
    assert secured.client.get(f"/fhir/Task/{st_mary}", headers=helix).status_code == 200
    hidden = secured.client.get(f"/fhir/Task/{lakeside}", headers=helix)
    assert hidden.status_code == 404 and hidden.json()["resourceType"] == "OperationOutcome"
    assert task_ids(secured, helix) == {st_mary}
    assert task_ids(secured, headers_for(secured, "northwind-portal")) == {lakeside}
    assert task_ids(secured, headers_for(secured, "polar-express")) == {st_mary}
    assert task_ids(secured, headers_for(secured, "st-mary-ehr")) == {st_mary}
    cached_again = secured.client.get(f"/fhir/Task/{lakeside}", headers=helix)
    assert cached_again.status_code == 404  # the render cache does not bypass the check


def test_patient_only_to_the_treating_site(secured: Secured) -> None:
    st_mary = secured.orders["st-mary"]
    site = headers_for(secured, "st-mary-ehr")
    request = secured.client.get(f"/fhir/ServiceRequest/{st_mary}", headers=site).json()
    patient_ref = request["subject"]["reference"]
    assert secured.client.get(f"/fhir/{patient_ref}", headers=site).status_code == 200
    for who, status in (("helix-portal", 403), ("polar-express", 403), ("lakeside-ehr", 404)):
        response = secured.client.get(f"/fhir/{patient_ref}", headers=headers_for(secured, who))
        assert response.status_code == status, who
        assert "Zz-Testpatient" not in response.text


def test_only_hospitals_place_orders_over_fhir(secured: Secured) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": []}
    response = secured.client.post(
        "/fhir",
        json=bundle,
        headers={**headers_for(secured, "helix-portal"), "Content-Type": "application/fhir+json"},
    )
    assert response.status_code == 403
    assert response.json()["resourceType"] == "OperationOutcome"


def test_fhir_holds_the_credentials_scopes_as_the_rest_api_does(secured: Secured) -> None:
    import json

    from tests.security.conftest import SECRETS

    token = secured.token("st-mary-readonly", SECRETS["V2V_SECRET_READONLY"])  # Order.rs
    read_only = {"Authorization": f"Bearer {token}"}
    order_id = secured.orders["st-mary"]
    task = secured.client.get(f"/fhir/Task/{order_id}", headers=read_only)
    assert task.status_code == 200
    assert secured.client.get("/fhir/Task", headers=read_only).status_code == 200
    held = dict(task.json(), status="on-hold")
    updated = secured.client.put(
        f"/fhir/Task/{order_id}",
        headers={**read_only, "Content-Type": "application/fhir+json"},
        content=json.dumps(held),
    )
    assert updated.status_code == 403
    outcome = updated.json()
    assert outcome["resourceType"] == "OperationOutcome" and "Order.u" in json.dumps(outcome)
    assert not secured.service.get(order_id).holds  # nothing placed
    created = secured.client.post(
        "/fhir", headers={**read_only, "Content-Type": "application/fhir+json"}, content="{}"
    )
    assert created.status_code == 403 and "Order.c" in created.text
