"""The state machine, one rule at a time."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.domain.errors import TransitionRefused
from gateway.domain.lifecycle import apply
from gateway.domain.model import Source, Unit, UnitKind
from gateway.domain.states import JOURNEY, ON_HOLD, OrderState
from tests.domain.helpers import APHERESIS, T0, bedside_checks, event, fresh_order, rules, script_to


def refused(order, ev, code="exa-cel", now=T0) -> TransitionRefused:  # type: ignore[no-untyped-def]
    with pytest.raises(TransitionRefused) as caught:
        apply(order, ev, rules(code), now)
    return caught.value


def test_happy_path_reaches_infused_with_versions_and_custody() -> None:
    order = script_to(fresh_order(), "THAWED")
    thawed = order.milestones.thawed_at
    assert thawed is not None
    order = bedside_checks(order, thawed + timedelta(minutes=5))
    done = apply(order, event("infuse", at=thawed + timedelta(minutes=20)), rules(), T0).order
    assert done.state is OrderState.INFUSED
    assert done.version == 15  # created at 1, then 14 applied events
    actions = [c.action.value for c in done.custody_events]
    assert actions == [
        "collection",
        "hand_off",
        "receipt",
        "hand_off",
        "receipt",
        "storage",
        "thaw",
        "infusion",
    ]


def test_every_journey_state_is_reachable() -> None:
    seen = set()
    for target in JOURNEY[:-1]:
        seen.add(script_to(fresh_order(), target.value).state)
    assert seen == set(JOURNEY[:-1])


def test_illegal_transition_names_the_allowed_states() -> None:
    error = refused(fresh_order(), event("thaw"))
    assert error.code == "illegal_transition"
    assert error.details["allowed_states"] == ["STORED"]
    assert error.details["state"] == "REFERRED"


def test_terminal_states_accept_nothing() -> None:
    cancelled = apply(fresh_order(), event("cancel", reason="patient declined"), rules(), T0)
    assert cancelled.order.state is OrderState.CANCELLED
    for kind in ("enroll", "release_hold", "place_hold", "cancel"):
        assert refused(cancelled.order, event(kind, hold_reason="other")).code == "order_terminal"


def test_enrol_requires_a_coi() -> None:
    assert refused(fresh_order(), event("enroll")).code == "missing_data"


@pytest.mark.parametrize(
    ("code", "state", "allowed"),
    [
        ("exa-cel", "COLLECTED", True),  # exa-cel: site may cancel until SHIPPED_TO_MFG
        ("exa-cel", "SHIPPED_TO_MFG", False),
        ("sam-cel", "SHIPPED_TO_MFG", True),  # sam-cel: until MANUFACTURING
        ("sam-cel", "RECEIVED_AT_MFG", True),
        ("sam-cel", "MANUFACTURING", False),
    ],
)
def test_cancellation_cutoff_state_differs_by_therapy(code: str, state: str, allowed: bool) -> None:
    order = script_to(fresh_order(code), state, code)
    cancel = event("cancel", reason="clinical decision")
    if allowed:
        assert apply(order, cancel, rules(code), T0).order.state is OrderState.CANCELLED
    else:
        error = refused(order, cancel, code)
        assert error.code == "cancellation_cutoff_passed"
        # the manufacturer can still cancel after the cut-off
        by_mfg = event("cancel", source=Source.MANUFACTURER, reason="cannot manufacture")
        assert apply(order, by_mfg, rules(code), T0).order.state is OrderState.CANCELLED


@pytest.mark.parametrize(("code", "hours"), [("exa-cel", 72), ("sam-cel", 24)])
def test_cancellation_cutoff_hours_before_apheresis(code: str, hours: int) -> None:
    order = script_to(fresh_order(code), "APHERESIS_SCHEDULED", code)
    just_before = APHERESIS - timedelta(hours=hours, minutes=1)
    just_inside = APHERESIS - timedelta(hours=hours - 1)
    assert apply(order, event("cancel"), rules(code), just_before).order.state.value == "CANCELLED"
    assert refused(order, event("cancel"), code, just_inside).code == "cancellation_cutoff_passed"


@pytest.mark.parametrize(("code", "limit"), [("exa-cel", 90), ("sam-cel", 30)])
def test_thaw_to_infusion_limit_differs_by_therapy(code: str, limit: int) -> None:
    order = script_to(fresh_order(code), "THAWED", code)
    thawed = order.milestones.thawed_at
    assert thawed is not None
    order = bedside_checks(order, thawed + timedelta(minutes=1))
    late = event("infuse", at=thawed + timedelta(minutes=limit + 1))
    error = refused(order, late, code)
    assert error.code == "thaw_window_exceeded"
    on_time = event("infuse", at=thawed + timedelta(minutes=limit))
    assert apply(order, on_time, rules(code), T0).order.state is OrderState.INFUSED


def test_infusion_needs_two_people_or_wristband() -> None:
    order = script_to(fresh_order(), "THAWED")
    thawed = order.milestones.thawed_at
    assert thawed is not None
    at = thawed + timedelta(minutes=10)
    assert refused(order, event("infuse", at=at)).code == "bedside_verification_missing"
    one = bedside_checks(order, at, users=("rn.a",))
    assert refused(one, event("infuse", at=at)).code == "bedside_verification_missing"
    same_twice = bedside_checks(order, at, users=("rn.a", "rn.a"))
    assert refused(same_twice, event("infuse", at=at)).code == "bedside_verification_missing"
    red = bedside_checks(order, at, green=False)
    assert refused(red, event("infuse", at=at)).code == "bedside_verification_missing"
    two = bedside_checks(order, at)
    assert apply(two, event("infuse", at=at), rules(), T0).order.state is OrderState.INFUSED


def test_expired_product_cannot_be_thawed() -> None:
    order = script_to(fresh_order(), "STORED")
    unit = order.final_products()[0]
    assert unit.expires_at is not None  # shelf life applied at release
    error = refused(order, event("thaw", at=unit.expires_at + timedelta(minutes=1)))
    assert error.code == "product_expired"
    assert error.details["unit_id"] == unit.unit_id


def test_hold_blocks_thaw_until_released_by_a_person() -> None:
    order = script_to(fresh_order(), "STORED")
    held = apply(
        order,
        event(
            "place_hold",
            hold_reason="temperature_excursion",
            reason="logger above -150 °C for 14 min",
        ),
        rules(),
        T0,
    ).order
    assert held.status == ON_HOLD and held.state is OrderState.STORED
    error = refused(held, event("thaw"))
    assert error.code == "order_on_hold"
    assert "temperature_excursion" in error.message
    assert refused(held, event("release_hold", person=None)).code == "missing_data"
    released = apply(
        held, event("release_hold", reason="QA reviewed: product acceptable"), rules(), T0
    ).order
    assert released.status == "STORED"
    assert released.holds[0].released_by == "nurse.one"
    assert (
        apply(released, event("thaw", at=T0 + timedelta(days=40)), rules(), T0).order.state
        is OrderState.THAWED
    )


def test_hold_does_not_block_physical_receipt() -> None:
    order = script_to(fresh_order(), "SHIPPED_TO_SITE")
    held = apply(order, event("place_hold", hold_reason="temperature_excursion"), rules(), T0).order
    received = apply(held, event("receive_at_site"), rules(), T0).order
    assert received.state is OrderState.RECEIVED_AT_SITE and received.on_hold


def test_oos_release_ships_only_after_physician_acceptance() -> None:
    order = script_to(fresh_order(), "MANUFACTURING")
    oos = apply(
        order,
        event("release_oos", unit=Unit(unit_id="A999126000009", kind=UnitKind.FINAL_PRODUCT)),
        rules(),
        T0,
    ).order
    assert oos.state is OrderState.RELEASED_OOS
    assert refused(oos, event("ship_to_site")).code == "oos_not_accepted"
    accepted = apply(oos, event("accept_oos", person="dr.house"), rules(), T0).order
    assert accepted.oos_accepted_by == "dr.house"
    assert (
        apply(accepted, event("ship_to_site"), rules(), T0).order.state
        is OrderState.SHIPPED_TO_SITE
    )


def test_manufacturing_failure_then_recollection_keeps_the_coi() -> None:
    order = script_to(fresh_order(), "MANUFACTURING")
    failed = apply(
        order, event("fail_manufacturing", source=Source.MANUFACTURER), rules(), T0
    ).order
    assert failed.state is OrderState.MFG_FAILED
    again = apply(
        failed, event("recollect", apheresis_at=APHERESIS + timedelta(days=30)), rules(), T0
    ).order
    assert again.state is OrderState.APHERESIS_SCHEDULED
    assert again.coi == order.coi and again.collection_cycle == 2
    assert again.milestones.collected_at is None
    # exa-cel allows two collections: a second failure cannot recollect again
    walked = again
    for kind in (
        "collect",
        "ship_to_mfg",
        "receive_at_mfg",
        "start_manufacturing",
        "fail_manufacturing",
    ):
        walked = apply(walked, event(kind), rules(), T0).order
    assert (
        refused(walked, event("recollect", apheresis_at=APHERESIS)).code
        == "collection_limit_reached"
    )
    assert len(walked.shipments) == 2  # one to-manufacturer shipment per collection


def test_late_milestone_is_recorded_without_moving_state() -> None:
    order = script_to(fresh_order(), "COLLECTED")
    # the manufacturer's receipt arrives before the courier's pick-up: the pick-up is implied
    received = apply(order, event("receive_at_mfg", at=APHERESIS + timedelta(days=1)), rules(), T0)
    assert received.order.state is OrderState.RECEIVED_AT_MFG
    assert received.applied == ("ship_to_mfg", "receive_at_mfg")
    # then the courier's pick-up arrives late
    late = apply(
        received.order, event("ship_to_mfg", at=APHERESIS + timedelta(hours=3)), rules(), T0
    )
    assert late.kind == "late" and late.order.state is OrderState.RECEIVED_AT_MFG
    assert late.order.milestones.shipped_to_mfg_at is not None
    # and the same receipt again is a duplicate: nothing changes, not even the version
    duplicate = apply(late.order, event("receive_at_mfg"), rules(), T0)
    assert duplicate.kind == "duplicate" and duplicate.order.version == late.order.version


def test_conflicting_manufacturing_outcome_is_refused_not_absorbed() -> None:
    order = script_to(fresh_order(), "RELEASED")
    assert refused(order, event("fail_manufacturing")).code == "illegal_transition"


def test_a_release_repeated_with_another_unit_is_refused_as_a_possible_mix_up() -> None:
    order = script_to(fresh_order(), "RELEASED")
    same = Unit(unit_id="A999126000002", kind=UnitKind.FINAL_PRODUCT)
    assert apply(order, event("release", unit=same), rules(), T0).kind == "duplicate"
    other = Unit(unit_id="A999126950399", kind=UnitKind.FINAL_PRODUCT)
    refusal = refused(order, event("release", unit=other))
    assert refusal.code == "unit_mismatch"
    assert "A999126950399" in refusal.message and "A999126000002" in refusal.message
    # A repeat that names no unit is still a plain copy.
    assert apply(order, event("release"), rules(), T0).kind == "duplicate"


def test_reschedule_rules() -> None:
    order = script_to(fresh_order("sam-cel"), "APHERESIS_SCHEDULED", "sam-cel")
    new_date = APHERESIS + timedelta(days=3)
    moved = apply(order, event("reschedule", apheresis_at=new_date), rules("sam-cel"), T0).order
    assert moved.milestones.apheresis_at == new_date and moved.reschedule_count == 1
    # sam-cel allows one reschedule only
    assert (
        refused(moved, event("reschedule", apheresis_at=new_date), "sam-cel").code
        == "reschedule_limit_reached"
    )
    # too far from the original date
    far = event("reschedule", apheresis_at=APHERESIS + timedelta(days=8))
    assert refused(order, far, "sam-cel").code == "reschedule_outside_window"
    # too little notice (72 h for sam-cel)
    late_notice = APHERESIS - timedelta(hours=71)
    assert (
        refused(order, event("reschedule", apheresis_at=new_date), "sam-cel", late_notice).code
        == "reschedule_notice_too_short"
    )


def test_apply_never_mutates_its_input() -> None:
    order = script_to(fresh_order(), "STORED")
    snapshot = order.model_dump()
    apply(order, event("place_hold", hold_reason="other"), rules(), T0)
    with pytest.raises(TransitionRefused):
        apply(order, event("infuse"), rules(), T0)
    assert order.model_dump() == snapshot


def test_an_event_about_a_known_shipment_adds_to_it_and_erases_nothing() -> None:
    from gateway.domain.model import (
        Excursion,
        Shipment,
        ShipmentLeg,
        ShipmentMilestone,
        TemperatureReading,
    )

    shipped_at = APHERESIS + timedelta(days=21)
    tracked = Shipment(
        leg=ShipmentLeg.TO_SITE,
        courier="polar-express",
        tracking_number="PX-1",
        logger_id="LG-9",
        milestones=[ShipmentMilestone(code="picked_up", at=shipped_at)],
        readings=[
            TemperatureReading(at=shipped_at, celsius=-150.0),
            TemperatureReading(at=shipped_at + timedelta(hours=1), celsius=-120.0),
        ],
        excursions=[
            Excursion(
                started_at=shipped_at + timedelta(hours=1), worst_celsius=-120.0, limit_celsius=-135
            )
        ],
    )
    order = script_to(fresh_order(), "RELEASED")
    order = apply(order, event("ship_to_site", at=shipped_at, shipment=tracked), rules(), T0).order
    delivered = ShipmentMilestone(code="delivered", at=shipped_at + timedelta(days=1))
    report = Shipment(
        leg=ShipmentLeg.TO_SITE,
        tracking_number="PX-1",
        milestones=[delivered],
        readings=[TemperatureReading(at=shipped_at + timedelta(hours=2), celsius=-160.0)],
        excursions=[],
    )
    received = apply(
        order, event("receive_at_site", at=delivered.at, shipment=report), rules(), T0
    ).order
    shipment = received.shipment(ShipmentLeg.TO_SITE)
    assert shipment is not None
    assert [s.leg for s in received.shipments].count(ShipmentLeg.TO_SITE) == 1
    assert (shipment.courier, shipment.logger_id) == ("polar-express", "LG-9")
    assert [m.code for m in shipment.milestones] == ["picked_up", "delivered"]
    assert [r.celsius for r in shipment.readings] == [-150.0, -120.0, -160.0]
    assert shipment.excursions == tracked.excursions
    assert received.external_ids.courier_shipment_ids == ["PX-1"]


def test_a_tracking_update_names_the_identity_it_changed() -> None:
    from gateway.domain.model import ShipmentLeg
    from gateway.domain.tracking import TrackingUpdate, record_tracking

    order = script_to(fresh_order(), "SHIPPED_TO_SITE")
    first = TrackingUpdate(
        leg=ShipmentLeg.TO_SITE, courier="polar-express", tracking_number="PX-7", logger_id="LG-1"
    )
    amended = record_tracking(first)(order, rules(), T0)
    assert amended is not None
    assert amended.summary["changed"] == {
        "courier": [None, "polar-express"],
        "tracking_number": [None, "PX-7"],
        "logger_id": [None, "LG-1"],
    }
    swapped = TrackingUpdate(tracking_number="PX-7", logger_id="LG-2")
    again = record_tracking(swapped)(amended.order, rules(), T0)
    assert again is not None
    assert again.summary["changed"] == {"logger_id": ["LG-1", "LG-2"]}
    assert record_tracking(swapped)(again.order, rules(), T0) is None


def test_a_release_repeated_with_its_unit_records_the_unit_it_first_lacked() -> None:
    order = script_to(fresh_order(), "MANUFACTURING")
    released = apply(order, event("release"), rules(), T0).order
    assert released.final_products() == []
    unit = Unit(unit_id="A999126000002", kind=UnitKind.FINAL_PRODUCT)
    # The repeat comes five days later: the shelf life still runs from the release.
    later = T0 + timedelta(days=5)
    repeat = apply(released, event("release", unit=unit, at=later), rules(), later)
    assert repeat.kind == "late" and repeat.order.state is OrderState.RELEASED
    assert [u.unit_id for u in repeat.order.final_products()] == ["A999126000002"]
    released_at = released.milestones.released_at
    assert released_at is not None and released_at < later
    shelf_life = timedelta(days=rules().shelf_life_days)
    assert repeat.order.final_products()[0].expires_at == released_at + shelf_life
    assert repeat.order.version == released.version + 1
    # Once recorded, the same repeat again is a plain copy.
    assert apply(repeat.order, event("release", unit=unit), rules(), T0).kind == "duplicate"


def test_a_collection_repeated_with_its_bag_records_the_bag() -> None:
    order = script_to(fresh_order(), "APHERESIS_SCHEDULED")
    collected = apply(order, event("collect"), rules(), T0).order
    assert collected.units == []
    bag = Unit(unit_id="A999126000010", kind=UnitKind.APHERESIS)
    repeat = apply(collected, event("collect", unit=bag), rules(), T0)
    assert repeat.kind == "late" and repeat.order.state is OrderState.COLLECTED
    assert [(u.unit_id, u.collection_cycle) for u in repeat.order.units] == [
        ("A999126000010", collected.collection_cycle)
    ]


def test_a_late_warm_reading_before_a_known_excursion_is_not_a_second_excursion() -> None:
    """The earlier reading moves the excursion's start; it is the same excursion, already
    held and in the custody log, not a new one to hold again."""
    from gateway.domain.model import ShipmentLeg, TemperatureReading
    from gateway.domain.tracking import TrackingUpdate, record_tracking

    order = script_to(fresh_order(), "SHIPPED_TO_SITE")
    at = T0 + timedelta(days=30)

    def readings(*pairs: tuple[int, float]) -> TrackingUpdate:
        return TrackingUpdate(
            leg=ShipmentLeg.TO_SITE,
            tracking_number="PX-8",
            readings=[
                TemperatureReading(at=at + timedelta(minutes=m), celsius=c) for m, c in pairs
            ],
        )

    first = record_tracking(readings((20, -120.0), (40, -120.0), (60, -170.0)))(order, rules(), at)
    assert first is not None and len(first.new_excursions) == 1
    late = record_tracking(readings((10, -120.0)))(first.order, rules(), at)
    assert late is not None
    [shipment] = [s for s in late.order.shipments if s.tracking_number == "PX-8"]
    assert shipment.excursions[0].started_at == at + timedelta(minutes=10)
    assert late.new_excursions == ()
    red = [e for e in late.order.custody_events if e.verification == "red"]
    assert len(red) == 1
