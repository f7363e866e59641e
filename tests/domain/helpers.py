"""Pure-domain helpers: orders and events without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.domain.lifecycle import EventDetails, LifecycleEvent, apply
from gateway.domain.model import (
    Actor,
    ScanVerdict,
    Site,
    Source,
    Therapy,
    TherapyOrder,
    Unit,
    UnitKind,
)
from gateway.domain.rules import TherapyRules
from gateway.domain.states import EventType
from gateway.therapy_rules import load_rule_book

RULES = load_rule_book()
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def rules(code: str = "exa-cel") -> TherapyRules:
    found = RULES.get(code)
    assert found is not None
    return found


def fresh_order(code: str = "exa-cel") -> TherapyOrder:
    rule = rules(code)
    return TherapyOrder(
        patient_pseudonym="PSN-TEST-0001",
        therapy=Therapy(code=rule.code, name=rule.name, manufacturer=rule.manufacturer),
        site=Site(id="st-mary"),
        created_at=T0,
        updated_at=T0,
    )


def event(
    kind: EventType | str,
    at: datetime | None = None,
    source: Source = Source.HOSPITAL,
    person: str | None = "nurse.one",
    **details: Any,
) -> LifecycleEvent:
    return LifecycleEvent(
        type=EventType(kind),
        at=at,
        source=source,
        actor=Actor(person=person, role="tester"),
        details=EventDetails(**details),
    )


APHERESIS = T0 + timedelta(days=10)


def script_to(order: TherapyOrder, target: str, code: str = "exa-cel") -> TherapyOrder:
    """Walk an order along the happy path until it reaches ``target``."""
    rule = rules(code)
    steps: list[tuple[LifecycleEvent, datetime]] = [
        (event("enroll", coi="CHA999126QWE123"), T0),
        (event("request_slot"), T0),
        (
            event(
                "confirm_slot",
                source=Source.MANUFACTURER,
                slot_start=T0 + timedelta(days=12),
                apheresis_at=APHERESIS,
            ),
            T0,
        ),
        (event("schedule_apheresis", apheresis_at=APHERESIS), T0),
        (
            event(
                "collect", at=APHERESIS, unit=Unit(unit_id="A999126000001", kind=UnitKind.APHERESIS)
            ),
            APHERESIS,
        ),
        (event("ship_to_mfg", at=APHERESIS + timedelta(hours=4)), APHERESIS),
        (event("receive_at_mfg", at=APHERESIS + timedelta(days=1)), APHERESIS),
        (event("start_manufacturing", at=APHERESIS + timedelta(days=2)), APHERESIS),
        (
            event(
                "release",
                at=APHERESIS + timedelta(days=20),
                unit=Unit(unit_id="A999126000002", kind=UnitKind.FINAL_PRODUCT),
            ),
            APHERESIS,
        ),
        (event("ship_to_site", at=APHERESIS + timedelta(days=21)), APHERESIS),
        (event("receive_at_site", at=APHERESIS + timedelta(days=22)), APHERESIS),
        (event("store", at=APHERESIS + timedelta(days=22, hours=1)), APHERESIS),
        (event("thaw", at=APHERESIS + timedelta(days=30)), APHERESIS),
    ]
    for step, now in steps:
        if order.state.value == target:
            return order
        order = apply(order, step, rule, now).order
    assert order.state.value == target, order.state
    return order


def bedside_checks(
    order: TherapyOrder, at: datetime, users: tuple[str, ...] = ("rn.a", "rn.b"), green: bool = True
) -> TherapyOrder:
    order = order.model_copy(deep=True)
    for user in users:
        order.scans.append(
            ScanVerdict(at=at, checkpoint="bedside", user=user, green=green, method="second_person")
        )
    return order
