"""The order's state machine: which event may move which state, under which guard.

:func:`apply` is pure. It takes an order, an event, the therapy's rules and the current
time, and returns a new order (the input is never mutated) or raises
:class:`TransitionRefused` with a stable code. Partner messages arrive out of order all
the time, so the machine distinguishes three cases deliberately:

* *late*: a milestone that is already behind the order (a courier "picked up" after the
  manufacturer's "received") is recorded on the timeline without moving the state;
* *duplicate*: the same milestone again changes nothing;
* *early*: a physical receipt reported before its shipment implies the shipment, because
  the bag cannot have arrived without leaving. Decisions are never implied.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from gateway.domain.errors import TransitionRefused
from gateway.domain.model import (
    Actor,
    CustodyAction,
    CustodyEvent,
    Hold,
    HoldReason,
    ScanVerdict,
    Shipment,
    ShipmentLeg,
    Source,
    TherapyOrder,
    Unit,
    UnitKind,
)
from gateway.domain.rules import TherapyRules
from gateway.domain.states import TERMINAL_STATES, EventType, OrderState, journey_rank

S = OrderState
E = EventType


class EventDetails(BaseModel):
    """Optional data an event may carry; which fields an event needs is checked by its guard."""

    model_config = ConfigDict(extra="forbid")

    coi: str | None = None
    manufacturer_order_id: str | None = None
    slot_start: AwareDatetime | None = None
    apheresis_at: AwareDatetime | None = None
    planned_infusion_at: AwareDatetime | None = None
    unit: Unit | None = None
    unit_id: str | None = None
    shipment: Shipment | None = None
    hold_id: str | None = None
    hold_reason: HoldReason | None = None
    reason: str | None = None
    location: str | None = None


class LifecycleEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: EventType
    at: AwareDatetime | None = Field(default=None, description="When it happened; defaults to now")
    source: Source = Source.HOSPITAL
    actor: Actor = Field(default_factory=Actor)
    details: EventDetails = Field(default_factory=EventDetails)


@dataclass(frozen=True)
class Transition:
    sources: frozenset[OrderState]
    target: OrderState | None  # None: the state does not change
    milestone: str | None = None  # Milestones field stamped with the event time
    blocked_by_hold: bool = False
    implies: EventType | None = None  # the event an early arrival stands in for


def _t(
    sources: set[OrderState],
    target: OrderState | None,
    milestone: str | None = None,
    *,
    blocked_by_hold: bool = False,
    implies: EventType | None = None,
) -> Transition:
    return Transition(frozenset(sources), target, milestone, blocked_by_hold, implies)


_LIVE = frozenset(set(S) - TERMINAL_STATES)

TRANSITIONS: dict[EventType, Transition] = {
    E.ENROLL: _t({S.REFERRED}, S.ENROLLED, "enrolled_at"),
    E.REQUEST_SLOT: _t({S.ENROLLED}, S.SLOT_REQUESTED, "slot_requested_at", blocked_by_hold=True),
    E.CONFIRM_SLOT: _t({S.SLOT_REQUESTED}, S.SLOT_CONFIRMED, "slot_confirmed_at"),
    E.SCHEDULE_APHERESIS: _t({S.SLOT_CONFIRMED}, S.APHERESIS_SCHEDULED),
    E.RESCHEDULE: _t({S.SLOT_CONFIRMED, S.APHERESIS_SCHEDULED}, None),
    E.COLLECT: _t({S.APHERESIS_SCHEDULED}, S.COLLECTED, "collected_at", blocked_by_hold=True),
    E.SHIP_TO_MFG: _t({S.COLLECTED}, S.SHIPPED_TO_MFG, "shipped_to_mfg_at"),
    E.RECEIVE_AT_MFG: _t(
        {S.SHIPPED_TO_MFG}, S.RECEIVED_AT_MFG, "received_at_mfg_at", implies=E.SHIP_TO_MFG
    ),
    E.START_MANUFACTURING: _t(
        {S.RECEIVED_AT_MFG}, S.MANUFACTURING, "manufacturing_started_at", blocked_by_hold=True
    ),
    E.RELEASE: _t({S.MANUFACTURING}, S.RELEASED, "released_at"),
    E.RELEASE_OOS: _t({S.MANUFACTURING}, S.RELEASED_OOS, "released_at"),
    E.ACCEPT_OOS: _t({S.RELEASED_OOS}, None, "oos_accepted_at"),
    E.FAIL_MANUFACTURING: _t({S.RECEIVED_AT_MFG, S.MANUFACTURING}, S.MFG_FAILED, "mfg_failed_at"),
    E.RECOLLECT: _t({S.MFG_FAILED}, S.APHERESIS_SCHEDULED, blocked_by_hold=True),
    E.SHIP_TO_SITE: _t(
        {S.RELEASED, S.RELEASED_OOS}, S.SHIPPED_TO_SITE, "shipped_to_site_at", blocked_by_hold=True
    ),
    E.RECEIVE_AT_SITE: _t(
        {S.SHIPPED_TO_SITE}, S.RECEIVED_AT_SITE, "received_at_site_at", implies=E.SHIP_TO_SITE
    ),
    E.STORE: _t({S.RECEIVED_AT_SITE}, S.STORED, "stored_at"),
    E.THAW: _t({S.STORED}, S.THAWED, "thawed_at", blocked_by_hold=True),
    E.INFUSE: _t({S.THAWED}, S.INFUSED, "infused_at", blocked_by_hold=True),
    E.PLACE_HOLD: _t(set(_LIVE), None),
    E.RELEASE_HOLD: _t(set(_LIVE), None),
    E.CANCEL: _t(set(_LIVE), S.CANCELLED, "cancelled_at"),
}

#: Milestones that, once set, make a repeat of the event a duplicate rather than an error.
_CUSTODY_ACTIONS: dict[EventType, CustodyAction] = {
    E.COLLECT: CustodyAction.COLLECTION,
    E.SHIP_TO_MFG: CustodyAction.HAND_OFF,
    E.RECEIVE_AT_MFG: CustodyAction.RECEIPT,
    E.SHIP_TO_SITE: CustodyAction.HAND_OFF,
    E.RECEIVE_AT_SITE: CustodyAction.RECEIPT,
    E.STORE: CustodyAction.STORAGE,
    E.THAW: CustodyAction.THAW,
    E.INFUSE: CustodyAction.INFUSION,
}

Kind = Literal["applied", "late", "duplicate"]


@dataclass(frozen=True)
class Outcome:
    kind: Kind
    order: TherapyOrder
    previous_state: OrderState
    applied: tuple[EventType, ...] = field(default_factory=tuple)
    note: str | None = None

    @property
    def changed(self) -> bool:
        return self.kind != "duplicate"


def refuse(code: str, message: str, **details: Any) -> TransitionRefused:
    return TransitionRefused(code, message, **details)


def apply(
    order: TherapyOrder, event: LifecycleEvent, rules: TherapyRules, now: datetime
) -> Outcome:
    """Apply one event; return the new order or raise :class:`TransitionRefused`."""
    at = event.at or now
    if order.is_terminal:
        raise refuse(
            "order_terminal",
            f"The order is {order.state.value}; no further events are accepted.",
            state=order.state.value,
            event=event.type.value,
        )
    transition = TRANSITIONS[event.type]
    working = order.model_copy(deep=True)

    if order.state not in transition.sources:
        repeat = _late_or_duplicate(working, event, transition, rules, at, now)
        if repeat is not None:
            return repeat
        implied = transition.implies
        if implied is not None and order.state in TRANSITIONS[implied].sources:
            _step(working, implied, event, TRANSITIONS[implied], rules, at, now)
            implied_milestone = TRANSITIONS[implied].milestone
            if implied_milestone:
                working.milestones.implied.append(implied_milestone)
            if implied in _CUSTODY_ACTIONS and working.custody_events:
                working.custody_events[-1].reason = f"implied by {event.type.value}"
            _step(working, event.type, event, transition, rules, at, now)
            return _finish(
                order,
                working,
                "applied",
                (implied, event.type),
                at,
                note=f"{implied.value} implied by {event.type.value}",
            )
        raise refuse(
            "illegal_transition",
            f"'{event.type.value}' is not allowed while the order is {order.state.value}.",
            state=order.state.value,
            event=event.type.value,
            allowed_states=sorted(state.value for state in transition.sources),
        )

    _step(working, event.type, event, transition, rules, at, now)
    return _finish(order, working, "applied", (event.type,), at)


def _finish(
    before: TherapyOrder,
    after: TherapyOrder,
    kind: Kind,
    applied: tuple[EventType, ...],
    at: datetime,
    note: str | None = None,
) -> Outcome:
    after.version = before.version + 1
    after.updated_at = max(at, before.updated_at)
    return Outcome(kind, after, before.state, applied, note)


def _late_or_duplicate(
    order: TherapyOrder,
    event: LifecycleEvent,
    transition: Transition,
    rules: TherapyRules,
    at: datetime,
    now: datetime,
) -> Outcome | None:
    """Recognise a milestone that is already behind the order."""
    if transition.target is None or transition.milestone is None:
        return None
    if order.state is S.CANCELLED or journey_rank(order.state) < journey_rank(transition.target):
        return None
    if (
        order.state in (S.RELEASED, S.RELEASED_OOS, S.MFG_FAILED)
        and transition.target
        in (
            S.RELEASED,
            S.RELEASED_OOS,
            S.MFG_FAILED,
        )
        and order.state is not transition.target
    ):
        return None  # a different manufacturing outcome is a conflict, not a late copy
    _same_unit_or_refuse(order, event)
    stamped = getattr(order.milestones, transition.milestone)
    before = order.model_copy(deep=True)
    implied = transition.milestone in order.milestones.implied
    # The unit may come only with the repeat (a release sent before the bag was labelled,
    # then again with its unit id): recording it is the point of the repeat, not a copy.
    new_unit = _unrecorded_unit(order, event)
    if new_unit is not None:
        # A release's shelf life runs from the release recorded, not from when the repeat
        # with the unit arrived.
        recorded_at = stamped if stamped is not None and not implied else at
        _UNIT_EFFECTS[event.type](order, event, rules, recorded_at, now)
    if stamped is not None and not implied:
        if new_unit is None:
            return Outcome("duplicate", before, order.state, (), "milestone already recorded")
        note = f"unit {new_unit} recorded from a repeated '{event.type.value}'"
    else:
        if implied:
            order.milestones.implied.remove(transition.milestone)
        setattr(order.milestones, transition.milestone, at)
        _record_custody(order, event, at)
        note = f"late '{event.type.value}': recorded on the timeline, state unchanged"
    return _finish(before, order, "late", (event.type,), at, note=note)


def _unrecorded_unit(order: TherapyOrder, event: LifecycleEvent) -> str | None:
    """The id of a unit a repeated collection or release names and the order lacks."""
    sent = event.details.unit
    if sent is None or event.type not in _UNIT_EFFECTS or order.unit(sent.unit_id) is not None:
        return None
    return sent.unit_id


def _same_unit_or_refuse(order: TherapyOrder, event: LifecycleEvent) -> None:
    """A repeat of a collection or release that names another unit than the one recorded
    is no copy: it may be a mix-up of bags, and must be looked at, not acknowledged."""
    sent = event.details.unit
    if sent is None:
        return
    recorded = [
        unit.unit_id
        for unit in order.units
        if unit.kind is sent.kind and unit.collection_cycle == order.collection_cycle
    ]
    if recorded and sent.unit_id not in recorded:
        raise refuse(
            "unit_mismatch",
            f"'{event.type.value}' names unit {sent.unit_id}, but this order's "
            f"{sent.kind.value.replace('_', ' ')} is {', '.join(recorded)}; check the bag.",
            unit_id=sent.unit_id,
            recorded=recorded,
        )


def _step(
    order: TherapyOrder,
    event_type: EventType,
    event: LifecycleEvent,
    transition: Transition,
    rules: TherapyRules,
    at: datetime,
    now: datetime,
) -> None:
    if transition.blocked_by_hold and order.on_hold:
        hold = order.active_holds[0]
        raise refuse(
            "order_on_hold",
            f"'{event_type.value}' is blocked: the order is on hold ({hold.reason.value}"
            + (f": {hold.detail}" if hold.detail else "")
            + ").",
            hold_id=hold.id,
            hold_reason=hold.reason.value,
        )
    _GUARDS_AND_EFFECTS[event_type](order, event, rules, at, now)
    if transition.milestone is not None:
        setattr(order.milestones, transition.milestone, at)
    if transition.target is not None:
        order.state = transition.target
    _record_custody(order, event, at, event_type)


def _record_custody(
    order: TherapyOrder, event: LifecycleEvent, at: datetime, event_type: EventType | None = None
) -> None:
    action = _CUSTODY_ACTIONS.get(event_type or event.type)
    if action is None:
        return
    order.custody_events.append(
        CustodyEvent(
            at=at,
            action=action,
            who=event.actor,
            where=event.details.location,
            unit_id=event.details.unit_id,
        )
    )


# --- guards and effects, one per event ---------------------------------------------------

Effect = Callable[[TherapyOrder, LifecycleEvent, TherapyRules, datetime, datetime], None]


def _enroll(
    order: TherapyOrder, event: LifecycleEvent, rules: TherapyRules, at: datetime, now: datetime
) -> None:
    coi = event.details.coi or order.coi
    if not coi:
        raise refuse(
            "missing_data", "Enrolment needs a chain-of-identity identifier.", field="details.coi"
        )
    order.coi = coi
    if event.details.manufacturer_order_id:
        order.external_ids.manufacturer_order_id = event.details.manufacturer_order_id


def _nothing(
    order: TherapyOrder, event: LifecycleEvent, rules: TherapyRules, at: datetime, now: datetime
) -> None:
    return None


def _confirm_slot(
    order: TherapyOrder, event: LifecycleEvent, rules: TherapyRules, at: datetime, now: datetime
) -> None:
    if event.details.slot_start is None:
        raise refuse(
            "missing_data", "A slot confirmation needs the slot start.", field="details.slot_start"
        )
    order.milestones.slot_start = event.details.slot_start
    if event.details.apheresis_at is not None:
        order.milestones.apheresis_at = event.details.apheresis_at
        order.milestones.original_apheresis_at = event.details.apheresis_at


def _schedule_apheresis(
    order: TherapyOrder, event: LifecycleEvent, rules: TherapyRules, at: datetime, now: datetime
) -> None:
    when = event.details.apheresis_at or order.milestones.apheresis_at
    if when is None:
        raise refuse(
            "missing_data",
            "Scheduling apheresis needs its date and time.",
            field="details.apheresis_at",
        )
    order.milestones.apheresis_at = when
    if order.milestones.original_apheresis_at is None:
        order.milestones.original_apheresis_at = when


def _reschedule(
    order: TherapyOrder, event: LifecycleEvent, rules: TherapyRules, at: datetime, now: datetime
) -> None:
    new = event.details.apheresis_at
    if new is None:
        raise refuse(
            "missing_data",
            "A reschedule needs the new apheresis date and time.",
            field="details.apheresis_at",
        )
    policy = rules.reschedule
    if order.reschedule_count >= policy.max_reschedules:
        raise refuse(
            "reschedule_limit_reached",
            f"{rules.name} allows {policy.max_reschedules} reschedule(s); "
            f"this order has used them all.",
            max_reschedules=policy.max_reschedules,
        )
    current = order.milestones.apheresis_at
    if current is not None and current - now < timedelta(hours=policy.min_notice_hours):
        raise refuse(
            "reschedule_notice_too_short",
            f"{rules.name} needs {policy.min_notice_hours:g} h notice before the "
            f"scheduled apheresis at {current.isoformat()}.",
            min_notice_hours=policy.min_notice_hours,
        )
    original = order.milestones.original_apheresis_at or current
    if original is not None and abs(new - original) > timedelta(days=policy.max_shift_days):
        raise refuse(
            "reschedule_outside_window",
            f"{rules.name} allows moving apheresis at most {policy.max_shift_days:g} "
            f"days from {original.isoformat()}.",
            max_shift_days=policy.max_shift_days,
        )
    if new < now:
        raise refuse("reschedule_in_past", "The new apheresis date is in the past.")
    order.milestones.apheresis_at = new
    order.reschedule_count += 1


def _collect(
    order: TherapyOrder, event: LifecycleEvent, rules: TherapyRules, at: datetime, now: datetime
) -> None:
    unit = event.details.unit
    if unit is not None:
        if unit.kind is not UnitKind.APHERESIS:
            raise refuse(
                "invalid_unit", "A collection records an apheresis unit.", field="details.unit.kind"
            )
        _add_unit(order, unit.model_copy(update={"collection_cycle": order.collection_cycle}))


def _add_unit(order: TherapyOrder, unit: Unit) -> None:
    existing = order.unit(unit.unit_id)
    if existing is not None:
        if existing.model_dump() != unit.model_dump():
            raise refuse(
                "unit_conflict",
                f"Unit {unit.unit_id} is already on this order with different data.",
                unit_id=unit.unit_id,
            )
        return
    order.units.append(unit)


def _ship(leg: ShipmentLeg) -> Effect:
    def effect(
        order: TherapyOrder, event: LifecycleEvent, rules: TherapyRules, at: datetime, now: datetime
    ) -> None:
        if (
            order.state is S.RELEASED_OOS
            and rules.require_oos_acceptance
            and (order.oos_accepted_by is None)
        ):
            raise refuse(
                "oos_not_accepted",
                "An out-of-specification product ships only after the treating physician "
                "accepts it (event accept_oos).",
            )
        _upsert_shipment(order, leg, event.details.shipment)

    return effect


def _leg_is_older_cycle(order: TherapyOrder, leg: ShipmentLeg) -> bool:
    return leg is ShipmentLeg.TO_MANUFACTURER and order.collection_cycle > sum(
        1 for shipment in order.shipments if shipment.leg is leg
    )


def _upsert_shipment(order: TherapyOrder, leg: ShipmentLeg, shipment: Shipment | None) -> None:
    if shipment is None:
        if order.shipment(leg) is None or _leg_is_older_cycle(order, leg):
            order.shipments.append(Shipment(leg=leg))
        return
    shipment = shipment.model_copy(update={"leg": leg})
    for existing in order.shipments:
        if existing.id == shipment.id or (
            shipment.tracking_number and existing.tracking_number == shipment.tracking_number
        ):
            # A report about a shipment we know adds to it: leaving out the courier, the
            # logger or the readings must not erase them, nor an excursion already found.
            existing.merge(shipment)
            known = {excursion.started_at for excursion in existing.excursions}
            sent = [e for e in shipment.excursions if e.started_at not in known]
            existing.excursions = sorted(
                [*existing.excursions, *sent], key=lambda excursion: excursion.started_at
            )
            shipment = existing
            break
    else:
        order.shipments.append(shipment)
    if shipment.tracking_number and shipment.tracking_number not in (
        order.external_ids.courier_shipment_ids
    ):
        order.external_ids.courier_shipment_ids.append(shipment.tracking_number)


def _release(
    order: TherapyOrder, event: LifecycleEvent, rules: TherapyRules, at: datetime, now: datetime
) -> None:
    unit = event.details.unit
    if unit is None:
        return
    if unit.kind is not UnitKind.FINAL_PRODUCT:
        raise refuse(
            "invalid_unit", "A release records the final product unit.", field="details.unit.kind"
        )
    if unit.expires_at is None:
        unit = unit.model_copy(update={"expires_at": at + timedelta(days=rules.shelf_life_days)})
    _add_unit(order, unit.model_copy(update={"collection_cycle": order.collection_cycle}))


def _accept_oos(
    order: TherapyOrder, event: LifecycleEvent, rules: TherapyRules, at: datetime, now: datetime
) -> None:
    who = event.actor.person
    if not who:
        raise refuse(
            "missing_data",
            "Accepting an out-of-specification product needs the treating physician's name.",
            field="actor.person",
        )
    order.oos_accepted_by = who


def _recollect(
    order: TherapyOrder, event: LifecycleEvent, rules: TherapyRules, at: datetime, now: datetime
) -> None:
    if order.collection_cycle >= rules.max_collections:
        raise refuse(
            "collection_limit_reached",
            f"{rules.name} allows {rules.max_collections} collection(s) per order.",
            max_collections=rules.max_collections,
        )
    if event.details.apheresis_at is None:
        raise refuse(
            "missing_data",
            "A re-collection needs the new apheresis date and time.",
            field="details.apheresis_at",
        )
    order.collection_cycle += 1
    for name in (
        "collected_at",
        "shipped_to_mfg_at",
        "received_at_mfg_at",
        "manufacturing_started_at",
        "mfg_failed_at",
        "released_at",
    ):
        setattr(order.milestones, name, None)
    order.milestones.apheresis_at = event.details.apheresis_at
    order.milestones.original_apheresis_at = event.details.apheresis_at


def _thaw(
    order: TherapyOrder, event: LifecycleEvent, rules: TherapyRules, at: datetime, now: datetime
) -> None:
    products = _products_in_scope(order, event)
    for unit in products:
        if unit.expires_at is not None and unit.expires_at <= at:
            raise refuse(
                "product_expired",
                f"Unit {unit.unit_id} expired at {unit.expires_at.isoformat()}; do not thaw.",
                unit_id=unit.unit_id,
            )


def _infuse(
    order: TherapyOrder, event: LifecycleEvent, rules: TherapyRules, at: datetime, now: datetime
) -> None:
    thawed = order.milestones.thawed_at
    limit = timedelta(minutes=rules.thaw_to_infusion_minutes)
    if thawed is not None and at - thawed > limit:
        raise refuse(
            "thaw_window_exceeded",
            f"Thawed at {thawed.isoformat()}; {rules.name} must be infused within "
            f"{rules.thaw_to_infusion_minutes:g} minutes of thaw.",
            thawed_at=thawed.isoformat(),
            limit_minutes=rules.thaw_to_infusion_minutes,
        )
    if rules.require_bedside_verification and not bedside_verified(order):
        raise refuse(
            "bedside_verification_missing",
            "Infusion needs a green bedside verification by two people (or one person "
            "plus the wristband scan) first.",
        )


def bedside_verified(order: TherapyOrder) -> bool:
    """Two independent green bedside checks of one bag since the last thaw, from two people
    or one person plus the system's wristband scan. A red bedside scan starts the checks
    over: after a wrong-patient alarm, greens from before it prove nothing."""
    since = order.milestones.thawed_at
    checks: list[ScanVerdict] = []
    for scan in order.scans:
        if scan.checkpoint != "bedside" or (since is not None and scan.at < since):
            continue
        if scan.green:
            checks.append(scan)
        else:
            checks.clear()
    by_unit: dict[str | None, list[ScanVerdict]] = {}
    for scan in checks:
        by_unit.setdefault(scan.unit_id, []).append(scan)
    for scans in by_unit.values():
        people = {scan.user for scan in scans}
        wristband = any(scan.method == "wristband" for scan in scans)
        if len(people) >= 2 or (len(people) >= 1 and wristband):
            return True
    return False


def _products_in_scope(order: TherapyOrder, event: LifecycleEvent) -> list[Unit]:
    products = [
        unit for unit in order.final_products() if unit.collection_cycle == order.collection_cycle
    ]
    if event.details.unit_id:
        products = [unit for unit in products if unit.unit_id == event.details.unit_id]
    return products


def _place_hold(
    order: TherapyOrder, event: LifecycleEvent, rules: TherapyRules, at: datetime, now: datetime
) -> None:
    reason = event.details.hold_reason
    if reason is None:
        raise refuse("missing_data", "A hold needs a reason.", field="details.hold_reason")
    hold = Hold(
        reason=reason,
        detail=event.details.reason,
        placed_at=at,
        placed_by=event.actor.person or event.source.value,
    )
    if event.details.hold_id:
        if any(existing.id == event.details.hold_id for existing in order.holds):
            raise refuse("hold_exists", f"Hold {event.details.hold_id} already exists.")
        hold.id = event.details.hold_id
    order.holds.append(hold)


def _release_hold(
    order: TherapyOrder, event: LifecycleEvent, rules: TherapyRules, at: datetime, now: datetime
) -> None:
    active = order.active_holds
    if event.details.hold_id:
        active = [hold for hold in active if hold.id == event.details.hold_id]
    if not active:
        raise refuse(
            "no_active_hold",
            "There is no active hold to release"
            + (f" with id {event.details.hold_id}." if event.details.hold_id else "."),
        )
    if not event.actor.person:
        raise refuse(
            "missing_data",
            "Releasing a hold needs the name of the person deciding.",
            field="actor.person",
        )
    hold = active[0]
    hold.released_at = at
    hold.released_by = event.actor.person
    hold.resolution = event.details.reason


def _cancel(
    order: TherapyOrder, event: LifecycleEvent, rules: TherapyRules, at: datetime, now: datetime
) -> None:
    if event.source is not Source.MANUFACTURER:
        policy = rules.cancellation
        if journey_rank(order.state) >= journey_rank(policy.hospital_cutoff_state):
            raise refuse(
                "cancellation_cutoff_passed",
                f"{rules.name} cannot be cancelled by the site once the order is "
                f"{policy.hospital_cutoff_state.value} or later; ask the manufacturer to cancel.",
                cutoff_state=policy.hospital_cutoff_state.value,
            )
        apheresis = order.milestones.apheresis_at
        if (
            apheresis is not None
            and order.state in (S.SLOT_CONFIRMED, S.APHERESIS_SCHEDULED)
            and apheresis - now < timedelta(hours=policy.hours_before_apheresis)
        ):
            raise refuse(
                "cancellation_cutoff_passed",
                f"{rules.name} cannot be cancelled by the site within "
                f"{policy.hours_before_apheresis:g} h of apheresis ({apheresis.isoformat()}); "
                "ask the manufacturer to cancel.",
                hours_before_apheresis=policy.hours_before_apheresis,
            )
    order.cancellation_reason = event.details.reason


#: The effects that record a unit, run again when a repeat brings a unit the order lacks.
_UNIT_EFFECTS: dict[EventType, Effect] = {E.COLLECT: _collect, E.RELEASE: _release}

_GUARDS_AND_EFFECTS: dict[EventType, Effect] = {
    E.ENROLL: _enroll,
    E.REQUEST_SLOT: _nothing,
    E.CONFIRM_SLOT: _confirm_slot,
    E.SCHEDULE_APHERESIS: _schedule_apheresis,
    E.RESCHEDULE: _reschedule,
    E.COLLECT: _collect,
    E.SHIP_TO_MFG: _ship(ShipmentLeg.TO_MANUFACTURER),
    E.RECEIVE_AT_MFG: _ship(ShipmentLeg.TO_MANUFACTURER),
    E.START_MANUFACTURING: _nothing,
    E.RELEASE: _release,
    E.RELEASE_OOS: _release,
    E.ACCEPT_OOS: _accept_oos,
    E.FAIL_MANUFACTURING: _nothing,
    E.RECOLLECT: _recollect,
    E.SHIP_TO_SITE: _ship(ShipmentLeg.TO_SITE),
    E.RECEIVE_AT_SITE: _ship(ShipmentLeg.TO_SITE),
    E.STORE: _nothing,
    E.THAW: _thaw,
    E.INFUSE: _infuse,
    E.PLACE_HOLD: _place_hold,
    E.RELEASE_HOLD: _release_hold,
    E.CANCEL: _cancel,
}
