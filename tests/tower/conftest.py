"""Orders in chosen states for control-tower tests, and clients acting as each kind of user."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from itertools import count

import pytest
from fastapi.testclient import TestClient

from gateway.api.app import create_app
from gateway.domain.lifecycle import EventDetails, LifecycleEvent
from gateway.domain.model import (
    Actor,
    HoldReason,
    Source,
    TemperatureReading,
    TherapyOrder,
    Unit,
    UnitKind,
)
from gateway.domain.states import EventType, OrderState
from gateway.domain.tracking import TrackingUpdate, record_tracking
from gateway.service.orders import OrderService

_units = count(1)


@pytest.fixture
def tower_client(service: OrderService) -> Iterator[TestClient]:
    with TestClient(create_app(service, auth=None)) as client:
        yield client


def as_user(kind: str, tenant: str | None = None, actor: str = "tester") -> dict[str, str]:
    headers = {"X-V2V-Role": kind, "X-V2V-Actor": actor}
    if tenant:
        headers["X-V2V-Tenant"] = tenant
    return headers


COORDINATOR = as_user("hospital", "st-mary", "coord.lee")


def next_step(
    order: TherapyOrder, now: datetime, unit_id: str, expires: datetime
) -> LifecycleEvent:
    """The happy-path event that moves ``order`` one state along the journey."""
    collected = f"{unit_id[:7]}{int(unit_id[7:]) - 1:06d}"
    table: dict[OrderState, tuple[EventType, EventDetails, Source]] = {
        OrderState.REFERRED: (EventType.ENROLL, EventDetails(), Source.MANUFACTURER),
        OrderState.ENROLLED: (EventType.REQUEST_SLOT, EventDetails(), Source.HOSPITAL),
        OrderState.SLOT_REQUESTED: (
            EventType.CONFIRM_SLOT,
            EventDetails(slot_start=now + timedelta(days=9), apheresis_at=now + timedelta(days=7)),
            Source.MANUFACTURER,
        ),
        OrderState.SLOT_CONFIRMED: (EventType.SCHEDULE_APHERESIS, EventDetails(), Source.HOSPITAL),
        OrderState.APHERESIS_SCHEDULED: (
            EventType.COLLECT,
            EventDetails(unit=Unit(unit_id=collected, kind=UnitKind.APHERESIS, collected_at=now)),
            Source.HOSPITAL,
        ),
        OrderState.COLLECTED: (EventType.SHIP_TO_MFG, EventDetails(), Source.COURIER),
        OrderState.SHIPPED_TO_MFG: (EventType.RECEIVE_AT_MFG, EventDetails(), Source.MANUFACTURER),
        OrderState.RECEIVED_AT_MFG: (
            EventType.START_MANUFACTURING,
            EventDetails(),
            Source.MANUFACTURER,
        ),
        OrderState.MANUFACTURING: (
            EventType.RELEASE,
            EventDetails(
                unit=Unit(unit_id=unit_id, kind=UnitKind.FINAL_PRODUCT, expires_at=expires)
            ),
            Source.MANUFACTURER,
        ),
        OrderState.RELEASED: (EventType.SHIP_TO_SITE, EventDetails(), Source.COURIER),
        OrderState.SHIPPED_TO_SITE: (EventType.RECEIVE_AT_SITE, EventDetails(), Source.PHARMACY),
        OrderState.RECEIVED_AT_SITE: (EventType.STORE, EventDetails(), Source.PHARMACY),
        OrderState.STORED: (EventType.THAW, EventDetails(), Source.PHARMACY),
    }
    kind, details, source = table[order.state]
    return LifecycleEvent(type=kind, details=details, source=source, actor=Actor(person="setup"))


@pytest.fixture
def order_in(service: OrderService, new_order, clock) -> Callable[..., TherapyOrder]:  # type: ignore[no-untyped-def]
    """An order walked to ``state`` (REFERRED … THAWED) for a synthetic patient."""

    def make(
        state: str = "REFERRED",
        *,
        therapy: str = "exa-cel",
        site: str = "st-mary",
        patient: int = 0,
        step: timedelta = timedelta(0),
    ) -> TherapyOrder:
        """The clock moves on by ``step`` before each lifecycle step."""
        order = new_order(therapy=therapy, site=site, patient=patient)
        unit_id = f"A999126{100 * next(_units) + 52:06d}"
        expires = clock() + timedelta(days=120)
        while order.state.value != state:
            clock.advance(seconds=step.total_seconds())
            event = next_step(order, clock(), unit_id, expires)
            order = service.apply_event(order.id, event, actor="setup").order
        return order

    return make


def track(
    service: OrderService,
    order_id: str,
    celsius: list[float],
    *,
    courier: str = "polar-express",
    tracking: str = "TRK-1",
    leg: str = "to_site",
) -> TherapyOrder:
    """Record a courier's tracking number and logger readings, one every 5 minutes."""
    start = service.clock() - timedelta(minutes=5 * len(celsius))
    update = TrackingUpdate(
        leg=leg,
        courier=courier,
        tracking_number=tracking,
        logger_id="LOG-7",
        readings=[
            TemperatureReading(at=start + timedelta(minutes=5 * i), celsius=c)
            for i, c in enumerate(celsius)
        ],
    )
    with service.uow() as uow:
        service.amend(order_id, record_tracking(update), action="tracking", actor=courier, uow=uow)
        uow.commit()
    order = service.get(order_id)
    service.publish(order)  # as process_inbound does once a courier's message commits
    return order


def hold(
    service: OrderService, order_id: str, reason: HoldReason = HoldReason.TEMPERATURE_EXCURSION
) -> TherapyOrder:
    service.apply_event(
        order_id,
        LifecycleEvent(
            type=EventType.PLACE_HOLD,
            source=Source.COURIER,
            details=EventDetails(hold_reason=reason, reason="logger above limit"),
        ),
        actor="courier",
    )
    return service.get(order_id)
