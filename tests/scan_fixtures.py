"""Orders walked to the pharmacy, with their real labels, for scan tests (a pytest plugin
registered by tests/conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from gateway.domain.lifecycle import EventDetails, LifecycleEvent
from gateway.domain.model import Actor, Source, Unit, UnitKind
from gateway.domain.states import EventType
from gateway.service.labels import LabelFactory
from gateway.service.orders import OrderService
from gateway.service.scanning import ScanStation
from gateway.sites import load_sites
from labeling.layout import LabelKind


@dataclass
class Prepared:
    order_id: str
    coi: str
    unit_id: str
    bag_text: str  # the DataMatrix compound message as a wedge types it
    wristband_text: str
    expires_at: datetime


def walk(
    service: OrderService, order_id: str, target: str, unit_id: str, expires_at: datetime
) -> None:
    now = service.clock()
    steps: list[tuple[EventType, EventDetails, Source]] = [
        (EventType.ENROLL, EventDetails(), Source.MANUFACTURER),
        (EventType.REQUEST_SLOT, EventDetails(), Source.HOSPITAL),
        (
            EventType.CONFIRM_SLOT,
            EventDetails(slot_start=now + timedelta(days=9), apheresis_at=now + timedelta(days=7)),
            Source.MANUFACTURER,
        ),
        (EventType.SCHEDULE_APHERESIS, EventDetails(), Source.HOSPITAL),
        (
            EventType.COLLECT,
            EventDetails(
                unit=Unit(
                    unit_id=unit_id[:7] + f"{int(unit_id[7:]) - 1:06d}",
                    kind=UnitKind.APHERESIS,
                    collected_at=now,
                )
            ),
            Source.HOSPITAL,
        ),
        (EventType.SHIP_TO_MFG, EventDetails(), Source.COURIER),
        (EventType.RECEIVE_AT_MFG, EventDetails(), Source.MANUFACTURER),
        (EventType.START_MANUFACTURING, EventDetails(), Source.MANUFACTURER),
        (
            EventType.RELEASE,
            EventDetails(
                unit=Unit(
                    unit_id=unit_id,
                    kind=UnitKind.FINAL_PRODUCT,
                    product_code=None,
                    collected_at=now,
                    expires_at=expires_at,
                )
            ),
            Source.MANUFACTURER,
        ),
        (EventType.SHIP_TO_SITE, EventDetails(), Source.COURIER),
        (EventType.RECEIVE_AT_SITE, EventDetails(), Source.PHARMACY),
        (EventType.STORE, EventDetails(), Source.PHARMACY),
        (EventType.THAW, EventDetails(), Source.PHARMACY),
    ]
    for kind, details, source in steps:
        if service.get(order_id).state.value == target:
            return
        service.apply_event(
            order_id,
            LifecycleEvent(type=kind, details=details, source=source, actor=Actor(person="setup")),
            actor="setup",
        )
    assert service.get(order_id).state.value == target


@pytest.fixture
def station(service: OrderService) -> ScanStation:
    return ScanStation(service, load_sites())


@pytest.fixture
def prepare(service: OrderService, new_order, clock):  # type: ignore[no-untyped-def]
    factory = LabelFactory.default(load_sites())
    counter = iter(range(1, 1000))

    def make(
        target: str = "STORED",
        patient: int = 0,
        therapy: str = "exa-cel",
        expires_in: timedelta = timedelta(days=120),
    ) -> Prepared:
        index = next(counter)
        order = new_order(therapy=therapy, patient=patient)
        unit_id = f"A999126{100 * index + 2:06d}"
        expires = (clock() + expires_in).replace(second=0, microsecond=0)
        walk(service, order.id, target, unit_id, expires)
        order = service.get(order.id)
        unit = order.unit(unit_id)
        assert unit is not None
        patient_identity = service.patient_of(order.id)
        bag = factory.product_label(order, unit, LabelKind.BAG, patient_identity)
        assert patient_identity is not None
        band = factory.wristband(order, patient_identity)
        return Prepared(
            order.id,
            order.coi or "",
            unit_id,
            str(bag.compound_message()),
            str(band.compound_message()),
            expires,
        )

    return make
