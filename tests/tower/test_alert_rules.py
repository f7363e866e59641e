"""The pure alert and time-in-state functions: one situation each, one expected alert."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.domain.alerts import (
    ALERTING_STATES,
    AlertKind,
    DeadLetter,
    Severity,
    dead_letter_alert,
    order_alerts,
    sort_alerts,
    time_in_state,
)
from gateway.domain.lifecycle import apply
from gateway.domain.model import (
    Excursion,
    Hold,
    HoldReason,
    Shipment,
    ShipmentLeg,
    TemperatureReading,
    Unit,
    UnitKind,
)
from gateway.domain.states import OrderState
from tests.domain.helpers import APHERESIS, T0, event, fresh_order, rules, script_to

EXA = rules("exa-cel")  # thaw-to-infusion 90 min, reschedule notice 48 h, max -150 °C


def kinds(alerts: list) -> list[str]:  # type: ignore[type-arg]
    return [alert.kind.value for alert in alerts]


def with_expiry(order):  # type: ignore[no-untyped-def]
    """The helper's final product has no expiry; most tests want a complete product."""
    order = order.model_copy(deep=True)
    for unit in order.units:
        unit.expires_at = T0 + timedelta(days=200)
    return order


# --- temperature excursions -----------------------------------------------------------------


def test_an_excursion_hold_is_a_critical_temperature_alert() -> None:
    order = with_expiry(script_to(fresh_order(), "SHIPPED_TO_SITE"))
    order.shipments[-1].tracking_number = "TRK-9"
    order.shipments[-1].logger_id = "LOG-1"
    order.holds.append(
        Hold(reason=HoldReason.TEMPERATURE_EXCURSION, detail="logger -95 °C", placed_at=T0)
    )
    alerts = order_alerts(order, EXA, APHERESIS + timedelta(days=21, hours=2))
    assert kinds(alerts) == ["temperature_excursion"]
    assert alerts[0].severity is Severity.CRITICAL
    assert alerts[0].key == f"temperature_excursion:{order.id}:{order.holds[0].id}"
    assert alerts[0].detail == "logger -95 °C"


def test_an_excursion_without_a_hold_asks_for_one_and_a_released_hold_clears_it() -> None:
    order = with_expiry(script_to(fresh_order(), "SHIPPED_TO_SITE"))
    shipment = order.shipments[-1]
    shipment.tracking_number, shipment.logger_id = "TRK-9", "LOG-1"
    shipment.excursions.append(
        Excursion(started_at=T0, ended_at=None, worst_celsius=-120, limit_celsius=-150)
    )
    now = APHERESIS + timedelta(days=21, hours=2)
    alerts = order_alerts(order, EXA, now)
    assert kinds(alerts) == ["temperature_excursion"]
    assert "no hold placed" in alerts[0].detail and "still out of range" in alerts[0].detail
    order.holds.append(
        Hold(
            reason=HoldReason.TEMPERATURE_EXCURSION,
            placed_at=T0,
            released_at=T0 + timedelta(hours=1),
            resolution="manufacturer accepted the product",
        )
    )
    assert order_alerts(order, EXA, now) == []


def test_other_holds_are_alerts_too_and_missing_data_holds_say_so() -> None:
    order = script_to(fresh_order(), "MANUFACTURING")
    order.holds.append(Hold(reason=HoldReason.IDENTITY_MISMATCH, placed_at=T0))
    order.holds.append(Hold(reason=HoldReason.MISSING_DATA, placed_at=T0))
    alerts = order_alerts(order, EXA, APHERESIS + timedelta(days=3))
    assert sorted(kinds(alerts)) == ["hold", "missing_data"]
    assert {alert.severity for alert in alerts} == {Severity.CRITICAL}


# --- slot at risk ---------------------------------------------------------------------------


