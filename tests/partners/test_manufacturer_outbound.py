"""Our REST calls to manufacturer portals through the relay transport."""

from __future__ import annotations

from datetime import timedelta

import pytest

from adapters.manufacturers import transport as manufacturer_transport
from gateway.domain.lifecycle import EventDetails, LifecycleEvent
from gateway.domain.model import Source
from gateway.domain.states import EventType
from gateway.service.relay import DeliveryError
from gateway.store import outbox


def items(service, order_id, prefix="manufacturer:"):  # type: ignore[no-untyped-def]
    with service.engine.connect() as conn:
        return [
            i
            for i in outbox.list_items(conn, order_id=order_id)
            if i.destination.startswith(prefix)
        ]


@pytest.fixture
def deliver(service, portals, http):  # type: ignore[no-untyped-def]
    return manufacturer_transport(
        service,
        client=http,
        base_urls={
            "helix-bio": portals["helix-bio"].url + "/api/v2",
            "northwind-cell": portals["northwind-cell"].url + "/nw",
        },
    )


def test_helix_enrolment_and_slot_request_in_its_nested_shape(
    service, deliver, portals, walk, new_order
):  # type: ignore[no-untyped-def]
    order = walk(new_order(), "SLOT_REQUESTED")
    sent = items(service, order.id)
    assert [i.kind for i in sent] == ["manufacturer.enroll", "manufacturer.request_slot"]
    for item in sent:
        deliver(item)
    enrol, slot = portals["helix-bio"].calls("POST")
    assert enrol.path == "/api/v2/cases"
    assert enrol.json()["case"]["coi"] == order.coi
    assert enrol.json()["case"]["pseudonym"] == order.patient_pseudonym
    assert enrol.headers["idempotency-key"] == sent[0].idempotency_key
    assert slot.path == f"/api/v2/cases/{order.coi.replace(' ', '%20')}/slot-requests"
    assert service.get(order.id).external_ids.manufacturer_order_id == "HE-1001"


def test_northwind_flat_shape_code_map_and_local_dates(
    service, deliver, portals, walk, new_order, clock
):  # type: ignore[no-untyped-def]
    order = walk(new_order(therapy="sam-cel"), "APHERESIS_SCHEDULED")
    new_date = clock.now + timedelta(days=12)
    service.apply_event(
        order.id,
        LifecycleEvent(type=EventType.RESCHEDULE, details=EventDetails(apheresis_at=new_date)),
        actor="test",
    )
    for item in items(service, order.id):
        deliver(item)
    portal = portals["northwind-cell"]
    enrol = portal.calls("POST")[0].json()
    assert enrol == {
        "coiId": order.coi,
        "patientRef": order.patient_pseudonym,
        "productCode": "NW-BCMA-01",
        "siteCode": "st-mary",
    }
    [move] = portal.calls("PUT")
    assert move.json()["apheresisDate"] == "14.11.2026 10:00"  # 09:00 UTC in Amsterdam


def test_cancel_is_sent_but_not_echoed_back_to_its_source(
    service, deliver, portals, walk, new_order
):  # type: ignore[no-untyped-def]
    order = walk(new_order(), "ENROLLED")
    service.apply_event(
        order.id,
        LifecycleEvent(type=EventType.CANCEL, details=EventDetails(reason="patient unwell")),
        actor="test",
    )
    assert [i.kind for i in items(service, order.id)][-1] == "manufacturer.cancel"
    other = walk(new_order(), "ENROLLED")
    service.apply_event(
        other.id,
        LifecycleEvent(type=EventType.CANCEL, source=Source.MANUFACTURER),
        actor="helix",
    )
    assert "manufacturer.cancel" not in [i.kind for i in items(service, other.id)]
    for item in items(service, order.id):
        deliver(item)
    assert (
        portals["helix-bio"].calls("POST")[-1].json()["cancellation"]["reason"] == "patient unwell"
    )


def test_status_decides_retry_or_dead_letter(service, deliver, portals, walk, new_order):  # type: ignore[no-untyped-def]
    order = walk(new_order(), "ENROLLED")
    [item] = items(service, order.id)
    portals["helix-bio"].fail_next(503)
    with pytest.raises(DeliveryError) as busy:
        deliver(item)
    assert not busy.value.permanent
    portals["helix-bio"].fail_next(422)
    with pytest.raises(DeliveryError) as refused:
        deliver(item)
    assert refused.value.permanent
    deliver(item)
    deliver(item)  # the retry after a lost answer: same Idempotency-Key, same case
    assert service.get(order.id).external_ids.manufacturer_order_id == "HE-1001"


