"""The hash-chained audit log catches tampering and refuses rewrites."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from gateway.domain.lifecycle import LifecycleEvent
from gateway.domain.states import EventType
from gateway.service.orders import OrderService
from gateway.store.audit import verify_chain


def make_history(service: OrderService, new_order) -> None:  # type: ignore[no-untyped-def]
    for index in range(3):
        order = new_order(placer=f"PL-A{index}")
        service.apply_event(order.id, LifecycleEvent(type=EventType.ENROLL), actor="test")
        service.apply_event(order.id, LifecycleEvent(type=EventType.REQUEST_SLOT), actor="test")


def test_intact_chain_verifies(service: OrderService, new_order) -> None:  # type: ignore[no-untyped-def]
    make_history(service, new_order)
    with service.engine.connect() as conn:
        report = verify_chain(conn)
    # Three orders of one patient: her registration, then three entries per order.
    assert report.ok and report.entries == 10


def test_database_refuses_update_and_delete(service: OrderService, new_order) -> None:  # type: ignore[no-untyped-def]
    make_history(service, new_order)
    for statement in (
        "UPDATE audit_log SET actor = 'mallory' WHERE seq = 2",
        "DELETE FROM audit_log WHERE seq = 10",
    ):
        with pytest.raises(DBAPIError, match="append-only"), service.engine.begin() as conn:
            conn.execute(text(statement))


@pytest.mark.parametrize(
    ("tamper", "broken_at", "words"),
    [
        ("UPDATE audit_log SET actor = 'mallory' WHERE seq = 4", 4, "altered"),
        ("UPDATE audit_log SET payload = '{}' WHERE seq = 6", 6, "altered"),
        ("DELETE FROM audit_log WHERE seq = 5", 5, "missing"),
        ("DELETE FROM audit_log WHERE seq = 10", 10, "removed from the end"),
    ],
)
def test_tampering_is_caught_at_the_first_broken_link(
    service: OrderService,
    new_order,  # type: ignore[no-untyped-def]
    tamper: str,
    broken_at: int,
    words: str,
) -> None:
    make_history(service, new_order)
    # An attacker with database-owner rights can drop the guard; the chain still tells.
    with service.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER audit_log_no_update"))
        conn.execute(text("DROP TRIGGER audit_log_no_delete"))
        conn.execute(text(tamper))
    with service.engine.connect() as conn:
        report = verify_chain(conn)
    assert not report.ok
    assert report.broken_at == broken_at
    assert words in (report.reason or "")


def test_refusals_are_audited(service: OrderService, new_order) -> None:  # type: ignore[no-untyped-def]
    from gateway.domain.errors import TransitionRefused
    from gateway.store.audit import entries

    order = new_order()
    with pytest.raises(TransitionRefused):
        service.apply_event(order.id, LifecycleEvent(type=EventType.THAW), actor="pharm.one")
    with service.engine.connect() as conn:
        last = list(entries(conn, order.id))[-1]
    assert last.action == "order.refused" and last.actor == "pharm.one"
    assert last.payload["code"] == "illegal_transition"