def test_confirmed_slot_with_apheresis_inside_the_notice_period_but_not_booked() -> None:
    order = script_to(fresh_order(), "SLOT_CONFIRMED")  # apheresis at T0 + 10 days
    assert order_alerts(order, EXA, APHERESIS - timedelta(hours=49)) == []
    alerts = order_alerts(order, EXA, APHERESIS - timedelta(hours=47))
    assert kinds(alerts) == ["slot_at_risk"]
    assert alerts[0].severity is Severity.CRITICAL
    assert alerts[0].due == APHERESIS
    assert "48 h reschedule notice" in alerts[0].detail
    booked = apply(order, event("schedule_apheresis"), EXA, T0).order
    assert order_alerts(booked, EXA, APHERESIS - timedelta(hours=47)) == []


def test_slot_request_left_unanswered_warns_after_three_days() -> None:
    order = script_to(fresh_order(), "SLOT_REQUESTED")
    assert order_alerts(order, EXA, T0 + timedelta(hours=71)) == []
    alerts = order_alerts(order, EXA, T0 + timedelta(hours=73))
    assert kinds(alerts) == ["slot_at_risk"]
    assert alerts[0].severity is Severity.WARNING
    assert alerts[0].title == "Slot request unanswered"


def test_planned_infusion_near_without_a_slot() -> None:
    order = script_to(fresh_order(), "ENROLLED")
    order.milestones.planned_infusion_at = T0 + timedelta(days=30)
    alerts = order_alerts(order, EXA, T0)
    assert kinds(alerts) == ["slot_at_risk"]
    assert alerts[0].due == T0 + timedelta(days=30)
    order.milestones.planned_infusion_at = T0 + timedelta(days=60)
    assert order_alerts(order, EXA, T0) == []


# --- thaw window ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minutes_after_thaw", "expected"),
    [(30, None), (50, Severity.WARNING), (70, Severity.CRITICAL), (95, Severity.CRITICAL)],
)
def test_thaw_window_warns_at_half_time_and_turns_critical_in_the_last_quarter(
    minutes_after_thaw: int, expected: Severity | None
) -> None:
    order = with_expiry(script_to(fresh_order(), "THAWED"))
    thawed = order.milestones.thawed_at
    assert thawed is not None
    alerts = order_alerts(order, EXA, thawed + timedelta(minutes=minutes_after_thaw))
    if expected is None:
        assert alerts == []
        return
    assert kinds(alerts) == ["thaw_window"]
    assert alerts[0].severity is expected
    assert alerts[0].due == thawed + timedelta(minutes=90)
    if minutes_after_thaw > 90:
        assert alerts[0].title == "Thaw window expired"


def test_an_infused_order_raises_nothing() -> None:
    order = with_expiry(script_to(fresh_order(), "THAWED"))
    order.holds.append(Hold(reason=HoldReason.QUALITY, placed_at=T0))
    infused = order.model_copy(update={"state": OrderState.INFUSED})
    assert order_alerts(infused, EXA, T0 + timedelta(days=400)) == []


# --- missing data -----------------------------------------------------------------------------


def test_shipment_without_tracking_number_then_without_logger() -> None:
    order = with_expiry(script_to(fresh_order(), "SHIPPED_TO_MFG"))
    now = APHERESIS + timedelta(hours=5)
    assert [a.key.rsplit(":", 2)[-2:] for a in order_alerts(order, EXA, now)] == [
        ["tracking", "to_manufacturer"]
    ]
    order.shipments[-1].tracking_number = "TRK-1"
    assert [a.title for a in order_alerts(order, EXA, now)] == [
        "Missing data: no temperature logger on the shipment"
    ]
    order.shipments[-1].readings.append(TemperatureReading(at=now, celsius=-190))
    assert order_alerts(order, EXA, now) == []


def test_released_product_without_expiry_or_without_a_unit_is_missing_data() -> None:
    order = script_to(fresh_order(), "RELEASED")  # release stamps the shelf-life expiry
    now = APHERESIS + timedelta(days=20)
    assert order_alerts(order, EXA, now) == []
    order.final_products()[0].expires_at = None
    assert [a.key.split(":")[-1] for a in order_alerts(order, EXA, now)] == ["expiry"]
    order.units = [unit for unit in order.units if unit.kind is UnitKind.APHERESIS]
    assert [a.key.split(":")[-1] for a in order_alerts(order, EXA, now)] == ["final_product"]


