"""The outbox relay: delivery, backoff with jitter, per-order ordering, dead letters."""

from __future__ import annotations

import random

from gateway.domain.lifecycle import LifecycleEvent
from gateway.domain.states import EventType
from gateway.service.orders import OrderService
from gateway.service.relay import DeliveryError, Relay, RelayPolicy
from gateway.store import outbox
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
    first = relay.run_once()
    assert first.delivered == len(seen) > 0 and relay.run_once().delivered == 0
    hospital_ids = [item_id for dest, item_id in seen if dest.startswith("hospital")]
    assert hospital_ids == sorted(hospital_ids)
    assert all(item.status == outbox.DELIVERED for item in items(service))


def test_failures_back_off_with_jitter_then_dead_letter(service: OrderService, new_order,  # type: ignore[no-untyped-def]
                                                        clock) -> None:
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
    assert relay.run_once().delivered == 0  # not due yet: backoff
    for _ in range(3):
        clock.advance(seconds=200)
        relay.run_once()
    dead = items(service, outbox.DEAD)
    assert dead and dead[0].last_error == "connection refused" and dead[0].attempts == 3


def test_permanent_errors_dead_letter_at_once_and_retry_revives(service: OrderService,  # type: ignore[no-untyped-def]
                                                                new_order, clock) -> None:
    enrol(service, new_order)
    relay = Relay(service.engine, clock=clock)
    relay.register("manufacturer", lambda item: None)

    def refuse(item: OutboxItem) -> None:
        raise DeliveryError("AR: unknown patient", permanent=True)

    relay.register("hospital", refuse)
    relay.run_once()
    dead = items(service, outbox.DEAD)
    assert dead and dead[0].attempts == 1
    relay.register("hospital", lambda item: None)
    with service.engine.begin() as conn:
        assert outbox.retry(conn, dead[0].id, clock())
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
