"""The outbox relay: delivery, backoff with jitter, per-order ordering, dead letters."""

from __future__ import annotations

import random

from gateway.domain.lifecycle import LifecycleEvent
from gateway.domain.states import EventType
from gateway.service.orders import OrderService
from gateway.service.relay import DeliveryError, Relay, RelayPolicy
from gateway.store import audit, outbox
from gateway.store.outbox import OutboxItem


def enrol(service: OrderService, new_order) -> str:  # type: ignore[no-untyped-def]
    order = new_order()
    service.apply_event(order.id, LifecycleEvent(type=EventType.ENROLL), actor="t")
    service.apply_event(order.id, LifecycleEvent(type=EventType.REQUEST_SLOT), actor="t")
    return str(order.id)


def items(service: OrderService, status: str | None = None) -> list[OutboxItem]:
    with service.engine.connect() as conn:
        return outbox.list_items(conn, status=status)


def test_delivers_each_item_once_in_order(service: OrderService, new_order, clock) -> None:  # type: ignore[no-untyped-def]
    enrol(service, new_order)
    seen: list[tuple[str, int]] = []
    relay = Relay(service.engine, clock=clock)
    relay.register("hospital", lambda item: seen.append((item.destination, item.id)))
    relay.register("manufacturer", lambda item: seen.append((item.destination, item.id)))
    delivered = 0
    for _ in range(10):  # one message per (destination, order) per pass: order is kept
        stats = relay.run_once()
        if stats.delivered == 0:
            break
        delivered += stats.delivered
    assert delivered == len(seen) == len(items(service)) > 0
    hospital_ids = [item_id for dest, item_id in seen if dest.startswith("hospital")]
    assert hospital_ids == sorted(hospital_ids)
    assert all(item.status == outbox.DELIVERED for item in items(service))


def test_failures_back_off_with_jitter_then_dead_letter(
    service: OrderService,
    new_order,  # type: ignore[no-untyped-def]
    clock,
) -> None:
    enrol(service, new_order)
    calls: list[int] = []

    def down(item: OutboxItem) -> None:
        calls.append(item.id)
        raise DeliveryError("connection refused")

    policy = RelayPolicy(max_attempts=3, base_delay=10, max_delay=100)
    relay = Relay(service.engine, clock=clock, policy=policy)
    relay.register("hospital", down)
    relay.register("manufacturer", lambda item: None)
    relay.run_once()
    pending = [i for i in items(service, outbox.PENDING) if i.destination.startswith("hospital")]
    # only the first hospital item was tried; the later one waits behind it (ordering)
    assert len(calls) == 1 and len(pending) >= 2
    relay.run_once()
    assert len(calls) == 1  # not due yet (backoff), and the later one still waits behind it
    for _ in range(3):
        clock.advance(seconds=200)
        relay.run_once()
    dead = items(service, outbox.DEAD)
    assert dead and dead[0].last_error == "connection refused" and dead[0].attempts == 3


def test_permanent_errors_dead_letter_at_once_and_retry_revives(
    service: OrderService,  # type: ignore[no-untyped-def]
    new_order,
    clock,
) -> None:
    enrol(service, new_order)
    relay = Relay(service.engine, clock=clock)
    relay.register("manufacturer", lambda item: None)

    def refuse(item: OutboxItem) -> None:
        raise DeliveryError("AR: unknown patient", permanent=True)

    relay.register("hospital", refuse)
    relay.run_once()
    dead = items(service, outbox.DEAD)
    assert dead and dead[0].attempts == 1
    with service.engine.connect() as conn:
        entries = [e for e in audit.entries(conn) if e.action == "outbox.dead_letter"]
    assert [(e.order_id, e.actor, e.payload) for e in entries] == [
        (
            item.order_id,
            f"relay:{relay.owner}",
            {
                "item": item.id,
                "destination": item.destination,
                "kind": item.kind,
                "attempts": 1,
                "permanent": True,
            },
        )
        for item in dead
    ]
    relay.register("hospital", lambda item: None)
    with service.engine.begin() as conn:
        for item in dead:  # a dead letter does not hold later messages back forever
            assert outbox.retry(conn, item.id, clock())
    relay.run_once()
    assert items(service, outbox.DEAD) == []


def test_backoff_is_exponential_and_capped() -> None:
    policy = RelayPolicy(base_delay=2, max_delay=60)
    rng = random.Random(7)
    delays = [policy.delay(attempt, rng) for attempt in range(1, 10)]
    assert 1 <= delays[0] <= 2 and 4 <= delays[2] <= 8
    assert all(delay <= 60 for delay in delays) and delays[-1] >= 30