# --- keys, dead letters, ordering -------------------------------------------------------------


def test_keys_are_stable_across_derivations_and_new_situations_get_new_keys() -> None:
    order = with_expiry(script_to(fresh_order(), "THAWED"))
    thawed = order.milestones.thawed_at
    assert thawed is not None
    first = order_alerts(order, EXA, thawed + timedelta(minutes=50))
    later = order_alerts(order, EXA, thawed + timedelta(minutes=80))
    assert first[0].key == later[0].key
    rethawed = order.model_copy(deep=True)
    rethawed.milestones.thawed_at = thawed + timedelta(hours=5)
    again = order_alerts(rethawed, EXA, thawed + timedelta(hours=5, minutes=50))
    assert again[0].key != first[0].key


def test_dead_letter_alert() -> None:
    item = DeadLetter(7, "helix-bio", "order.status", "ord-1", 8, "HTTP 503\nretry later", T0)
    alert = dead_letter_alert(item)
    assert alert.key == "dead_letter:7"
    assert alert.kind is AlertKind.DEAD_LETTER and alert.severity is Severity.CRITICAL
    assert alert.detail == "order.status gave up after 8 attempt(s): HTTP 503"
    orphan = dead_letter_alert(DeadLetter(8, "erp", "po", None, 3, None, T0))
    assert orphan.severity is Severity.WARNING
    assert orphan.detail.endswith(": no error recorded")


@pytest.mark.parametrize("blank", ["", "  ", "\n", " \r\n\t "])
def test_dead_letter_alert_with_a_blank_error(blank: str) -> None:
    """Found by fuzzing: a dead letter whose last error was only whitespace made the tower's
    order page and alert list answer HTTP 500."""
    alert = dead_letter_alert(DeadLetter(9, "helix-bio", "order.status", "ord-1", 2, blank, T0))
    assert alert.detail == "order.status gave up after 2 attempt(s): no error recorded"


def test_critical_first_then_the_nearest_deadline() -> None:
    late = dead_letter_alert(DeadLetter(1, "x", "k", None, 1, None, T0))
    soon = dead_letter_alert(DeadLetter(2, "x", "k", "o", 1, None, T0 + timedelta(hours=1)))
    order = script_to(fresh_order(), "SLOT_CONFIRMED")
    slot = order_alerts(order, EXA, APHERESIS - timedelta(hours=1))[0]
    assert [a.key for a in sort_alerts([late, soon, slot])] == [slot.key, soon.key, late.key]


# --- the store's pre-filter and the rules agree -----------------------------------------------


NON_ALERTING_WALKS = [
    "REFERRED",
    "APHERESIS_SCHEDULED",
    "COLLECTED",
    "RECEIVED_AT_MFG",
    "MANUFACTURING",
]


@pytest.mark.parametrize("state", NON_ALERTING_WALKS)
def test_states_outside_alerting_states_raise_nothing_without_holds_or_excursions(
    state: str,
) -> None:
    """The tower only reads orders in ALERTING_STATES (or on hold, or with an excursion)."""
    assert OrderState(state) not in ALERTING_STATES
    order = script_to(fresh_order(), state)
    order.milestones.planned_infusion_at = T0 + timedelta(days=1)
    for hours in (0, 24 * 9, 24 * 10 - 1, 24 * 40, 24 * 400):
        assert order_alerts(order, EXA, T0 + timedelta(hours=hours)) == []


def test_failed_manufacturing_raises_nothing_by_itself() -> None:
    order = script_to(fresh_order(), "MANUFACTURING")
    failed = apply(order, event("fail_manufacturing", reason="no expansion"), EXA, APHERESIS).order
    assert OrderState.MFG_FAILED not in ALERTING_STATES
    assert order_alerts(failed, EXA, APHERESIS + timedelta(days=30)) == []


