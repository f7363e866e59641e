"""Courier data-logger CSV files: local times across a clock change, rows that cannot be
read, and values no probe can show. Scenario files are built inline: one file, one
expected outcome."""

from __future__ import annotations

import json

from tests.partners.test_couriers import book, relay, stamp

__all__ = ["relay"]  # the relay fixture, shared with test_couriers


def logger_file(tracking: str, rows: list[str]) -> bytes:
    header = [f"# shipment: {tracking}", "# logger serial: LG-CR-2231", "Local Time;Probe C"]
    return ("\n".join([*header, *rows]) + "\n").encode()


def test_the_hour_a_clock_turn_repeats_keeps_both_hours_of_readings(
    service, api, clock, relay, walk, new_order, couriers
):  # type: ignore[no-untyped-def]
    """London falls back on 2026-10-25 at 02:00 BST: 01:00-01:59 comes twice. The first
    pass is warm for 45 minutes (Samplecel allows 30 above -120 C), the second is cold.
    Reading both as the first hour put the cold readings on the warm ones' instants and
    erased the excursion."""
    order = book(service, relay, walk, new_order(site="lakeside", therapy="sam-cel"))
    tracking = order.shipments[0].tracking_number
    rows = [
        "2026-10-25 00:45:00;-185.0",
        "2026-10-25 01:00:00;-100.0",  # 00:00 UTC
        "2026-10-25 01:15:00;-100.0",
        "2026-10-25 01:30:00;-100.0",
        "2026-10-25 01:45:00;-100.0",  # 00:45 UTC
        "2026-10-25 01:00:00;-185.0",  # 01:00 UTC, the clocks went back
        "2026-10-25 01:15:00;-185.0",
        "2026-10-25 01:30:00;-185.0",
        "2026-10-25 01:45:00;-185.0",
        "2026-10-25 02:00:00;-185.0",
    ]
    cryo = couriers["cryoroute"]
    reply = cryo.push(
        api, body=logger_file(tracking, rows), content_type="text/csv", timestamp=stamp(clock)
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["readings"] == 10
    shipment = service.get(order.id).shipments[0]
    assert len(shipment.readings) == 10
    [excursion] = shipment.excursions
    assert excursion.started_at.isoformat() == "2026-10-25T00:00:00+00:00"
    assert excursion.ended_at is not None
    assert excursion.ended_at.isoformat() == "2026-10-25T01:00:00+00:00"
    assert service.get(order.id).status == "ON_HOLD"


WARM_SPELL = [
    "2026-11-02 09:00:00;-187.2",
    "2026-11-02 09:15:00;-186.9",
    "2026-11-02 09:30:00;-118.4",
    "2026-11-02 09:45:00;-101.0",
    "2026-11-02 10:00:00;-96.5",
    "2026-11-02 10:10:00;-110.3",
    "2026-11-02 10:15:00;-176.0",
]


def test_a_row_the_logger_could_not_write_is_named_and_the_rest_still_hold_the_order(
    service, api, clock, relay, walk, new_order, couriers
):  # type: ignore[no-untyped-def]
    """A probe fault in the middle of a 45-minute warm spell: the file used to be refused
    whole (422), so the excursion in its other rows never reached the order."""
    order = book(service, relay, walk, new_order(site="lakeside", therapy="sam-cel"))
    tracking = order.shipments[0].tracking_number
    rows = [*WARM_SPELL[:4], "2026-11-02 09:50:00;ERR", "2026-11-02 09:5", *WARM_SPELL[4:]]
    cryo = couriers["cryoroute"]
    reply = cryo.push(
        api, body=logger_file(tracking, rows), content_type="text/csv", timestamp=stamp(clock)
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["readings"] == 7 and len(body["holds"]) == 1
    assert body["rejected"] == 2
    assert body["rejected_rows"][0] == "line 8 Probe C: 'ERR' is not a number."
    assert body["rejected_rows"][1].startswith("line 9 Local Time: '2026-11-02 09:5'")
    after = service.get(order.id)
    assert after.status == "ON_HOLD" and after.shipments[0].excursions[0].worst_celsius == -96.5


def test_a_value_no_probe_can_read_does_not_end_a_warm_spell(
    service, api, clock, relay, walk, new_order, couriers
):  # type: ignore[no-untyped-def]
    """NaN compares as in range: a 'nan' row ended the warm spell at 25 minutes, under
    Samplecel's 30, and the excursion was never found."""
    order = book(service, relay, walk, new_order(site="lakeside", therapy="sam-cel"))
    tracking = order.shipments[0].tracking_number
    rows = [
        *WARM_SPELL[:3],
        "2026-11-02 09:55:00;nan",
        "2026-11-02 09:56:00;-300.0",
        *WARM_SPELL[4:],
    ]
    cryo = couriers["cryoroute"]
    reply = cryo.push(
        api, body=logger_file(tracking, rows), content_type="text/csv", timestamp=stamp(clock)
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["rejected"] == 2 and len(reply.json()["holds"]) == 1
    assert "-300.0 celsius is not a temperature" in reply.json()["rejected_rows"][1]
    assert service.get(order.id).status == "ON_HOLD"


def test_a_file_with_no_readable_row_is_refused_naming_the_first(
    service, api, clock, relay, walk, new_order, couriers
):  # type: ignore[no-untyped-def]
    order = book(service, relay, walk, new_order(site="lakeside", therapy="sam-cel"))
    tracking = order.shipments[0].tracking_number
    rows = ["2026-11-02 09:00:00;ERR", "2026-11-02 09:15:00;"]
    cryo = couriers["cryoroute"]
    reply = cryo.push(
        api, body=logger_file(tracking, rows), content_type="text/csv", timestamp=stamp(clock)
    )
    assert reply.status_code == 422
    problem = reply.json()
    assert "line 4 Probe C: 'ERR' is not a number" in problem["detail"]
    assert problem["rejected_rows"][1] == "line 5 Probe C is missing."
    assert service.get(order.id).shipments[0].readings == []


def test_json_readings_that_are_not_temperatures_are_refused(
    service, api, clock, relay, walk, new_order, couriers
):  # type: ignore[no-untyped-def]
    """Python reads NaN in JSON; it would have been kept as an in-range reading."""
    order = book(service, relay, walk, new_order())
    tracking = order.shipments[0].tracking_number
    polar = couriers["polar-express"]
    document = polar.document(tracking, readings=[(clock.now, -185.0)])
    body = json.dumps(document).replace("-185.0", "NaN").encode()
    reply = polar.push(api, body=body, timestamp=stamp(clock))
    assert reply.status_code == 422, reply.text
    assert reply.json()["field"] == "shipment.logger.readings[0].c"
    assert service.get(order.id).shipments[0].readings == []


def test_every_time_format_a_logger_mapping_may_name_is_read() -> None:
    """iso8601 and epoch counts are accepted in a logger mapping as in the others; reading
    only strptime patterns refused every row of such a file."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from adapters.couriers.inbound import _logger_time

    london = ZoneInfo("Europe/London")
    noon = datetime(2026, 1, 1, 12, tzinfo=UTC)
    for value, fmt in [
        ("2026-01-01T12:00:00Z", "iso8601"),
        ("2026-01-01T12:00:00", "iso8601"),  # no offset: London time, UTC+0 in January
        ("1767268800", "epoch_s"),
        ("1767268800000", "epoch_ms"),
        ("2026-01-01 12:00:00", "%Y-%m-%d %H:%M:%S"),
    ]:
        assert _logger_time(value, "line 3 Local Time", fmt, london, None) == noon, fmt
    # An offset names its instant: it is never moved to the second pass of a repeated hour.
    stated = "2026-10-25T01:30:00+01:00"
    before = datetime(2026, 10, 25, 0, 40, tzinfo=UTC)
    assert _logger_time(stated, "t", "iso8601", london, before).isoformat() == (
        "2026-10-25T00:30:00+00:00"
    )
