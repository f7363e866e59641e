"""Webhook bodies have a ceiling, and a webhook declares exactly one Content-Type.

A body over the limit is refused with 413 before it is read whole — by its Content-Length,
or while it streams in without one — and is not stored: keeping it would be the attack.
A body at the limit is read and applied as before. A message with two Content-Type
headers is refused with 415 and kept raw, as every other content-type refusal is: the 415
check and the parser once read different ones of the two.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Row, select

from adapters.couriers import transport as courier_transport
from adapters.manufacturers.signing import sign
from fixtures.simulators.courier import CourierSimulator
from fixtures.simulators.manufacturer_portal import ManufacturerPortal
from gateway.api.bodies import WEBHOOK_MAX_BYTES
from gateway.domain.model import TherapyOrder
from gateway.service.orders import OrderService
from gateway.service.relay import Relay
from gateway.store.tables import inbox
from tests.conftest import FixedClock
from tests.partners.conftest import Walk

Portals = dict[str, ManufacturerPortal]
Couriers = dict[str, CourierSimulator]
NewOrder = Callable[..., TherapyOrder]
Headers = list[tuple[str, str]]


def inbox_rows(service: OrderService) -> Sequence[Row[Any]]:
    with service.engine.connect() as conn:
        return conn.execute(select(inbox)).all()


def padded(document: dict[str, Any], size: int) -> bytes:
    """``document`` as JSON, padded with trailing spaces to exactly ``size`` bytes."""
    body = json.dumps(document).encode()
    assert len(body) <= size
    return body + b" " * (size - len(body))


def chunks(body: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    """A body sent chunked, with no Content-Length."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


def manufacturer_headers(
    portals: Portals, clock: FixedClock, body: bytes, webhook_id: str
) -> dict[str, str]:
    return sign(portals["helix-bio"].keys, webhook_id, int(clock.now.timestamp()), body)


def slot_confirmed(portals: Portals, clock: FixedClock, coi: str | None) -> dict[str, Any]:
    return portals["helix-bio"].event(
        "slot.confirmed",
        at=clock.now,
        coi=coi,
        slot_start=clock.now + timedelta(days=20),
        apheresis_at=clock.now + timedelta(days=10),
    )


def assert_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "body_too_large" and problem["status"] == 413
    assert problem["max_bytes"] == WEBHOOK_MAX_BYTES
    assert "1 MiB" in problem["detail"] and str(WEBHOOK_MAX_BYTES) in problem["detail"]


@pytest.mark.parametrize("sent", ["content-length", "chunked"])
def test_an_oversize_manufacturer_webhook_is_413_and_not_stored(
    sent: str,
    service: OrderService,
    api: httpx.Client,
    clock: FixedClock,
    new_order: NewOrder,
    walk: Walk,
    portals: Portals,
) -> None:
    order = walk(new_order(), "SLOT_REQUESTED")
    body = padded(slot_confirmed(portals, clock, order.coi), WEBHOOK_MAX_BYTES + 1)
    headers = manufacturer_headers(portals, clock, body, "msg_big_1")
    headers["Content-Type"] = "application/json"

    content = body if sent == "content-length" else chunks(body)
    response = api.post("/webhooks/manufacturers/helix-bio", content=content, headers=headers)

    assert_too_large(response)
    assert response.json()["instance"] == "/webhooks/manufacturers/helix-bio"
    assert inbox_rows(service) == []
    assert service.get(order.id).state.value == "SLOT_REQUESTED"


@pytest.mark.parametrize("sent", ["content-length", "chunked"])
def test_a_manufacturer_webhook_at_the_limit_is_applied(
    sent: str,
    service: OrderService,
    api: httpx.Client,
    clock: FixedClock,
    new_order: NewOrder,
    walk: Walk,
    portals: Portals,
) -> None:
    order = walk(new_order(), "SLOT_REQUESTED")
    body = padded(slot_confirmed(portals, clock, order.coi), WEBHOOK_MAX_BYTES)
    headers = manufacturer_headers(portals, clock, body, "msg_big_ok")
    headers["Content-Type"] = "application/json"

    content = body if sent == "content-length" else chunks(body)
    response = api.post("/webhooks/manufacturers/helix-bio", content=content, headers=headers)

    assert response.status_code == 200, response.text
    assert service.get(order.id).state.value == "SLOT_CONFIRMED"
    [row] = inbox_rows(service)
    assert bytes(row.body) == body


def test_an_oversize_declared_length_is_refused_before_the_signature(
    service: OrderService, api: httpx.Client
) -> None:
    """No signature, no partner even: the size is the first thing judged."""
    body = b"{" + b" " * WEBHOOK_MAX_BYTES + b"}"
    for path in ("/webhooks/manufacturers/helix-bio", "/webhooks/couriers/no-such-courier"):
        response = api.post(path, content=body, headers={"Content-Type": "application/json"})
        assert_too_large(response)
    assert inbox_rows(service) == []


@pytest.fixture
def relay(  # type: ignore[no-untyped-def]
    service: OrderService, clock: FixedClock, couriers: Couriers, http: httpx.Client
):
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
    for kind in ("hospital", "manufacturer", "erp"):
        relay.register(kind, lambda item: None)
    return relay


