"""Chain-of-identity checks at each checkpoint: one scenario, one scan, one verdict."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.domain.lifecycle import LifecycleEvent
from gateway.domain.model import Actor
from gateway.domain.states import EventType
from gateway.domain.verification import Checkpoint
from gateway.service.orders import OrderService
from gateway.service.scanning import ScanRequest, ScanStation
from gateway.store.audit import entries


def scan(
    station: ScanStation, checkpoint: str, text: str, user: str = "pharm.one", **extra
) -> object:  # type: ignore[no-untyped-def]
    return station.scan(
        ScanRequest(checkpoint=Checkpoint(checkpoint), user=user, unit_scan=text, **extra)
    )


def test_green_storage_scan_is_recorded_in_custody_and_audit(
    service: OrderService, station: ScanStation, prepare
) -> None:  # type: ignore[no-untyped-def]
    prepared = prepare("RECEIVED_AT_SITE")
    result = scan(station, "storage", "]d1" + prepared.bag_text + "\r\n", location="LN2 F-2")
    assert result.green, result.reason
    order = service.get(prepared.order_id)
    custody = order.custody_events[-1]
    assert custody.action.value == "verification" and custody.verification == "green"
    assert custody.who.person == "pharm.one" and custody.where == "LN2 F-2"
    with service.engine.connect() as conn:
        last = list(entries(conn, prepared.order_id))[-1]
    assert last.action == "scan.verdict" and last.payload["green"] is True


def test_wrong_patient_bag_at_bedside_is_red(
    service: OrderService, station: ScanStation, prepare
) -> None:  # type: ignore[no-untyped-def]
    alpha = prepare("THAWED", patient=0)
    bravo = prepare("THAWED", patient=1)
    # Bravo's wristband, Alpha's bag
    result = station.scan(
        ScanRequest(
            checkpoint=Checkpoint.BEDSIDE,
            user="rn.a",
            unit_scan=alpha.bag_text,
            wristband_scan=bravo.wristband_text,
        )
    )
    assert not result.green
    assert result.reason_code == "wrong_order"
    assert "STOP" in result.reason
    # recorded against the patient at the bedside
    bravo_order = service.get(bravo.order_id)
    assert bravo_order.custody_events[-1].verification == "red"
    assert not bravo_order.scans[-1].green


def test_bedside_needs_two_people_or_the_wristband(
    service: OrderService, station: ScanStation, prepare
) -> None:  # type: ignore[no-untyped-def]
    prepared = prepare("THAWED")
    first = scan(station, "bedside", prepared.bag_text, user="rn.a", order_id=prepared.order_id)
    assert first.green and not first.bedside_complete
    same = scan(station, "bedside", prepared.bag_text, user="rn.a", order_id=prepared.order_id)
    assert same.green and not same.bedside_complete  # the same person twice is one check
    second = scan(station, "bedside", prepared.bag_text, user="rn.b", order_id=prepared.order_id)
    assert second.bedside_complete
    infused = service.apply_event(
        prepared.order_id,
        LifecycleEvent(type=EventType.INFUSE, actor=Actor(person="rn.a")),
        actor="rn.a",
    )
    assert infused.order.state.value == "INFUSED"
    again = scan(station, "bedside", prepared.bag_text, user="rn.c", order_id=prepared.order_id)
    assert not again.green and again.reason_code == "already_infused"


def test_wristband_plus_one_person_completes_bedside(station: ScanStation, prepare) -> None:  # type: ignore[no-untyped-def]
    prepared = prepare("THAWED")
    result = station.scan(
        ScanRequest(
            checkpoint=Checkpoint.BEDSIDE,
            user="rn.a",
            unit_scan=prepared.bag_text,
            wristband_scan="]d1" + prepared.wristband_text,
        )
    )
    assert result.green and result.bedside_complete


def test_expired_product_at_thaw_is_red(station: ScanStation, prepare, clock) -> None:  # type: ignore[no-untyped-def]
    prepared = prepare("STORED", expires_in=timedelta(days=2))
    clock.advance(days=3)
    result = scan(station, "thaw", prepared.bag_text)
    assert not result.green and result.reason_code == "expired"


def test_thawed_too_long_is_red(station: ScanStation, prepare, clock) -> None:  # type: ignore[no-untyped-def]
    prepared = prepare("THAWED")
    clock.advance(minutes=91)  # exa-cel: 90 minutes from thaw to infusion
    result = scan(station, "bedside", prepared.bag_text, order_id=prepared.order_id)
    assert not result.green and result.reason_code == "thawed_too_long"


def test_held_order_is_red(service: OrderService, station: ScanStation, prepare) -> None:  # type: ignore[no-untyped-def]
    prepared = prepare("STORED")
    service.apply_event(
        prepared.order_id,
        LifecycleEvent(
            type=EventType.PLACE_HOLD,
            details={"hold_reason": "temperature_excursion", "reason": "logger LG-1 above -150 °C"},
        ),
        actor="qa",
    )
    result = scan(station, "thaw", prepared.bag_text)
    assert not result.green and result.reason_code == "on_hold"
    assert "temperature_excursion" in result.reason


def test_cancelled_order_is_red(service: OrderService, station: ScanStation, prepare) -> None:  # type: ignore[no-untyped-def]
    prepared = prepare("STORED")
    service.apply_event(
        prepared.order_id,
        LifecycleEvent(type=EventType.CANCEL, source="manufacturer", details={"reason": "recall"}),
        actor="m",
    )
    result = scan(station, "thaw", prepared.bag_text)
    assert not result.green and result.reason_code == "order_cancelled"


def test_unknown_unit_and_unreadable_scans_are_red(station: ScanStation, prepare) -> None:  # type: ignore[no-untyped-def]
    prepared = prepare("STORED")
    other = prepared.bag_text.replace(prepared.unit_id[7:], "999999", 1)
    unknown = scan(station, "thaw", other)
    assert not unknown.green
    assert unknown.reason_code in ("unknown_unit", "unreadable_scan")
    garbage = scan(station, "thaw", "hello world")
    assert not garbage.green and garbage.reason_code == "unreadable_scan"
    truncated = scan(station, "thaw", prepared.bag_text[:20])
    assert not truncated.green and truncated.reason


def test_wrong_step_is_red(station: ScanStation, prepare) -> None:  # type: ignore[no-untyped-def]
    prepared = prepare("STORED")
    result = scan(station, "bedside", prepared.bag_text, order_id=prepared.order_id)
    assert not result.green and result.reason_code == "wrong_step"


def test_a_scan_never_turns_green_for_a_tampered_coi(station: ScanStation, prepare) -> None:  # type: ignore[no-untyped-def]
    alpha = prepare("STORED", patient=0)
    bravo = prepare("STORED", patient=1)
    # a relabelled bag: Alpha's unit number carrying Bravo's CoI
    forged = alpha.bag_text.replace(alpha.coi, bravo.coi)
    result = scan(station, "thaw", forged)
    assert not result.green
    assert result.reason_code in ("coi_mismatch", "unreadable_scan")


def test_a_bag_scanned_as_the_wristband_is_red(station: ScanStation, prepare) -> None:  # type: ignore[no-untyped-def]
    prepared = prepare("THAWED")
    result = scan(
        station, "bedside", prepared.bag_text, user="rn.a", wristband_scan=prepared.bag_text
    )
    assert not result.green and not result.bedside_complete
    assert result.reason_code == "wristband_is_a_bag"
    assert "wristband" in result.reason


def test_two_labels_read_as_one_scan_are_red(station: ScanStation, prepare) -> None:  # type: ignore[no-untyped-def]
    alpha = prepare("STORED", patient=0)
    bravo = prepare("STORED", patient=1)
    both = scan(station, "thaw", alpha.bag_text + bravo.bag_text)
    assert not both.green and both.reason_code == "unreadable_scan"
    assert "two different labels" in both.reason
    assert scan(station, "thaw", alpha.bag_text + alpha.bag_text).green  # one label, twice
    # A structure after the compound message is more than the label announced.
    stray_coi = scan(station, "thaw", alpha.bag_text + "&/" + bravo.coi)
    assert not stray_coi.green and stray_coi.reason_code == "unreadable_scan"
    assert "announces" in stray_coi.reason
    assert scan(station, "thaw", alpha.bag_text).green  # each alone is fine


def test_the_verdict_is_judged_on_the_order_as_it_is_when_recorded(
    service: OrderService, station: ScanStation, prepare, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """A hold placed after the scan found the order, before the verdict is saved."""
    prepared = prepare("STORED")
    save = station._save

    def hold_meanwhile(order, request, decide, notes):  # type: ignore[no-untyped-def]
        service.apply_event(
            order.id,
            LifecycleEvent(
                type=EventType.PLACE_HOLD,
                details={"hold_reason": "other", "reason": "QA query on the batch record"},
            ),
            actor="qa",
        )
        return save(order, request, decide, notes)

    monkeypatch.setattr(station, "_save", hold_meanwhile)
    result = scan(station, "thaw", prepared.bag_text)
    assert not result.green and result.reason_code == "on_hold"
    assert service.get(prepared.order_id).scans[-1].green is False


def test_an_upload_that_is_not_a_picture_is_red_with_a_reason(station: ScanStation) -> None:
    result = station.scan(
        ScanRequest(checkpoint=Checkpoint.RECEIPT, user="pharm.one", unit_image=b"%PDF-1.7 ...")
    )
    assert not result.green and result.reason_code == "unreadable_scan"
    assert "not a picture" in result.reason


def test_a_red_bedside_scan_starts_the_two_person_check_over(station: ScanStation, prepare) -> None:  # type: ignore[no-untyped-def]
    alpha = prepare("THAWED", patient=0)
    bravo = prepare("THAWED", patient=1)

    def bedside(user: str, bag: str) -> object:
        return scan(station, "bedside", bag, user=user, order_id=alpha.order_id)

    first = bedside("rn.a", alpha.bag_text)
    assert first.green and not first.bedside_complete
    wrong = bedside("rn.b", bravo.bag_text)
    assert not wrong.green and wrong.reason_code == "wrong_order"
    after_alarm = bedside("rn.b", alpha.bag_text)
    assert after_alarm.green and not after_alarm.bedside_complete
    second = bedside("rn.c", alpha.bag_text)
    assert second.green and second.bedside_complete


def test_a_wristband_that_cannot_be_checked_is_red(service: OrderService, prepare) -> None:  # type: ignore[no-untyped-def]
    from gateway.domain.verification import ScannedWristband, verify
    from gateway.service.scanning import scanned_unit
    from labeling.scan import read_scan

    prepared = prepare("THAWED")
    order = service.get(prepared.order_id)
    unit, _expiry = scanned_unit(read_scan(prepared.bag_text))
    rules = service.rules.get(order.therapy.code)
    assert rules is not None

    def bedside(wristband: ScannedWristband, expected: str | None) -> object:
        return verify(
            order,
            Checkpoint.BEDSIDE,
            unit,
            rules,
            at=service.clock(),
            user="rn.a",
            wristband=wristband,
            expected_patient_id=expected,
        )

    unchecked = bedside(ScannedWristband(patient_id="P12345"), None)
    assert not unchecked.green and unchecked.reason_code == "unverifiable_wristband"
    assert bedside(ScannedWristband(patient_id="P12345"), "P12345").green
    assert bedside(ScannedWristband(coi=order.coi), None).green


def test_a_red_for_the_wrong_patients_bag_names_the_bag_in_the_custody_log(
    service: OrderService, station: ScanStation, prepare
) -> None:  # type: ignore[no-untyped-def]
    """The custody event, the audit entry and the station's red screen name the bag that was
    refused, so the bag to quarantine is on record, not only inside the reason's text."""
    alpha = prepare("THAWED", patient=0)
    bravo = prepare("THAWED", patient=1)
    result = scan(
        station, "bedside", alpha.bag_text, user="rn.a", wristband_scan=bravo.wristband_text
    )
    assert not result.green and result.reason_code == "wrong_order"
    assert result.unit_id == alpha.unit_id
    order = service.get(bravo.order_id)
    assert order.scans[-1].unit_id == alpha.unit_id
    assert order.custody_events[-1].unit_id == alpha.unit_id
    with service.engine.connect() as conn:
        last = list(entries(conn, bravo.order_id))[-1]
    assert last.payload["unit_id"] == alpha.unit_id
    # A bag vein2vein has never heard of is named in the audit entry too.
    stranger = alpha.bag_text.replace(alpha.unit_id[7:], "999999", 1)
    unknown = scan(station, "thaw", stranger)
    assert unknown.reason_code == "unknown_unit" and unknown.unit_id == alpha.unit_id[:7] + "999999"
    with service.engine.connect() as conn:
        unattached = [e for e in entries(conn, None) if e.action == "scan.verdict"][-1]
    assert unattached.payload["unit_id"] == unknown.unit_id