# --- time in state ----------------------------------------------------------------------------


def test_time_in_state_measures_each_span_against_its_target() -> None:
    order = with_expiry(script_to(fresh_order(), "THAWED"))
    thawed = order.milestones.thawed_at
    assert thawed is not None
    spans = time_in_state(order, EXA, thawed + timedelta(minutes=120))
    by_state = {span.state: span for span in spans}
    assert [span.state for span in spans][-1] is OrderState.THAWED
    thaw = by_state[OrderState.THAWED]
    assert thaw.current and thaw.target == timedelta(minutes=90) and thaw.over_target
    assert thaw.target_source == "therapy"
    manufacturing = by_state[OrderState.MANUFACTURING]  # day 2 → day 20 of a 21-day target
    assert manufacturing.duration == timedelta(days=18) and not manufacturing.over_target
    slot = by_state[OrderState.SLOT_CONFIRMED]
    assert slot.target_source == "schedule" and slot.target == APHERESIS - T0
    stored = by_state[OrderState.STORED]
    assert stored.target == T0 + timedelta(days=200) - stored.entered_at


def test_a_finished_order_ends_in_a_zero_length_span() -> None:
    order = with_expiry(script_to(fresh_order(), "THAWED"))
    thawed = order.milestones.thawed_at
    assert thawed is not None
    infused = apply(
        order,
        event("infuse", at=thawed + timedelta(minutes=40)),
        EXA.model_copy(update={"require_bedside_verification": False}),
        thawed + timedelta(minutes=40),
    ).order
    spans = time_in_state(infused, EXA, thawed + timedelta(days=3))
    assert spans[-1].state is OrderState.INFUSED and spans[-1].duration == timedelta(0)
    assert spans[-2].duration == timedelta(minutes=40) and not spans[-2].over_target


def test_shipment_leg_labels_in_excursion_alerts() -> None:
    order = script_to(fresh_order(), "SHIPPED_TO_MFG")
    order.shipments[-1] = Shipment(
        leg=ShipmentLeg.TO_MANUFACTURER,
        tracking_number="TRK-2",
        logger_id="L",
        excursions=[Excursion(started_at=T0, ended_at=T0, worst_celsius=-140, limit_celsius=-150)],
    )
    order.units.append(Unit(unit_id="A999126000009", kind=UnitKind.APHERESIS))
    alerts = order_alerts(order, EXA, APHERESIS + timedelta(hours=6))
    assert alerts[0].title == "Temperature excursion in transit to manufacturer"


def _scanned(order, code: str | None, green: bool = False):  # type: ignore[no-untyped-def]
    from gateway.domain.model import ScanVerdict
    from gateway.domain.verification import record

    verdict = ScanVerdict(
        at=T0 + timedelta(days=30),
        checkpoint="bedside",
        user="rn.a",
        unit_id="A999126000052",
        green=green,
        reason_code=code,
        reason=None if green else "Unit A999126000052 belongs to a different order. STOP.",
    )
    return record(order, verdict, where="ward 7")


@pytest.mark.parametrize("state", ["MANUFACTURING", "THAWED"])
def test_a_wrong_bag_at_the_scanner_is_a_critical_identity_alarm_in_any_live_state(
    state: str,
) -> None:
    """A bag brought to the wrong patient is a near miss for the tower, not only a red
    screen, even while the patient's own product is still being made."""
    order = script_to(fresh_order(), state)
    flagged = _scanned(order, "wrong_order")
    [alarm] = [a for a in order_alerts(flagged, EXA, T0) if a.kind.value == "identity_alarm"]
    assert alarm.severity.value == "critical" and alarm.order_id == order.id
    assert "bedside" in alarm.title
    assert "different order" in alarm.detail and "rn.a" in alarm.detail
    assert "A999126000052" in alarm.detail
    # Neither a green scan nor a red that is not about identity raises one.
    for benign in (_scanned(order, None, green=True), _scanned(order, "wrong_step")):
        assert "identity_alarm" not in kinds(order_alerts(benign, EXA, T0))