def booked(service: OrderService, relay: Relay, walk: Walk, order: TherapyOrder) -> str:
    """The order collected and its courier booked; its tracking number."""
    walk(order, "COLLECTED")
    stats = relay.run_once()
    assert stats.dead == 0 and stats.retried == 0
    [shipment] = service.get(order.id).shipments
    assert shipment.tracking_number
    return shipment.tracking_number


def post_courier(
    api: httpx.Client,
    clock: FixedClock,
    courier: CourierSimulator,
    body: bytes,
    content: Any,
    headers: Headers,
) -> httpx.Response:
    signed = list(courier.headers(body, timestamp=int(clock.now.timestamp())).items())
    return api.post(
        f"/webhooks/couriers/{courier.partner}", content=content, headers=signed + headers
    )


@pytest.mark.parametrize("sent", ["content-length", "chunked"])
def test_an_oversize_courier_webhook_is_413_and_not_stored(
    sent: str,
    service: OrderService,
    api: httpx.Client,
    clock: FixedClock,
    relay: Relay,
    walk: Walk,
    new_order: NewOrder,
    couriers: Couriers,
) -> None:
    order = new_order()
    tracking = booked(service, relay, walk, order)
    polar = couriers["polar-express"]
    before = len(inbox_rows(service))
    body = padded(polar.milestone(tracking, "PUP", clock.now), WEBHOOK_MAX_BYTES + 1)

    content = body if sent == "content-length" else chunks(body)
    response = post_courier(
        api, clock, polar, body, content, [("Content-Type", "application/json")]
    )

    assert_too_large(response)
    assert len(inbox_rows(service)) == before
    assert service.get(order.id).state.value == "COLLECTED"


@pytest.mark.parametrize("sent", ["content-length", "chunked"])
def test_a_courier_webhook_at_the_limit_is_applied(
    sent: str,
    service: OrderService,
    api: httpx.Client,
    clock: FixedClock,
    relay: Relay,
    walk: Walk,
    new_order: NewOrder,
    couriers: Couriers,
) -> None:
    order = new_order()
    tracking = booked(service, relay, walk, order)
    polar = couriers["polar-express"]
    body = padded(polar.milestone(tracking, "PUP", clock.now), WEBHOOK_MAX_BYTES)

    content = body if sent == "content-length" else chunks(body)
    response = post_courier(
        api, clock, polar, body, content, [("Content-Type", "application/json")]
    )

    assert response.status_code == 200, response.text
    assert service.get(order.id).state.value == "SHIPPED_TO_MFG"


def assert_multiple_content_types(response: httpx.Response, accepted: list[str]) -> None:
    assert response.status_code == 415, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "multiple_content_types"
    assert "2 Content-Type headers" in problem["detail"] and "exactly one" in problem["detail"]
    assert problem["accepted"] == accepted


@pytest.mark.parametrize(
    "declared",
    [["text/csv", "application/json"], ["application/json", "text/csv"]],
    ids=["csv-then-json", "json-then-csv"],
)
def test_a_manufacturer_webhook_with_two_content_types_is_415_and_kept_raw(
    declared: list[str],
    service: OrderService,
    api: httpx.Client,
    clock: FixedClock,
    new_order: NewOrder,
    walk: Walk,
    portals: Portals,
) -> None:
    order = walk(new_order(), "SLOT_REQUESTED")
    body = json.dumps(slot_confirmed(portals, clock, order.coi)).encode()
    signed = list(manufacturer_headers(portals, clock, body, "msg_two_types").items())
    headers = signed + [("Content-Type", media) for media in declared]

    response = api.post("/webhooks/manufacturers/helix-bio", content=body, headers=headers)

    assert_multiple_content_types(response, ["application/json"])
    assert response.headers["Accept-Post"] == "application/json"
    assert service.get(order.id).state.value == "SLOT_REQUESTED"
    [row] = inbox_rows(service)
    assert row.message_key.startswith("rejected:webhook:manufacturer:")
    assert bytes(row.body) == body and row.status == "rejected"
    assert row.content_type == ", ".join(declared)


def test_a_courier_webhook_with_two_content_types_is_415_and_kept_raw(
    service: OrderService,
    api: httpx.Client,
    clock: FixedClock,
    relay: Relay,
    walk: Walk,
    new_order: NewOrder,
    couriers: Couriers,
) -> None:
    """cryoroute takes JSON and CSV: ``text/csv`` then ``application/json`` used to pass
    the 415 check (which read the last) and be parsed as CSV (by the first)."""
    order = new_order(therapy="sam-cel")
    tracking = booked(service, relay, walk, order)
    cryo = couriers["cryoroute"]
    before = len(inbox_rows(service))
    body = json.dumps(cryo.milestone(tracking, "PUP", clock.now)).encode()
    declared = [("Content-Type", "text/csv"), ("Content-Type", "application/json")]

    response = post_courier(api, clock, cryo, body, body, declared)

    assert_multiple_content_types(response, ["application/json", "text/csv", "application/csv"])
    assert service.get(order.id).state.value == "COLLECTED"
    rows = inbox_rows(service)
    assert len(rows) == before + 1
    [row] = [row for row in rows if row.message_key.startswith("rejected:webhook:courier:")]
    assert bytes(row.body) == body and row.content_type == "text/csv, application/json"
