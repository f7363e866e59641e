"""Which partners hear about an order change, and what they may see.

Every notification a manufacturer or courier receives carries the chain-of-identity
identifier and the pseudonym only. The hospital's own systems get the same minimal notice;
their adapters look up what else they are entitled to when they render the message.

Who is told what:

* the hospital: every change (``order.status``), and ``alert.excursion`` when a
  temperature excursion puts the order on hold;
* the manufacturer: enrolment, slot request, reschedule and cancellation, unless the
  manufacturer itself reported the change;
* the courier serving the site and therapy (``lanes`` in ``mappings/couriers/*.yaml``):
  a booking when apheresis is collected (to the manufacturer) and when the product is
  released (back to the site);
* the site's ERP (``mappings/erp/<site>.yaml``): a purchase order when the slot is
  confirmed, a goods receipt when the product is received at site.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gateway.domain.lifecycle import LifecycleEvent, Outcome
from gateway.domain.model import HoldReason, ShipmentLeg, Source, TherapyOrder
from gateway.domain.states import EventType
from gateway.mapping_files import load_yaml, mappings_dir

E = EventType

MANUFACTURER_EVENTS = {E.ENROLL, E.REQUEST_SLOT, E.RESCHEDULE, E.CANCEL}
BOOKING_EVENTS = {
    E.COLLECT: ShipmentLeg.TO_MANUFACTURER,
    E.RELEASE: ShipmentLeg.TO_SITE,
    E.RELEASE_OOS: ShipmentLeg.TO_SITE,
}


@dataclass(frozen=True)
class Notice:
    destination: str
    kind: str
    payload: dict[str, Any]


def partner_view(order: TherapyOrder) -> dict[str, Any]:
    """The minimum-necessary view of an order: no name, DOB or MRN ever."""
    return {
        "order_id": order.id,
        "coi": order.coi,
        "pseudonym": order.patient_pseudonym,
        "therapy": order.therapy.code,
        "site": order.site.id,
        "state": order.state.value,
        "status": order.status,
        "version": order.version,
        "external_ids": order.external_ids.model_dump(mode="json"),
    }


class Lane(BaseModel):
    """One route a courier serves: from a site, for a therapy (or any therapy)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    site: str
    therapy: str | None = None
    pickup_window_hours: float = Field(default=4, gt=0)


