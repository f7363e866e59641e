"""Webhook bodies declared as something other than JSON: refused with 415, kept raw.

A manufacturer or courier that posts its JSON as ``text/plain`` or as a form (curl's
``-d`` default) is told which media type to send; the message is still stored, as every
refusal is. JSON with a charset parameter and ``application/*+json`` are accepted; so is a
body with no Content-Type at all, which is then read strictly as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Row, select

from adapters.manufacturers.signing import sign
from fixtures.simulators.courier import CourierSimulator
from fixtures.simulators.manufacturer_portal import ManufacturerPortal
from gateway.domain.model import TherapyOrder
from gateway.service.orders import OrderService
from gateway.store.tables import inbox
from tests.conftest import FixedClock
from tests.partners.conftest import Walk

Portals = dict[str, ManufacturerPortal]
NewOrder = Callable[[], TherapyOrder]


def stored(service: OrderService, key_prefix: str) -> Sequence[Row[Any]]:
    with service.engine.connect() as conn:
        return conn.execute(select(inbox).where(inbox.c.message_key.like(f"{key_prefix}%"))).all()


def post_manufacturer(
    api: httpx.Client,
    portals: Portals,
    clock: FixedClock,
    body: bytes,
    content_type: str | None,
    webhook_id: str,
) -> httpx.Response:
    portal = portals["helix-bio"]
    headers = sign(portal.keys, webhook_id, int(clock.now.timestamp()), body)
    if content_type is not None:
        headers["Content-Type"] = content_type
    return api.post("/webhooks/manufacturers/helix-bio", content=body, headers=headers)


def slot_confirmed(portals: Portals, clock: FixedClock, coi: str | None) -> dict[str, Any]:
    return portals["helix-bio"].event(
        "slot.confirmed",
        at=clock.now,
        coi=coi,
        slot_start=clock.now + timedelta(days=20),
        apheresis_at=clock.now + timedelta(days=10),
    )


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "text/json"]
)
def test_a_manufacturer_webhook_not_declared_json_is_415_and_kept_raw(
    content_type: str,
    service: OrderService,
    api: httpx.Client,
    clock: FixedClock,
    new_order: NewOrder,
    walk: Walk,
    portals: Portals,
) -> None:
    order = walk(new_order(), "SLOT_REQUESTED")
    body = json.dumps(slot_confirmed(portals, clock, order.coi)).encode()

    response = post_manufacturer(api, portals, clock, body, content_type, "msg_media_1")

    assert response.status_code == 415, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "unsupported_media_type"
    assert problem["status"] == 415 and problem["title"] == "Unsupported media type"
    assert problem["accepted"] == ["application/json"]
    assert content_type in problem["detail"] and "application/json" in problem["detail"]
    assert response.headers["Accept-Post"] == "application/json"
    assert service.get(order.id).state.value == "SLOT_REQUESTED"
    [row] = stored(service, "rejected:webhook:manufacturer")
    assert bytes(row.body) == body and row.content_type == content_type
    assert row.status == "rejected"
    # The refusal did not take the message id: the same message sent as JSON is applied.
    again = post_manufacturer(api, portals, clock, body, "application/json", "msg_media_1")
    assert again.status_code == 200, again.text
    assert service.get(order.id).state.value == "SLOT_CONFIRMED"


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON;charset=UTF-8",
        "application/vnd.helix.event+json",
        None,
    ],
)
def test_json_however_declared_or_undeclared_is_accepted(
    content_type: str | None,
    service: OrderService,
    api: httpx.Client,
    clock: FixedClock,
    new_order: NewOrder,
    walk: Walk,
    portals: Portals,
) -> None:
    order = walk(new_order(), "SLOT_REQUESTED")
    body = json.dumps(slot_confirmed(portals, clock, order.coi)).encode()

    response = post_manufacturer(api, portals, clock, body, content_type, "msg_media_ok")

    assert response.status_code == 200, response.text
    assert service.get(order.id).state.value == "SLOT_CONFIRMED"


def test_an_unsigned_webhook_is_401_whatever_its_content_type(
    service: OrderService, api: httpx.Client
) -> None:
    response = api.post(
        "/webhooks/manufacturers/helix-bio",
        content=b"status=released",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 401
    assert len(stored(service, "rejected:webhook:manufacturer")) == 1


def test_a_courier_webhook_not_declared_json_is_415_and_kept_raw(
    service: OrderService,
    api: httpx.Client,
    clock: FixedClock,
    couriers: dict[str, CourierSimulator],
) -> None:
    polar = couriers["polar-express"]
    body = json.dumps(polar.milestone("PX123", "PUP", clock.now)).encode()

    response = polar.push(
        api, body=body, content_type="text/plain", timestamp=int(clock.now.timestamp())
    )

    assert response.status_code == 415, response.text
    problem = response.json()
    assert problem["code"] == "unsupported_media_type"
    assert problem["accepted"] == ["application/json"]
    [row] = stored(service, "rejected:webhook:courier")
    assert bytes(row.body) == body and row.content_type == "text/plain"


def test_a_courier_that_sends_logger_files_also_takes_csv(
    service: OrderService,
    api: httpx.Client,
    clock: FixedClock,
    couriers: dict[str, CourierSimulator],
) -> None:
    cryo = couriers["cryoroute"]
    form = cryo.push(
        api,
        body=b"tracking=CR1",
        content_type="application/x-www-form-urlencoded",
        timestamp=int(clock.now.timestamp()),
    )
    assert form.status_code == 415, form.text
    assert form.json()["accepted"] == ["application/json", "text/csv", "application/csv"]
    assert "application/json, text/csv or application/csv" in form.json()["detail"]
    # A CSV body passes the media-type check and is judged on its content.
    csv = cryo.push(
        api,
        body=cryo.logger_csv("CR404", "LG-1", [(clock.now, -150.0)]),
        content_type="text/csv; charset=utf-8",
        timestamp=int(clock.now.timestamp()),
    )
    assert csv.status_code == 422 and csv.json()["code"] == "unknown_shipment", csv.text


@pytest.mark.parametrize("repeated", ["webhook-id", "webhook-signature", "webhook-timestamp"])
def test_a_webhook_with_a_signed_header_sent_twice_is_refused_and_kept_raw(
    repeated: str,
    service: OrderService,
    api: httpx.Client,
    clock: FixedClock,
    new_order: NewOrder,
    walk: Walk,
    portals: Portals,
) -> None:
    """Which of two ids would be checked and which believed later is a guess the gateway
    must not make."""
    order = walk(new_order(), "SLOT_REQUESTED")
    body = json.dumps(slot_confirmed(portals, clock, order.coi)).encode()
    signed = sign(portals["helix-bio"].keys, "msg_twice", int(clock.now.timestamp()), body)
    extra = {"webhook-id": "msg_other", "webhook-signature": "v1,AAAA", "webhook-timestamp": "1"}
    headers = [*signed.items(), ("Content-Type", "application/json"), (repeated, extra[repeated])]
    response = api.post("/webhooks/manufacturers/helix-bio", content=body, headers=headers)
    assert response.status_code == 401, response.text
    problem = response.json()
    assert problem["code"] == "repeated_header" and repeated in problem["detail"]
    assert service.get(order.id).state.value == "SLOT_REQUESTED"
    [row] = stored(service, "rejected:webhook:manufacturer")
    assert bytes(row.body) == body