def test_other_notices_are_acknowledged_without_a_call(service, deliver, portals, walk, new_order):  # type: ignore[no-untyped-def]
    order = walk(new_order(), "ENROLLED")
    [item] = items(service, order.id)
    from dataclasses import replace

    deliver(replace(item, kind="order.status"))
    assert portals["helix-bio"].requests == []


def test_a_retry_sends_the_request_first_sent_though_the_order_changed(
    service, deliver, portals, walk, new_order
):  # type: ignore[no-untyped-def]
    # Northwind's slot request carries its own order ref, which only its enrolment answer
    # gives. Sent before that answer, the request must stay the same on every retry under
    # its idempotency key; the portal refuses a different body under a key it holds.
    order = walk(new_order(therapy="sam-cel"), "SLOT_REQUESTED")
    enrol, slot = items(service, order.id)
    portal = portals["northwind-cell"]
    portal.fail_next(503)
    with pytest.raises(DeliveryError) as busy:
        deliver(slot)
    assert not busy.value.permanent
    deliver(enrol)
    assert service.get(order.id).external_ids.manufacturer_order_id == "NO-1001"
    [again] = [i for i in items(service, order.id) if i.id == slot.id]
    deliver(again)
    first, retried = [c for c in portal.calls("POST") if c.path.endswith("/slot")]
    assert retried.body == first.body and "nwOrderRef" not in first.json()
    assert retried.headers["idempotency-key"] == first.headers["idempotency-key"]


def test_a_request_refused_outright_is_shaped_afresh_on_the_next_attempt(
    service, deliver, portals, walk, new_order
):  # type: ignore[no-untyped-def]
    order = walk(new_order(therapy="sam-cel"), "SLOT_REQUESTED")
    enrol, slot = items(service, order.id)
    portal = portals["northwind-cell"]
    portal.fail_next(422)
    with pytest.raises(DeliveryError) as refused:
        deliver(slot)
    assert refused.value.permanent
    [after] = [i for i in items(service, order.id) if i.id == slot.id]
    assert outbox.SENT_REQUEST not in after.payload  # the portal acted on nothing
    deliver(enrol)
    deliver(after)  # e.g. an operator's retry once the enrolment went through
    last = [c for c in portal.calls("POST") if c.path.endswith("/slot")][-1]
    assert last.json()["nwOrderRef"] == "NO-1001"


def test_a_second_pin_keeps_the_first_request(service, walk, new_order) -> None:  # type: ignore[no-untyped-def]
    order = walk(new_order(), "ENROLLED")
    [item] = items(service, order.id)
    with service.uow() as uow:
        first = outbox.pin_request(uow.conn, item.id, {"path": "/a", "body": {"n": 1}})
        second = outbox.pin_request(uow.conn, item.id, {"path": "/a", "body": {"n": 2}})
        uow.commit()
    assert first == second == {"path": "/a", "body": {"n": 1}}


def test_an_order_cancelled_before_enrolment_sends_the_manufacturer_nothing(service, new_order):  # type: ignore[no-untyped-def]
    """The manufacturer first hears of an order at its enrolment; a cancellation before then
    used to be queued for it, and was dead-lettered for want of a CoI to address it by."""
    order = new_order()
    service.apply_event(
        order.id,
        LifecycleEvent(type=EventType.CANCEL, details=EventDetails(reason="patient unwell")),
        actor="test",
    )
    assert service.get(order.id).state.value == "CANCELLED"
    kinds = [i.kind for i in items(service, order.id)]
    assert not [kind for kind in kinds if kind.startswith("manufacturer.")], kinds


def test_a_release_repeated_with_its_unit_is_audited_and_books_no_second_courier(
    service, walk, new_order
):  # type: ignore[no-untyped-def]
    from gateway.domain.model import Unit, UnitKind
    from gateway.store import audit

    order = walk(new_order(), "RELEASED")
    before = [(i.destination, i.kind) for i in items(service, order.id, prefix="")]
    unit = Unit(unit_id="A999126000777", kind=UnitKind.FINAL_PRODUCT)
    outcome = service.apply_event(
        order.id,
        LifecycleEvent(
            type=EventType.RELEASE, details=EventDetails(unit=unit), source=Source.MANUFACTURER
        ),
        actor="helix",
    )
    assert outcome.kind == "late"
    assert [u.unit_id for u in service.get(order.id).final_products()] == ["A999126000777"]
    after = [(i.destination, i.kind) for i in items(service, order.id, prefix="")]
    added = after[len(before) :]
    # The hospital hears of the unit; no partner is asked to act on the release again.
    assert added and all(kind == "order.status" for _, kind in added), added
    with service.engine.connect() as conn:
        last = list(audit.entries(conn, order.id))[-1]
    assert last.action == "order.release" and last.payload["outcome"] == "late"