@pytest.mark.parametrize(
    ("bag", "code"), [("]d2garbage", "unreadable_scan"), ("=<S0001100", "no_unit_id")]
)
def test_an_unusable_bag_scan_beside_a_wristband_is_in_that_patients_custody_log(
    service: OrderService, station: ScanStation, prepare, bag: str, code: str
) -> None:  # type: ignore[no-untyped-def]
    """At the bedside the wristband names the patient: a bag scan that cannot be used (not
    read, or no unit number in it) is that patient's red, not an orphan audit entry."""
    prepared = prepare("THAWED")
    before = len(service.get(prepared.order_id).custody_events)
    result = station.scan(
        ScanRequest(
            checkpoint=Checkpoint.BEDSIDE,
            user="rn.a",
            unit_scan=bag,
            wristband_scan=prepared.wristband_text,
        )
    )
    assert not result.green and result.reason_code == code
    assert result.order_id == prepared.order_id
    order = service.get(prepared.order_id)
    assert len(order.custody_events) == before + 1
    assert order.custody_events[-1].verification == "red"
    assert order.scans[-1].reason_code == result.reason_code


def _keyed(unit_id: str, check: str | None = None) -> str:
    from labeling.checkchar import check_character

    typed = check or check_character(unit_id)
    return f"{unit_id[:5]} {unit_id[5:7]} {unit_id[7:]} {typed}"


