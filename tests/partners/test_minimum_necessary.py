"""Minimum necessary: nothing sent to a manufacturer or courier (and nothing our ERP call
carries) names the patient. Scans every payload the partner simulators received in this
test session, plus every manufacturer and courier outbox row of a full journey driven
here, for the synthetic patients' names, dates of birth (in the usual spellings) and MRNs.
A session-wide scan also runs at the end of the session (see conftest.py)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date, timedelta

from adapters.couriers import transport as courier_transport
from adapters.erp import transport as erp_transport
from adapters.manufacturers import transport as manufacturer_transport
from fixtures.simulators import captured
from fixtures.simulators.erp_soap import ErpSoapSimulator
from gateway.service.relay import Relay
from gateway.store import outbox
from tests.conftest import SYNTHETIC_PATIENTS


def forbidden() -> set[str]:
    needles: set[str] = set()
    for patient in SYNTHETIC_PATIENTS:
        needles |= {patient["mrn"], patient["family_name"], patient["given_name"]}
        born = date.fromisoformat(patient["birth_date"])
        needles |= {
            born.isoformat(),
            born.strftime("%Y%m%d"),
            born.strftime("%d.%m.%Y"),
            born.strftime("%d/%m/%Y"),
            born.strftime("%m/%d/%Y"),
        }
    return {needle.lower() for needle in needles}


def hits(payloads: Iterable[tuple[str, bytes]]) -> list[str]:
    needles = forbidden()
    found = []
    for where, body in payloads:
        text = body.decode("utf-8", "replace").lower()
        found += [f"{where}: {needle}" for needle in needles if needle in text]
    return found


def test_a_full_journey_sends_partners_no_patient_identifiers(
    service, api, clock, new_order, walk, portals, couriers, http
):  # type: ignore[no-untyped-def]
    before = len(captured())
    with ErpSoapSimulator() as erp:
        relay = Relay(service.engine, clock=clock)
        relay.register(
            "manufacturer",
            manufacturer_transport(
                service,
                client=http,
                base_urls={
                    "helix-bio": portals["helix-bio"].url,
                    "northwind-cell": portals["northwind-cell"].url,
                },
            ),
        )
        relay.register(
            "courier",
            courier_transport(
                service,
                client=http,
                base_urls={
                    "polar-express": couriers["polar-express"].url,
                    "cryoroute": couriers["cryoroute"].url,
                },
            ),
        )
        relay.register("erp", erp_transport(service, addresses={"st-mary": erp.address}))
        relay.register("hospital", lambda item: None)
        orders = []
        for patient, therapy in ((0, "exa-cel"), (1, "sam-cel")):
            order = new_order(therapy=therapy, patient=patient)
            for state in ("SLOT_CONFIRMED", "COLLECTED", "RELEASED", "RECEIVED_AT_SITE"):
                walk(order, state)
                clock.advance(minutes=1)
                assert relay.run_once().dead == 0
            orders.append(service.get(order.id))
        polar = couriers["polar-express"]
        tracking = orders[0].shipments[0].tracking_number
        polar.add_milestone(tracking, "DLV", clock.now)
        polar.push(
            api,
            polar.milestone(tracking, "EXC", clock.now - timedelta(hours=2)),
            timestamp=int(clock.now.timestamp()),
        )
    sent = captured()[before:]
    partners = {c.partner for c in sent}
    assert {"helix-bio", "northwind-cell", "polar-express", "cryoroute", "erp:st-mary"} <= partners
    with service.engine.connect() as conn:
        rows = outbox.list_items(conn, limit=10_000)
    queued = [
        (f"outbox {row.destination} {row.kind}", json.dumps(row.payload).encode())
        for row in rows
        if row.destination.split(":")[0] in ("manufacturer", "courier", "erp")
    ]
    assert len(queued) >= 10
    for order in orders:
        assert all(
            order.coi in body.decode() for where, body in queued if order.id in body.decode()
        )
    assert hits([(f"{c.partner} {c.method} {c.path}", c.body) for c in sent] + queued) == []


def test_the_scan_catches_a_leak() -> None:
    leak = b'{"patient": {"family": "ZZ-TESTPATIENT", "born": "12.04.1961"}}'
    assert len(hits([("leaky", leak)])) == 2


def test_everything_captured_so_far_is_clean() -> None:
    assert hits([(f"{c.partner} {c.method} {c.path}", c.body) for c in captured()]) == []


def test_a_reason_naming_the_patient_reaches_partners_without_the_names(service, walk, new_order):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from gateway.api.app import create_app

    api = TestClient(create_app(service))
    order = walk(new_order(patient=0), "SLOT_CONFIRMED")
    typed = "Zz-Testpatient ALPHA (MRN-SYN-0001, born 12.04.1961) withdrew consent"
    answer = api.post(
        f"/orders/{order.id}/events", json={"type": "cancel", "details": {"reason": typed}}
    )
    assert answer.status_code == 200, answer.text
    kept = service.get(order.id).cancellation_reason
    assert kept == "[patient] [patient] ([MRN], born [DOB]) withdrew consent"
    partner = {"X-V2V-Role": "manufacturer", "X-V2V-Tenant": "helix-bio"}
    read = api.get(f"/orders/{order.id}", headers=partner)
    audit_trail = api.get(f"/orders/{order.id}/audit", headers=partner)
    with service.engine.connect() as conn:
        rows = outbox.list_items(conn, order_id=order.id, limit=100)
    queued = [(f"outbox {r.destination}", json.dumps(r.payload).encode()) for r in rows]
    assert any(b"withdrew consent" in body for _, body in queued)
    assert hits([*queued, ("REST read", read.content), ("audit", audit_trail.content)]) == []
