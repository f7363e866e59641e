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


def test_entries_queued_inside_a_rolled_back_savepoint_are_discarded(
    service: OrderService,
) -> None:
    from gateway.store import audit

    at = service.clock()
    with service.engine.begin() as conn, audit.deferred(conn) as chain:
        audit.append(conn, at=at, actor="test", action="kept", order_id=None, payload={})
        with pytest.raises(RuntimeError), audit.discard_on_error(conn), conn.begin_nested():
            audit.append(conn, at=at, actor="test", action="undone", order_id=None, payload={})
            raise RuntimeError("the entry's work failed")
        assert chain.mark() == 1
    with service.engine.connect() as conn:
        assert [e.action for e in audit.entries(conn)] == ["kept"]
        assert verify_chain(conn).ok


def test_a_refused_order_queues_no_audit_entry_for_its_patient(
    service: OrderService,
) -> None:
    """A duplicate placer number fails after the patient was written: the caller rolls the
    write back with its savepoint, so nothing about it may wait in the deferred chain."""
    from gateway.domain.model import Site
    from gateway.domain.patient import PatientIdentity
    from gateway.service.commands import CreateOrder
    from gateway.service.errors import Conflict
    from gateway.store import audit

    def command(family_name: str) -> CreateOrder:
        return CreateOrder(
            patient=PatientIdentity(mrn="MRN-SYN-0777", family_name=family_name),
            therapy_code="exa-cel",
            site=Site(id="st-mary", facility_code="A9991"),
            placer_number="PL-DUP-1",
        )

    with service.uow() as uow, audit.deferred(uow.conn) as chain:
        service.create_order(command("Zz-First"), actor="test", uow=uow)
        queued = chain.mark()
        assert [entry[2] for entry in chain.entries] == ["patient.created", "order.created"]
        with pytest.raises(Conflict), uow.conn.begin_nested():
            service.create_order(command("Zz-Renamed"), actor="test", uow=uow)
        assert chain.mark() == queued