def test_a_unit_number_typed_from_a_damaged_label_is_checked_against_the_order(
    service: OrderService, station: ScanStation, prepare
) -> None:  # type: ignore[no-untyped-def]
    prepared = prepare("RECEIVED_AT_SITE")
    result = scan(station, "receipt", _keyed(prepared.unit_id), order_id=prepared.order_id)
    assert result.green and result.unit_id == prepared.unit_id
    # The green does not claim the label was read, and the audit keeps how it was entered.
    assert "typed by hand" in result.reason and "All checks passed" not in result.reason
    with service.engine.connect() as conn:
        entry = list(entries(conn, prepared.order_id))[-1]
    assert entry.action == "scan.verdict"
    assert any("typed by hand" in note for note in entry.payload["read"])


def test_a_mistyped_unit_number_is_red_and_never_matches_another_unit(
    station: ScanStation, prepare
) -> None:  # type: ignore[no-untyped-def]
    prepared = prepare("RECEIVED_AT_SITE")
    other = prepare("RECEIVED_AT_SITE", patient=1)
    from labeling.checkchar import check_character

    wrong = "0" if check_character(prepared.unit_id) != "0" else "1"
    mistyped = scan(station, "receipt", _keyed(prepared.unit_id, wrong), order_id=prepared.order_id)
    assert not mistyped.green and mistyped.reason_code == "unreadable_scan"
    assert "mistyped" in mistyped.reason
    # Another patient's unit number, correctly typed, is still the wrong bag.
    wrong_bag = scan(station, "receipt", _keyed(other.unit_id), order_id=prepared.order_id)
    assert not wrong_bag.green and wrong_bag.reason_code == "wrong_order"


