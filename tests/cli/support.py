"""Shared set-up for the CLI tests."""

from __future__ import annotations

#: The commands that only act on records already stored: none may create a database.
NEEDS_A_DATABASE = [
    ["orders", "show", "SM-1001"],
    ["orders", "list"],
    ["audit", "verify"],
    ["audit", "checkpoint"],
    ["outbox", "list"],
    ["outbox", "retry", "1"],
    ["outbox", "dead-letter", "1", "--reason", "test"],
    ["label", "SM-1001", "--format", "zpl"],
    ["scan", "x", "--user", "u"],
]


def enrolled_order_with_pending_notice(placer: str) -> int:
    """An order created and enrolled on the database ``V2V_DATABASE_URL`` names; the id of
    the first outbox item that enrolment queued."""
    from gateway.bootstrap import build_service
    from gateway.domain.lifecycle import LifecycleEvent
    from gateway.domain.model import Site
    from gateway.domain.patient import PatientIdentity
    from gateway.domain.states import EventType
    from gateway.service.commands import CreateOrder
    from gateway.store import outbox
    from tests.conftest import SYNTHETIC_PATIENTS

    service = build_service()
    try:
        order = service.create_order(
            CreateOrder(
                patient=PatientIdentity(**SYNTHETIC_PATIENTS[0]),
                therapy_code="exa-cel",
                site=Site(id="st-mary"),
                placer_number=placer,
            ),
            actor="cli-test",
        )
        service.apply_event(order.id, LifecycleEvent(type=EventType.ENROLL), actor="cli-test")
        with service.engine.connect() as conn:
            return outbox.list_items(conn, status=outbox.PENDING)[0].id
    finally:
        service.engine.dispose()
