"""Facts about an order that are not lifecycle steps: courier tracking, logger readings and
partner references (a manufacturer's order id, an ERP purchase order number).

They still change the order, so each is an :class:`Amendment`: a new version of the order
plus a summary the service writes to the audit log. Like :mod:`lifecycle`, everything here
is pure. Temperature excursions are judged here, against the therapy's storage rules,
because "warmer than the limit for longer than allowed" is a rule, not an adapter detail.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.domain.errors import TransitionRefused
from gateway.domain.model import (
    SHIPMENT_IDENTITY,
    Actor,
    CustodyAction,
    CustodyEvent,
    Excursion,
    Shipment,
    ShipmentLeg,
    ShipmentMilestone,
    TemperatureReading,
    TherapyOrder,
)
from gateway.domain.rules import StorageRules, TherapyRules


@dataclass(frozen=True)
class Amendment:
    order: TherapyOrder
    summary: dict[str, Any]
    shipment_id: str | None = None
    new_milestones: tuple[ShipmentMilestone, ...] = ()
    new_excursions: tuple[Excursion, ...] = field(default_factory=tuple)


#: order, its therapy's rules, now → the amended order, or None when nothing changes.
Change = Callable[[TherapyOrder, TherapyRules, datetime], Amendment | None]


class TrackingUpdate(BaseModel):
    """What a courier told us about one shipment: any of identity, milestones, readings."""

    model_config = ConfigDict(extra="forbid")

    leg: ShipmentLeg | None = None
    courier: str | None = None
    tracking_number: str | None = None
    shipper_serial: str | None = None
    logger_id: str | None = None
    milestones: list[ShipmentMilestone] = Field(default_factory=list)
    readings: list[TemperatureReading] = Field(default_factory=list)


def find_excursions(readings: list[TemperatureReading], storage: StorageRules) -> list[Excursion]:
    """Runs of readings warmer than ``max_celsius`` that lasted longer than allowed.

    A run starts at its first warm reading and ends at the next reading back in range;
    a run still open at the last reading is measured to that reading and has no end.
    """
    allowed = timedelta(minutes=storage.excursion_minutes)
    found: list[Excursion] = []
    run: list[TemperatureReading] = []

    def close(ended_at: datetime | None) -> None:
        if not run:
            return
        measured_to = ended_at or run[-1].at
        if measured_to - run[0].at > allowed:
            found.append(
                Excursion(
                    started_at=run[0].at,
                    ended_at=ended_at,
                    worst_celsius=max(reading.celsius for reading in run),
                    limit_celsius=storage.max_celsius,
                )
            )
        run.clear()

    for reading in sorted(readings, key=lambda reading: reading.at):
        if reading.celsius > storage.max_celsius:
            run.append(reading)
        else:
            close(reading.at)
    close(None)
    return found


def _target_shipment(order: TherapyOrder, update: TrackingUpdate) -> Shipment:
    if update.tracking_number:
        for shipment in order.shipments:
            if shipment.tracking_number == update.tracking_number:
                return shipment
    if update.leg is None:
        raise TransitionRefused(
            "unknown_shipment",
            f"No shipment with tracking number {update.tracking_number!r} on this order.",
            tracking_number=update.tracking_number,
        )
    latest = order.shipment(update.leg)
    if latest is not None and not (
        latest.tracking_number and update.tracking_number
    ):  # an untracked shipment on the leg is this one, first told its number now
        return latest
    shipment = Shipment(leg=update.leg)
    order.shipments.append(shipment)
    return shipment


def record_tracking(update: TrackingUpdate) -> Change:
    """Merge a courier update into the order's shipment; judge excursions on the result.

    Milestones and readings are kept once each (a courier resends them freely) and in
    time order whatever order they arrived in. A new excursion adds a red custody record;
    placing the hold is a lifecycle event the caller applies next.
    """

    def change(order: TherapyOrder, rules: TherapyRules, now: datetime) -> Amendment | None:
        working = order.model_copy(deep=True)
        shipment = _target_shipment(working, update)
        before = shipment.model_copy(deep=True)
        added, fresh = shipment.merge(update)
        excursions = find_excursions(shipment.readings, rules.storage)
        # A late reading may move a known excursion's start earlier, or join two: it is
        # the same excursion (its hold and custody record exist), not a new one.
        new_excursions = [e for e in excursions if not _overlaps_any(e, before.excursions)]
        shipment.excursions = excursions
        if shipment == before:
            return None
        for excursion in new_excursions:
            working.custody_events.append(
                CustodyEvent(
                    at=excursion.started_at,
                    action=CustodyAction.VERIFICATION,
                    who=Actor(organisation=shipment.courier, role="data logger"),
                    where=f"shipment {shipment.tracking_number or shipment.id}",
                    verification="red",
                    reason=excursion_text(excursion, rules),
                )
            )
        if shipment.tracking_number and shipment.tracking_number not in (
            working.external_ids.courier_shipment_ids
        ):
            working.external_ids.courier_shipment_ids.append(shipment.tracking_number)
        working.version = order.version + 1
        working.updated_at = max(now, order.updated_at)
        return Amendment(
            working,
            {
                "shipment": shipment.id,
                "leg": shipment.leg.value,
                "tracking_number": shipment.tracking_number,
                # A new logger or dry shipper changes whose temperature record this is.
                "changed": {
                    name: [getattr(before, name), getattr(shipment, name)]
                    for name in SHIPMENT_IDENTITY
                    if getattr(before, name) != getattr(shipment, name)
                },
                "milestones": [m.model_dump(mode="json") for m in added],
                "readings": len(fresh),
                "new_excursions": [e.model_dump(mode="json") for e in new_excursions],
            },
            shipment.id,
            tuple(added),
            tuple(new_excursions),
        )

    return change


def _overlaps_any(excursion: Excursion, known: list[Excursion]) -> bool:
    """Whether ``excursion`` shares any time with one of ``known`` (an open one has no end)."""
    for other in known:
        starts_before_other_ends = other.ended_at is None or excursion.started_at <= other.ended_at
        other_starts_before_it_ends = (
            excursion.ended_at is None or other.started_at <= excursion.ended_at
        )
        if starts_before_other_ends and other_starts_before_it_ends:
            return True
    return False


def excursion_text(excursion: Excursion, rules: TherapyRules) -> str:
    until = excursion.ended_at.isoformat() if excursion.ended_at else "still warm"
    return (
        f"Temperature excursion: warmer than {rules.storage.max_celsius:g} °C from "
        f"{excursion.started_at.isoformat()} ({until}), worst {excursion.worst_celsius:g} °C; "
        f"{rules.name} allows {rules.storage.excursion_minutes:g} minutes."
    )


Reference = Literal["manufacturer_order_id", "erp_purchase_order"]


def link_reference(kind: Reference, value: str) -> Change:
    """Record a partner's identifier for the order. A different one already on file is a
    conflict to resolve by hand, never overwritten silently."""

    def change(order: TherapyOrder, rules: TherapyRules, now: datetime) -> Amendment | None:
        current = getattr(order.external_ids, kind)
        if current == value:
            return None
        if current is not None:
            raise TransitionRefused(
                "reference_conflict",
                f"The order already has {kind} {current!r}; refusing to replace it with {value!r}.",
                field=kind,
                current=current,
            )
        working = order.model_copy(deep=True)
        setattr(working.external_ids, kind, value)
        working.version = order.version + 1
        working.updated_at = max(now, order.updated_at)
        return Amendment(working, {kind: value})

    return change