def test_an_unusable_bag_scan_beside_a_bag_label_scanned_as_the_wristband_names_no_patient(
    service: OrderService, station: ScanStation, prepare
) -> None:  # type: ignore[no-untyped-def]
    """A bag label in the wristband field carries its order's CoI, but it is not the patient
    at hand: the red for an unreadable bag scan is not put in that order's log."""
    prepared = prepare("THAWED")
    before = len(service.get(prepared.order_id).custody_events)
    result = station.scan(
        ScanRequest(
            checkpoint=Checkpoint.BEDSIDE,
            user="rn.a",
            unit_scan="]d2garbage",
            wristband_scan=prepared.bag_text,
        )
    )
    assert not result.green and result.order_id is None
    assert len(service.get(prepared.order_id).custody_events) == before


def test_a_bag_brought_to_the_wrong_patient_is_in_its_own_orders_custody_log_too(
    service: OrderService, station: ScanStation, prepare
) -> None:  # type: ignore[no-untyped-def]
    """The bag's own order must show where its product was seen: it is out of its chain of
    custody until someone finds it."""
    from gateway.domain.alerts import order_alerts

    alpha = prepare("THAWED", patient=0)
    bravo = prepare("THAWED", patient=1)
    result = station.scan(
        ScanRequest(
            checkpoint=Checkpoint.BEDSIDE,
            user="rn.a",
            unit_scan=alpha.bag_text,
            wristband_scan=bravo.wristband_text,
            location="ward 7 bay 2",
        )
    )
    assert result.reason_code == "wrong_order" and result.order_id == bravo.order_id
    owner = service.get(alpha.order_id)
    seen = owner.custody_events[-1]
    assert seen.verification == "red" and seen.unit_id == alpha.unit_id
    assert seen.where == "ward 7 bay 2" and seen.who.person == "rn.a"
    assert owner.scans[-1].reason_code == "misdirected_unit"
    # Where the bag was seen, not whose bedside: this order's partners read its log.
    reason = owner.scans[-1].reason or ""
    assert "bedside" in reason and bravo.coi not in reason
    kinds = {alert.kind.value for alert in order_alerts(owner, None, service.clock())}
    assert "identity_alarm" in kinds


