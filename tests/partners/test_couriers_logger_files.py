"""Courier data-logger CSV files: local times across a clock change, rows that cannot be
read, and values no probe can show. Scenario files are built inline: one file, one
expected outcome."""

from __future__ import annotations

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
