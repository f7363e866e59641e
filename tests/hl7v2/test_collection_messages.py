"""OML^O21 collections: the time a collection was planned is not overwritten by the time
it happened."""

from __future__ import annotations

from datetime import UTC, datetime

from adapters.hl7v2.er7 import parse
from adapters.hl7v2.inbound import InboundHandler
from gateway.domain.lifecycle import EventDetails, LifecycleEvent
from gateway.domain.model import Source, TherapyOrder
from gateway.domain.states import EventType, OrderState
from gateway.service.orders import OrderService
from tests.hl7v2.conftest import fixture_bytes

SLOT = datetime(2026, 12, 1, tzinfo=UTC)
PLANNED = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
COLLECTED = datetime(2026, 11, 20, 11, 30, tzinfo=UTC)  # SPM-17 of the fixture


def _slot_confirmed(handler: InboundHandler, service: OrderService) -> TherapyOrder:
    """St Mary's new order, its slot confirmed by the manufacturer for PLANNED."""
    (ack,) = handler.handle(fixture_bytes("st-mary-orm-o01-new-order.hl7"))
    assert parse(ack).get("MSA-1") == "AA"
    order = service.find("placer", "SM-1001", "st-mary")
    assert order is not None
    service.apply_event(order.id, LifecycleEvent(type=EventType.REQUEST_SLOT), actor="test")
    service.apply_event(
        order.id,
        LifecycleEvent(
            type=EventType.CONFIRM_SLOT,
            source=Source.MANUFACTURER,
            details=EventDetails(slot_start=SLOT, apheresis_at=PLANNED),
        ),
        actor="test",
    )
    return order


def test_a_collection_reported_straight_after_the_slot_keeps_the_confirmed_time(
    handler: InboundHandler, service: OrderService
) -> None:
    order = _slot_confirmed(handler, service)
    (ack,) = handler.handle(fixture_bytes("st-mary-oml-o21-collected.hl7"))
    assert parse(ack).get("MSA-1") == "AA", ack
    collected = service.get(order.id)
    assert collected.state is OrderState.COLLECTED
    assert collected.milestones.apheresis_at == PLANNED
    assert collected.units[0].collected_at == COLLECTED


def test_a_lower_case_unit_id_is_refused_not_upper_cased(
    handler: InboundHandler, service: OrderService
) -> None:
    order = _slot_confirmed(handler, service)
    lower = fixture_bytes("st-mary-oml-o21-collected.hl7").replace(
        b"A999126000123E", b"a999126000123e"
    )
    (ack,) = handler.handle(lower)
    answer = parse(ack)
    assert answer.get("MSA-1") == "AE" and answer.get("ERR-2.1") == "SPM"
    assert "upper-case" in answer.get("ERR-8")
    assert service.get(order.id).units == []