def test_the_two_halves_of_a_wrong_bag_are_recorded_together_or_not_at_all(
    service: OrderService, station: ScanStation, prepare, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """If the bag's own order cannot be written, the patient at hand's red is not committed
    alone either: the station gets an error (a red of its own), and a rescan records both."""
    alpha = prepare("THAWED", patient=0)
    bravo = prepare("THAWED", patient=1)
    versions = {o: service.get(o).version for o in (alpha.order_id, bravo.order_id)}
    real = ScanStation._apply

    def failing(uow, current, verdict, request, notes):  # type: ignore[no-untyped-def]
        if current.id == alpha.order_id:
            raise RuntimeError("disk full")
        return real(uow, current, verdict, request, notes)

    monkeypatch.setattr(ScanStation, "_apply", staticmethod(failing))
    request = ScanRequest(
        checkpoint=Checkpoint.BEDSIDE,
        user="rn.a",
        unit_scan=alpha.bag_text,
        wristband_scan=bravo.wristband_text,
    )
    with pytest.raises(RuntimeError):
        station.scan(request)
    assert {o: service.get(o).version for o in versions} == versions
    monkeypatch.setattr(ScanStation, "_apply", staticmethod(real))
    assert station.scan(request).reason_code == "wrong_order"
    assert service.get(alpha.order_id).scans[-1].reason_code == "misdirected_unit"
