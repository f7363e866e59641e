"""Polling courier tracking: one failing poll does not stop the others."""

from __future__ import annotations

import logging

from adapters.couriers import poll_open_shipments
from tests.partners.test_couriers import book, relay

__all__ = ["relay"]  # the relay fixture, shared with test_couriers


def test_a_failing_poll_is_logged_and_the_other_shipments_are_still_polled(
    service, clock, relay, walk, new_order, couriers, http, caplog
):  # type: ignore[no-untyped-def]
    first = book(service, relay, walk, new_order())
    second = book(service, relay, walk, new_order(patient=1))
    polar = couriers["polar-express"]
    for order in (first, second):
        polar.add_milestone(order.shipments[0].tracking_number, "PUP", clock.now)
    polar.fail_next(503)
    with caplog.at_level(logging.WARNING, logger="adapters.couriers.inbound"):
        replies = poll_open_shipments(
            service, client=http, base_urls={"polar-express": polar.url + "/px/v1"}
        )
    assert len(replies) == 1
    states = sorted(service.get(order.id).state.value for order in (first, second))
    assert states == ["COLLECTED", "SHIPPED_TO_MFG"]
    assert "HTTP 503" in caplog.text
    again = poll_open_shipments(
        service, client=http, base_urls={"polar-express": polar.url + "/px/v1"}
    )
    assert sorted(reply.duplicate for reply in again) == [False, True]
    assert {service.get(o.id).state.value for o in (first, second)} == {"SHIPPED_TO_MFG"}


def test_polling_reaches_every_shipment_however_many_orders_are_in_transit(
    service, clock, relay, walk, new_order, couriers, http, monkeypatch
):  # type: ignore[no-untyped-def]
    """Orders are read page by page to the end; before, only the first 500 per state."""
    from adapters.couriers import inbound

    monkeypatch.setattr(inbound, "POLL_PAGE", 2)
    orders = [book(service, relay, walk, new_order(patient=n % 2)) for n in range(5)]
    polar = couriers["polar-express"]
    for order in orders:
        polar.add_milestone(order.shipments[0].tracking_number, "PUP", clock.now)
    replies = poll_open_shipments(
        service, client=http, base_urls={"polar-express": polar.url + "/px/v1"}
    )
    assert len(replies) == 5
    assert {service.get(order.id).state.value for order in orders} == {"SHIPPED_TO_MFG"}
