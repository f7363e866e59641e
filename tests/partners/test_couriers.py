"""Couriers: booking through the relay, tracking milestones by webhook and polling,
out-of-order and duplicate milestones, logger readings and excursions."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from adapters.couriers import poll
from adapters.couriers import transport as courier_transport
from gateway.domain.model import ShipmentLeg
from gateway.service.relay import Relay
from gateway.store import outbox

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "couriers"


@pytest.fixture
def relay(service, clock, couriers, http):  # type: ignore[no-untyped-def]
    relay = Relay(service.engine, clock=clock)
    relay.register(
        "courier",
        courier_transport(
            service,
            client=http,
            base_urls={
                "polar-express": couriers["polar-express"].url + "/px/v1",
                "cryoroute": couriers["cryoroute"].url + "/cr",
            },
        ),
    )
    relay.register("hospital", lambda item: None)
    relay.register("manufacturer", lambda item: None)
    relay.register("erp", lambda item: None)
    return relay


def book(service, relay, walk, order, state="COLLECTED"):  # type: ignore[no-untyped-def]
    walk(order, state)
    stats = relay.run_once()
    assert stats.dead == 0 and stats.retried == 0
    return service.get(order.id)


def stamp(clock):  # type: ignore[no-untyped-def]
    return int(clock.now.timestamp())


def test_collection_books_the_lane_courier_and_records_the_booking(
    service, relay, walk, new_order, couriers
):  # type: ignore[no-untyped-def]
    order = book(service, relay, walk, new_order())
    [shipment] = order.shipments
    assert shipment.leg.value == "to_manufacturer" and shipment.courier == "polar-express"
    assert shipment.shipper_serial.startswith("DS-") and shipment.logger_id.startswith("LG-")
    assert [m.code for m in shipment.milestones] == ["booked"]
    request = couriers["polar-express"].booking_for(shipment.tracking_number)["shipment"]
    assert request["reference"] == order.coi and request["patient_ref"] == order.patient_pseudonym
    assert request["pickup"]["window"]["start"] < request["pickup"]["window"]["end"]


def test_therapy_specific_lane_picks_cryoroute(service, relay, walk, new_order, couriers):  # type: ignore[no-untyped-def]
    order = book(service, relay, walk, new_order(therapy="sam-cel"))
    booking = couriers["cryoroute"].booking_for(order.shipments[0].tracking_number)
    assert booking["direction"] == "OUTBOUND" and booking["coi"] == order.coi


def test_pick_up_and_delivery_move_the_order(service, api, clock, relay, walk, new_order, couriers):  # type: ignore[no-untyped-def]
    order = book(service, relay, walk, new_order())
    tracking = order.shipments[0].tracking_number
    polar = couriers["polar-express"]
    picked = polar.push(api, polar.milestone(tracking, "PUP", clock.now), timestamp=stamp(clock))
    assert picked.status_code == 200, picked.text
    assert service.get(order.id).state.value == "SHIPPED_TO_MFG"
    for word in ("TTA", "DEP", "ARR", "OFD"):
        polar.push(
            api, polar.milestone(tracking, word, clock.advance(hours=1)), timestamp=stamp(clock)
        )
    delivered = polar.push(
        api, polar.milestone(tracking, "DLV", clock.advance(hours=1)), timestamp=stamp(clock)
    )
    assert delivered.json()["state"] == "RECEIVED_AT_MFG"
    shipment = service.get(order.id).shipments[0]
    assert [m.code for m in shipment.milestones] == [
        "booked",
        "picked_up",
        "tendered_to_airline",
        "departed",
        "arrived",
        "out_for_delivery",
        "delivered",
    ]


def test_delivered_before_picked_up_implies_the_shipment_and_keeps_both(
    service, api, clock, relay, walk, new_order, couriers
):  # type: ignore[no-untyped-def]
    order = book(service, relay, walk, new_order())
    tracking = order.shipments[0].tracking_number
    polar = couriers["polar-express"]
    pickup_time = clock.now + timedelta(hours=1)
    delivery_time = clock.now + timedelta(hours=9)
    delivered = polar.push(
        api, polar.milestone(tracking, "DLV", delivery_time), timestamp=stamp(clock)
    )
    assert delivered.json()["events"][0]["event"] == "receive_at_mfg"
    assert service.get(order.id).state.value == "RECEIVED_AT_MFG"
    late = polar.push(api, polar.milestone(tracking, "PUP", pickup_time), timestamp=stamp(clock))
    assert late.status_code == 200
    assert late.json()["events"][0]["outcome"] in ("late", "duplicate")
    after = service.get(order.id)
    assert after.state.value == "RECEIVED_AT_MFG"
    assert [m.code for m in after.shipments[0].milestones] == ["booked", "picked_up", "delivered"]


def test_a_resent_milestone_under_a_new_id_changes_nothing(
    service, api, clock, relay, walk, new_order, couriers
):  # type: ignore[no-untyped-def]
    order = book(service, relay, walk, new_order())
    tracking = order.shipments[0].tracking_number
    polar = couriers["polar-express"]
    message = polar.milestone(tracking, "PUP", clock.now)
    polar.push(api, message, timestamp=stamp(clock))
    version = service.get(order.id).version
    again = polar.push(api, message, timestamp=stamp(clock))
    assert again.json()["outcome"] == "duplicate"
    assert service.get(order.id).version == version


def test_return_leg_booked_on_release_and_delivered_to_site(
    service, api, clock, relay, walk, new_order, couriers
):  # type: ignore[no-untyped-def]
    order = book(service, relay, walk, new_order(), state="RELEASED")
    to_site = service.get(order.id).shipment(ShipmentLeg.TO_SITE)
    assert to_site is not None and to_site.tracking_number
    polar = couriers["polar-express"]
    polar.push(
        api, polar.milestone(to_site.tracking_number, "PUP", clock.now), timestamp=stamp(clock)
    )
    reply = polar.push(
        api,
        polar.milestone(to_site.tracking_number, "DLV", clock.advance(hours=8)),
        timestamp=stamp(clock),
    )
    assert reply.json()["state"] == "RECEIVED_AT_SITE"


def test_cryoroute_signs_its_own_way_and_tampering_is_refused(
    service, api, clock, relay, walk, new_order, couriers
):  # type: ignore[no-untyped-def]
    order = book(service, relay, walk, new_order(site="lakeside", therapy="sam-cel"))
    tracking = order.shipments[0].tracking_number
    cryo = couriers["cryoroute"]
    body = json.dumps(cryo.milestone(tracking, "PICKED_UP", clock.now)).encode()
    headers = cryo.headers(body, timestamp=stamp(clock)) | {"Content-Type": "application/json"}
    forged = api.post(
        "/webhooks/couriers/cryoroute", content=body.replace(b"PICKED", b"PICKEX"), headers=headers
    )
    assert forged.status_code == 401 and forged.json()["code"] == "invalid_signature"
    genuine = api.post("/webhooks/couriers/cryoroute", content=body, headers=headers)
    assert genuine.status_code == 200 and genuine.json()["state"] == "SHIPPED_TO_MFG"


def test_polling_feeds_the_same_path_and_dedupes(
    service, clock, relay, walk, new_order, couriers, http
):  # type: ignore[no-untyped-def]
    order = book(service, relay, walk, new_order())
    tracking = order.shipments[0].tracking_number
    polar = couriers["polar-express"]
    polar.add_milestone(tracking, "PUP", clock.now, "St Mary's dock")
    base = polar.url + "/px/v1"
    first = poll(service, "polar-express", tracking, client=http, base_url=base)
    assert first.status == "accepted" and service.get(order.id).state.value == "SHIPPED_TO_MFG"
    second = poll(service, "polar-express", tracking, client=http, base_url=base)
    assert second.duplicate
    polar.add_milestone(tracking, "DLV", clock.advance(hours=9))
    poll(service, "polar-express", tracking, client=http, base_url=base)
    assert service.get(order.id).state.value == "RECEIVED_AT_MFG"


def test_unknown_milestone_code_and_unknown_shipment_are_refused(
    service, api, clock, relay, walk, new_order, couriers
):  # type: ignore[no-untyped-def]
    order = book(service, relay, walk, new_order())
    polar = couriers["polar-express"]
    tracking = order.shipments[0].tracking_number
    odd = polar.push(api, polar.milestone(tracking, "LOST", clock.now), timestamp=stamp(clock))
    assert odd.status_code == 422 and odd.json()["field"] == "shipment.events[0].code"
    nowhere = polar.push(api, polar.milestone("PX404", "PUP", clock.now), timestamp=stamp(clock))
    assert nowhere.status_code == 422 and nowhere.json()["code"] == "unknown_shipment"


def alerts(service, order_id):  # type: ignore[no-untyped-def]
    with service.engine.connect() as conn:
        return [
            i for i in outbox.list_items(conn, order_id=order_id) if i.kind == "alert.excursion"
        ]


def test_logger_csv_excursion_holds_the_order_with_custody_and_alert(
    service, api, clock, relay, walk, new_order, couriers
):  # type: ignore[no-untyped-def]
    order = book(service, relay, walk, new_order(site="lakeside", therapy="sam-cel"))
    tracking = order.shipments[0].tracking_number
    cryo = couriers["cryoroute"]
    csv = (
        (FIXTURES / "cryoroute-logger-excursion.csv")
        .read_bytes()
        .replace(b"{{tracking}}", tracking.encode())
    )
    reply = cryo.push(api, body=csv, content_type="text/csv", timestamp=stamp(clock))
    assert reply.status_code == 200, reply.text
    assert len(reply.json()["holds"]) == 1
    after = service.get(order.id)
    assert after.status == "ON_HOLD"
    assert after.active_holds[0].reason.value == "temperature_excursion"
    [excursion] = after.shipments[0].excursions
    assert excursion.worst_celsius == -96.5 and excursion.limit_celsius == -120
    assert any(
        e.verification == "red" and "excursion" in (e.reason or "") for e in after.custody_events
    )
    [alert] = alerts(service, order.id)
    assert alert.destination == "hospital:lakeside" and alert.payload["coi"] == order.coi
    again = cryo.push(api, body=csv, content_type="text/csv", timestamp=stamp(clock))
    assert again.json()["outcome"] == "duplicate" and len(service.get(order.id).holds) == 1


def test_a_warm_spell_becomes_an_excursion_only_when_it_lasts(
    service, api, clock, relay, walk, new_order, couriers
):  # type: ignore[no-untyped-def]
    order = book(service, relay, walk, new_order())
    tracking = order.shipments[0].tracking_number
    polar = couriers["polar-express"]
    t = clock.now
    first = [(t, -185.0), (t + timedelta(minutes=5), -140.0), (t + timedelta(minutes=8), -141.0)]
    reply = polar.push(api, polar.document(tracking, readings=first), timestamp=stamp(clock))
    assert reply.status_code == 200 and reply.json()["holds"] == []
    after = service.get(order.id)
    assert len(after.shipments[0].readings) == 3 and not after.on_hold
    # The next batch shows the spell went on to 15 minutes (exa-cel allows 10).
    later = [(t + timedelta(minutes=16), -138.0), (t + timedelta(minutes=20), -185.0)]
    reply = polar.push(api, polar.document(tracking, readings=later), timestamp=stamp(clock))
    assert len(reply.json()["holds"]) == 1
    assert service.get(order.id).status == "ON_HOLD"


def test_a_couriers_own_signature_header_sent_twice_is_refused(
    service, api, clock, relay, walk, new_order, couriers
):  # type: ignore[no-untyped-def]
    """Whatever a partner's scheme calls its signature header, a second copy (here a bogus
    one before the genuine one) is refused rather than one of them believed."""
    order = book(service, relay, walk, new_order(site="lakeside", therapy="sam-cel"))
    cryo = couriers["cryoroute"]
    body = json.dumps(cryo.milestone(order.shipments[0].tracking_number, "PICKED_UP", clock.now))
    signed = cryo.headers(body.encode(), timestamp=stamp(clock))
    name = next(key for key in signed if key.lower().endswith("signature"))
    headers = [(name, "sha256=" + "0" * 64), *signed.items(), ("Content-Type", "application/json")]
    response = api.post("/webhooks/couriers/cryoroute", content=body, headers=headers)
    assert response.status_code == 401 and response.json()["code"] == "repeated_header"
    assert service.get(order.id).state.value != "SHIPPED_TO_MFG"