def test_wired_relay_routes_hospitals_by_protocol(service: OrderService, new_order) -> None:  # type: ignore[no-untyped-def]
    from gateway.wiring import build_relay

    relay = build_relay(service)
    assert set(relay.transports) == {"hospital", "manufacturer", "courier", "erp"}


def test_a_later_message_never_overtakes_one_waiting_for_retry(
    service: OrderService,  # type: ignore[no-untyped-def]
    new_order,
    clock,
) -> None:
    enrol(service, new_order)
    sent: list[int] = []
    failing = {"on": True}

    def flaky(item: OutboxItem) -> None:
        if failing["on"]:
            raise DeliveryError("EHR down")
        sent.append(item.id)

    relay = Relay(service.engine, clock=clock, policy=RelayPolicy(base_delay=60, max_delay=60))
    relay.register("hospital", flaky)
    relay.register("manufacturer", lambda item: None)
    relay.run_once()  # the first hospital message fails and waits a minute
    for _ in range(3):  # passes within that minute must not send the second one first
        clock.advance(seconds=5)
        relay.run_once()
    assert sent == []
    failing["on"] = False
    for _ in range(5):
        clock.advance(seconds=120)
        relay.run_once()
    hospital = [i.id for i in items(service) if i.destination.startswith("hospital")]
    assert sent == sorted(hospital) and len(sent) >= 2


def test_independent_orders_are_delivered_in_parallel(
    service: OrderService,
    new_order,  # type: ignore[no-untyped-def]
    clock,
) -> None:
    import threading
    import time

    for _ in range(4):
        enrol(service, new_order)
    active, peak = [0], [0]
    lock = threading.Lock()

    def slow(item: OutboxItem) -> None:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1

    relay = Relay(service.engine, clock=clock)
    relay.register("hospital", slow)
    relay.register("manufacturer", slow)
    assert relay.run_round().delivered == 8  # the first message of each of 8 pairs
    assert relay.run_once().delivered == 8  # then the second of each, in order
    assert peak[0] > 1


def test_an_item_whose_lease_ran_out_is_sent_only_by_its_new_holder(
    service: OrderService, new_order, clock
) -> None:  # type: ignore[no-untyped-def]
    """Relay A claims a batch; before A reaches its items (a slow partner ahead of them)
    the lease runs out and relay B claims and sends them. A must not send them again."""
    from datetime import timedelta

    enrol(service, new_order)
    policy = RelayPolicy(lease_seconds=60, parallel=1)
    first, second = (Relay(service.engine, clock=clock, policy=policy, owner=n) for n in "AB")
    sent: list[tuple[str, int]] = []
    for relay in (first, second):
        for prefix in ("hospital", "manufacturer"):
            relay.register(prefix, lambda item, who=relay.owner: sent.append((who, item.id)))
    with service.engine.begin() as conn:
        claimed = outbox.claim(conn, owner="A", now=clock(), lease=timedelta(seconds=60), limit=50)
    assert claimed
    clock.advance(seconds=61)
    second.run_once()
    taken = {item_id for who, item_id in sent if who == "B"}
    assert taken >= {item.id for item in claimed if item.destination.startswith("manufacturer")}
    for item in claimed:
        first._deliver_group([item])
    ids = [item_id for _, item_id in sent]
    assert len(ids) == len(set(ids)), sent  # nothing went out twice
    assert all(who == "B" for who, _ in sent)


def test_a_failed_attempt_is_logged_as_a_warning_with_its_next_try(
    service: OrderService,
    new_order,  # type: ignore[no-untyped-def]
    clock,
    caplog,  # type: ignore[no-untyped-def]
) -> None:
    enrol(service, new_order)

    def down(item: OutboxItem) -> None:
        raise DeliveryError("connection refused")

    relay = Relay(service.engine, clock=clock, policy=RelayPolicy(max_attempts=5))
    relay.register("hospital", down)
    relay.register("manufacturer", lambda item: None)
    with caplog.at_level("WARNING", logger="gateway.service.relay"):
        relay.run_once()
    [warning] = [r for r in caplog.records if "not delivered" in r.getMessage()]
    assert warning.levelname == "WARNING"
    text = warning.getMessage()
    assert "hospital" in text and "attempt 1 of 5" in text and "next try at" in text
    assert text.endswith("connection refused")
    # The items held behind it are not attempts, and are not logged as failures.
    assert len([r for r in caplog.records if "not delivered" in r.getMessage()]) == 1
