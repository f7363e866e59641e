"""Drive an order along the journey through the service, for facade tests."""

from __future__ import annotations

from datetime import timedelta

from gateway.domain.lifecycle import EventDetails, LifecycleEvent
from gateway.domain.model import Actor, Source, Unit, UnitKind
from gateway.domain.states import EventType
from gateway.service.orders import OrderService
from tests.conftest import FixedClock

E = EventType


def advance_to_stored(
    service: OrderService, clock: FixedClock, order_id: str, *, through: EventType = E.STORE
) -> None:
    """Apply the journey's events, an hour apart, up to and including ``through``."""
    now = clock.now
    steps: list[tuple[EventType, Source, EventDetails]] = [
        (E.ENROLL, Source.MANUFACTURER, EventDetails()),
        (E.REQUEST_SLOT, Source.HOSPITAL, EventDetails()),
        (
            E.CONFIRM_SLOT,
            Source.MANUFACTURER,
            EventDetails(slot_start=now + timedelta(days=20), apheresis_at=now + timedelta(days=7)),
        ),
        (E.SCHEDULE_APHERESIS, Source.HOSPITAL, EventDetails()),
        (
            E.COLLECT,
            Source.HOSPITAL,
            EventDetails(
                unit=Unit(
                    unit_id="A999926000001",
                    kind=UnitKind.APHERESIS,
                    product_code="S9000",
                    volume_ml=220,
                    collected_at=now + timedelta(days=7),
                    storage="2-8 C",
                ),
                unit_id="A999926000001",
                location="Lakeside apheresis unit",
            ),
        ),
        (E.SHIP_TO_MFG, Source.COURIER, EventDetails(unit_id="A999926000001")),
        (E.RECEIVE_AT_MFG, Source.MANUFACTURER, EventDetails(unit_id="A999926000001")),
        (E.START_MANUFACTURING, Source.MANUFACTURER, EventDetails()),
        (
            E.RELEASE,
            Source.MANUFACTURER,
            EventDetails(
                unit=Unit(
                    unit_id="A999926000099",
                    kind=UnitKind.FINAL_PRODUCT,
                    division="00",
                    volume_ml=68,
                    storage="Vapour-phase liquid nitrogen, at or below -150 C",
                )
            ),
        ),
        (E.SHIP_TO_SITE, Source.COURIER, EventDetails(unit_id="A999926000099")),
        (E.RECEIVE_AT_SITE, Source.PHARMACY, EventDetails(unit_id="A999926000099")),
        (E.STORE, Source.PHARMACY, EventDetails(unit_id="A999926000099", location="LN2 tank 3")),
    ]
    for event_type, source, details in steps:
        clock.advance(hours=1)
        service.apply_event(
            order_id,
            LifecycleEvent(
                type=event_type,
                source=source,
                actor=Actor(person="Zz-Operator", role="cell lab", organisation="Lakeside"),
                details=details,
            ),
            actor="test",
        )
        if event_type is through:
            return