class _CourierLanes(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    lanes: list[Lane] = Field(default_factory=list)


@functools.lru_cache(maxsize=8)
def _lanes(folder: Path) -> tuple[tuple[str, Lane], ...]:
    found: list[tuple[str, Lane]] = []
    for path in sorted((folder / "couriers").glob("*.yaml")):
        data, _ = load_yaml(path)
        courier = _CourierLanes.model_validate(data)
        found.extend((courier.id, lane) for lane in courier.lanes)
    return tuple(found)


def courier_for(order: TherapyOrder, folder: Path | None = None) -> tuple[str, Lane] | None:
    """The courier for the order's site and therapy; a therapy-specific lane wins."""
    lanes = [
        (courier, lane)
        for courier, lane in _lanes(folder or mappings_dir())
        if lane.site == order.site.id and lane.therapy in (None, order.therapy.code)
    ]
    lanes.sort(key=lambda item: item[1].therapy is None)
    return lanes[0] if lanes else None


def has_erp(site_id: str, folder: Path | None = None) -> bool:
    return ((folder or mappings_dir()) / "erp" / f"{site_id}.yaml").is_file()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def manufacturer_payload(order: TherapyOrder, event_name: str) -> dict[str, Any]:
    return {
        **partner_view(order),
        "event": event_name,
        "manufacturer": order.therapy.manufacturer,
        "product_code": order.therapy.product_code,
        "apheresis_at": _iso(order.milestones.apheresis_at),
        "slot_start": _iso(order.milestones.slot_start),
        "planned_infusion_at": _iso(order.milestones.planned_infusion_at),
        "reason": order.cancellation_reason,
    }


def booking_payload(
    order: TherapyOrder, leg: ShipmentLeg, lane: Lane, ready_at: datetime
) -> dict[str, Any]:
    cycle = order.collection_cycle
    units = [
        unit.unit_id
        for unit in order.units
        if unit.collection_cycle == cycle
        and (unit.kind.value == "apheresis") == (leg is ShipmentLeg.TO_MANUFACTURER)
    ]
    origin, destination = (
        (order.site.id, order.therapy.manufacturer)
        if leg is ShipmentLeg.TO_MANUFACTURER
        else (order.therapy.manufacturer, order.site.id)
    )
    return {
        **partner_view(order),
        "event": "book",
        "leg": leg.value,
        "origin": origin,
        "destination": destination,
        "pickup_from": ready_at.isoformat(),
        "pickup_until": (ready_at + timedelta(hours=lane.pickup_window_hours)).isoformat(),
        "units": units,
        "collection_cycle": cycle,
    }


def erp_payload(order: TherapyOrder, event_name: str) -> dict[str, Any]:
    return {
        **partner_view(order),
        "event": event_name,
        "manufacturer": order.therapy.manufacturer,
        "product_code": order.therapy.product_code,
        "placer_number": order.external_ids.placer_number,
        "slot_start": _iso(order.milestones.slot_start),
        "received_at": _iso(order.milestones.received_at_site_at),
        "units": [unit.unit_id for unit in order.final_products()],
    }


def notices_for(
    outcome: Outcome, event_name: str, event: LifecycleEvent | None = None
) -> list[Notice]:
    order = outcome.order
    payload = {
        **partner_view(order),
        "event": event_name,
        "outcome": outcome.kind,
        "previous_state": outcome.previous_state.value,
    }
    notices = [Notice(f"hospital:{order.site.id}", "order.status", payload)]
    applied = set(outcome.applied) if outcome.kind == "applied" else set()
    source = event.source if event is not None else None
    at = (event.at if event is not None else None) or order.updated_at

    # A manufacturer hears of an order at its enrolment: an order cancelled before then is
    # none of its business, and has no CoI to address the cancellation by.
    told = order.milestones.enrolled_at is not None
    for step in sorted(applied & MANUFACTURER_EVENTS):
        if source is not Source.MANUFACTURER and (told or step is not E.CANCEL):
            notices.append(
                Notice(
                    f"manufacturer:{order.therapy.manufacturer}",
                    f"manufacturer.{step.value}",
                    manufacturer_payload(order, step.value),
                )
            )
    for step, leg in BOOKING_EVENTS.items():
        route = courier_for(order) if step in applied else None
        if route is not None:
            courier, lane = route
            notices.append(
                Notice(f"courier:{courier}", "courier.book", booking_payload(order, leg, lane, at))
            )
    # The steps first: has_erp asks the file system, and most changes are neither step.
    if (E.CONFIRM_SLOT in applied or E.RECEIVE_AT_SITE in applied) and has_erp(order.site.id):
        if E.CONFIRM_SLOT in applied:
            notices.append(
                Notice(
                    f"erp:{order.site.id}",
                    "erp.create_purchase_order",
                    erp_payload(order, E.CONFIRM_SLOT.value),
                )
            )
        if E.RECEIVE_AT_SITE in applied:
            notices.append(
                Notice(
                    f"erp:{order.site.id}",
                    "erp.goods_receipt",
                    erp_payload(order, E.RECEIVE_AT_SITE.value),
                )
            )
    if (
        event is not None
        and E.PLACE_HOLD in applied
        and event.details.hold_reason is HoldReason.TEMPERATURE_EXCURSION
    ):
        notices.append(
            Notice(
                f"hospital:{order.site.id}",
                "alert.excursion",
                {**payload, "hold_id": event.details.hold_id, "detail": event.details.reason},
            )
        )
    return notices
