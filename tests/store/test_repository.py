"""The same repository suite on SQLite and on PostgreSQL (skipped with a reason if absent)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from gateway.domain.lifecycle import EventDetails, LifecycleEvent
from gateway.domain.model import Site
from gateway.domain.patient import PatientIdentity
from gateway.domain.states import EventType
from gateway.service.commands import CreateOrder
from gateway.service.errors import Conflict, VersionMismatch
from gateway.service.orders import InboundMessage, OrderService, Reply
from gateway.store import inbox, outbox
from gateway.store.repository import ConcurrencyConflict
from gateway.store.tables import audit_log, orders
from gateway.store.tables import inbox as inbox_table
from gateway.store.tables import outbox as outbox_table
from tests.conftest import SYNTHETIC_PATIENTS


def command(placer: str, patient: int = 0, site: str = "st-mary") -> CreateOrder:
    return CreateOrder(
        patient=PatientIdentity(**SYNTHETIC_PATIENTS[patient]),
        therapy_code="exa-cel",
        site=Site(id=site, facility_code="A9991"),
        placer_number=placer,
    )


def count(service: OrderService, table) -> int:  # type: ignore[no-untyped-def]
    with service.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_round_trip_keeps_every_field(any_service: OrderService) -> None:
    order = any_service.create_order(command("PL-1"), actor="test")
    any_service.apply_event(order.id, LifecycleEvent(type=EventType.ENROLL), actor="test")
    stored = any_service.get(order.id)
    assert stored.coi and stored.coi.startswith("CHA9991")
    assert stored.version == 2
    assert any_service.find("coi", stored.coi) == stored
    assert any_service.find("placer", "PL-1", "st-mary") == stored
    patient = any_service.patient_of(order.id)
    assert patient is not None and patient.mrn == "MRN-SYN-0001"


def test_patient_identity_never_enters_the_order_document(any_service: OrderService) -> None:
    order = any_service.create_order(command("PL-2"), actor="test")
    with any_service.engine.connect() as conn:
        document = conn.execute(select(orders.c.document)).scalar_one()
    for secret in ("MRN-SYN-0001", "Zz-Testpatient", "1961-04-12", "Alpha"):
        assert secret not in document
    assert order.patient_pseudonym in document
    assert "MRN" not in order.patient_pseudonym


def test_pseudonyms_are_random_per_order(any_service: OrderService) -> None:
    first = any_service.create_order(command("PL-3"), actor="test")
    second = any_service.create_order(command("PL-4"), actor="test")  # same patient
    assert first.patient_pseudonym != second.patient_pseudonym


def test_business_identifiers_are_unique(any_service: OrderService) -> None:
    any_service.create_order(command("PL-5"), actor="test")
    with pytest.raises(Conflict) as caught:
        any_service.create_order(command("PL-5", patient=1), actor="test")
    assert caught.value.details["identifier"] == "placer"
    # the same placer number at another site is a different order
    any_service.create_order(command("PL-5", site="lakeside"), actor="test")
    assert count(any_service, orders) == 2


def test_concurrent_creates_with_one_placer_make_one_order(any_service: OrderService) -> None:
    results: list[str] = []
    barrier = threading.Barrier(6)

    def create() -> None:
        barrier.wait()
        try:
            any_service.create_order(command("PL-RACE"), actor="test")
            results.append("created")
        except Conflict:
            results.append("conflict")

    threads = [threading.Thread(target=create) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count("created") == 1 and results.count("conflict") == 5
    assert count(any_service, orders) == 1


def test_stale_version_is_refused(any_service: OrderService) -> None:
    order = any_service.create_order(command("PL-6"), actor="test")
    any_service.apply_event(
        order.id, LifecycleEvent(type=EventType.ENROLL), actor="test", expected_version=1
    )
    with pytest.raises(VersionMismatch):
        any_service.apply_event(
            order.id, LifecycleEvent(type=EventType.REQUEST_SLOT), actor="test", expected_version=1
        )
    with any_service.uow() as uow:
        current = uow.orders.get(order.id)
        assert current is not None
        with pytest.raises(ConcurrencyConflict):
            uow.orders.save(current, expected_version=1)


def test_state_inbox_audit_and_outbox_commit_together(any_service: OrderService) -> None:
    order = any_service.create_order(command("PL-7"), actor="test")
    before = (count(any_service, audit_log), count(any_service, outbox_table))

    def handle_then_fail(uow):  # type: ignore[no-untyped-def]
        any_service.apply_event(order.id, LifecycleEvent(type=EventType.ENROLL), actor="t", uow=uow)
        raise ValueError("mapping failed after the state change")

    def on_error(exc: Exception) -> Reply:
        return Reply("rejected", f"AE {exc}".encode(), "text/plain", order.id)

    message = InboundMessage("test:1", "test", "unit-test", "text/plain", b"raw bytes")
    reply = any_service.process_inbound(message, handle_then_fail, on_error)
    assert reply.status == "rejected"
    # the effects rolled back, the raw message and the refusal audit entry are kept
    assert any_service.get(order.id).version == 1
    assert count(any_service, outbox_table) == before[1]
    assert count(any_service, audit_log) == before[0] + 1
    with any_service.uow() as uow:
        record = inbox.find(uow.conn, "test:1")
    assert record is not None and record.status == "rejected"

    def handle(uow):  # type: ignore[no-untyped-def]
        outcome = any_service.apply_event(
            order.id, LifecycleEvent(type=EventType.ENROLL), actor="t", uow=uow
        )
        return Reply("accepted", b"AA", "text/plain", outcome.order.id)

    accepted = any_service.process_inbound(
        InboundMessage("test:2", "test", "unit-test", "text/plain", b"raw 2"), handle, on_error
    )
    assert accepted.status == "accepted" and not accepted.duplicate
    assert any_service.get(order.id).version == 2
    assert count(any_service, outbox_table) == before[1] + 2  # hospital + manufacturer
    # a retry of the same message: the stored reply, nothing applied twice
    again = any_service.process_inbound(
        InboundMessage("test:2", "test", "unit-test", "text/plain", b"raw 2"), handle, on_error
    )
    assert again.duplicate and again.body == b"AA"
    assert any_service.get(order.id).version == 2
    assert count(any_service, inbox_table) == 2


def test_concurrent_duplicate_messages_apply_once(any_service: OrderService) -> None:
    order = any_service.create_order(command("PL-8"), actor="test")
    replies: list[Reply] = []
    barrier = threading.Barrier(4)

    def handle(uow):  # type: ignore[no-untyped-def]
        outcome = any_service.apply_event(
            order.id, LifecycleEvent(type=EventType.ENROLL), actor="t", uow=uow
        )
        return Reply("accepted", f"AA v{outcome.order.version}".encode(), "text/plain", order.id)

    def send() -> None:
        barrier.wait()
        replies.append(
            any_service.process_inbound(
                InboundMessage("dup:1", "test", "unit-test", "text/plain", b"same"),
                handle,
                lambda exc: Reply("error", str(exc).encode(), "text/plain"),
            )
        )

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {reply.body for reply in replies} == {b"AA v2"}
    assert sum(not reply.duplicate for reply in replies) == 1
    assert any_service.get(order.id).version == 2


def test_search_pages_newest_first(any_service: OrderService, clock) -> None:  # type: ignore[no-untyped-def]
    made = []
    for index in range(7):
        clock.advance(minutes=1)
        made.append(any_service.create_order(command(f"PL-P{index}"), actor="test").id)
    seen: list[str] = []
    cursor = None
    while True:
        page = any_service.search(limit=3, cursor=cursor)
        seen.extend(order.id for order in page.orders)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == list(reversed(made))
    assert [o.id for o in any_service.search(identifier="PL-P3").orders] == [made[3]]
    assert any_service.search(state="ENROLLED").orders == []


def test_outbox_claim_lease_and_retry(any_service: OrderService, clock) -> None:  # type: ignore[no-untyped-def]
    order = any_service.create_order(command("PL-9"), actor="test")
    any_service.apply_event(order.id, LifecycleEvent(type=EventType.ENROLL), actor="test")
    with any_service.engine.begin() as conn:
        first = outbox.claim(conn, owner="a", now=clock(), lease=timedelta(seconds=30))
    with any_service.engine.begin() as conn:
        second = outbox.claim(conn, owner="b", now=clock(), lease=timedelta(seconds=30))
    assert len(first) == 2 and second == []  # leased rows are not handed out twice
    with any_service.engine.begin() as conn:
        assert outbox.mark_delivered(conn, first[0].id, "a", clock())
        outbox.mark_failed(conn, first[1].id, "a", error="partner down", retry_at=None)
        dead = outbox.list_items(conn, status=outbox.DEAD)
        assert [item.id for item in dead] == [first[1].id]
        assert outbox.retry(conn, first[1].id, clock())
    clock.advance(seconds=1)
    with any_service.engine.begin() as conn:
        again = outbox.claim(conn, owner="b", now=clock(), lease=timedelta(seconds=30))
    assert [item.id for item in again] == [first[1].id]


def test_partner_payloads_carry_no_patient_identity(any_service: OrderService) -> None:
    order = any_service.create_order(command("PL-10"), actor="test")
    any_service.apply_event(
        order.id, LifecycleEvent(type=EventType.ENROLL, details=EventDetails()), actor="test"
    )
    with any_service.engine.connect() as conn:
        payloads = list(conn.execute(select(outbox_table.c.payload)).scalars())
    assert payloads
    for payload in payloads:
        for secret in ("MRN-SYN-0001", "Zz-Testpatient", "1961-04-12"):
            assert secret not in payload
