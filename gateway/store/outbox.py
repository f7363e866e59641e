"""The outbox: messages to partners, written in the same transaction as the state change.

A relay claims due rows with a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several
gateways can share the work), sends them, and marks them delivered or schedules a retry.
A crashed relay's lease simply runs out and another picks the row up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, or_, select, update

from gateway.store import driver_sql
from gateway.store.tables import outbox

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"


@dataclass(frozen=True)
class OutboxItem:
    id: int
    destination: str
    kind: str
    order_id: str | None
    idempotency_key: str
    payload: dict[str, Any]
    attempts: int
    status: str
    last_error: str | None


def _item(row: Any) -> OutboxItem:
    return OutboxItem(
        row.id,
        row.destination,
        row.kind,
        row.order_id,
        row.idempotency_key,
        json.loads(row.payload),
        row.attempts,
        row.status,
        row.last_error,
    )


def enqueue(
    conn: Connection,
    *,
    destination: str,
    kind: str,
    payload: dict[str, Any],
    idempotency_key: str,
    at: datetime,
    order_id: str | None = None,
    ordering_key: str | None = None,
) -> int:
    row = (destination, kind, order_id, idempotency_key, ordering_key or order_id,
           json.dumps(payload, default=str), at, PENDING, 0, at)  # fmt: skip
    return int(driver_sql.scalar(conn, _ENQUEUE, row))


# Every state change enqueues a message or two: the insert runs on the driver's cursor.
_ENQUEUE_COLUMNS = (
    "destination", "kind", "order_id", "idempotency_key", "ordering_key", "payload",
    "created_at", "status", "attempts", "next_attempt_at",
)  # fmt: skip
_ENQUEUE = driver_sql.insert(outbox, _ENQUEUE_COLUMNS, returning="id")


def claim(
    conn: Connection, *, owner: str, now: datetime, lease: timedelta, limit: int = 20
) -> list[OutboxItem]:
    """Lease up to ``limit`` due items, skipping rows another relay has locked."""
    earlier = outbox.alias("earlier")
    # A message waits while an earlier one to the same destination for the same order is
    # undelivered (retrying or leased by another relay): partners see them in order.
    waiting_behind = (
        select(earlier.c.id)
        .where(
            earlier.c.destination == outbox.c.destination,
            earlier.c.ordering_key == outbox.c.ordering_key,
            earlier.c.status == PENDING,
            earlier.c.id < outbox.c.id,
        )
        .exists()
    )
    due = and_(
        outbox.c.status == PENDING,
        outbox.c.next_attempt_at <= now,
        or_(outbox.c.lease_until.is_(None), outbox.c.lease_until < now),
        ~waiting_behind,
    )
    query = select(outbox).where(due).order_by(outbox.c.id).limit(limit)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    rows = conn.execute(query).all()
    if not rows:
        return []
    ids = [row.id for row in rows]
    conn.execute(
        update(outbox)
        .where(outbox.c.id.in_(ids))
        .values(lease_owner=owner, lease_until=now + lease)
    )
    return [_item(row) for row in rows]


def renew_lease(
    conn: Connection, item_id: int, owner: str, *, now: datetime, lease: timedelta
) -> bool:
    """Extend ``owner``'s lease on a pending item it still holds; False when another relay
    has claimed it since (a claim takes the lease over) or it is no longer pending. A lease
    that ran out with nobody claiming the item is still ``owner``'s to renew."""
    result = conn.execute(
        update(outbox)
        .where(
            outbox.c.id == item_id,
            outbox.c.lease_owner == owner,
            outbox.c.status == PENDING,
        )
        .values(lease_until=now + lease)
    )
    return result.rowcount == 1


#: Where a transport keeps the request it first sent for an item (see :func:`pin_request`).
SENT_REQUEST = "sent_request"


def pin_request(conn: Connection, item_id: int, request: dict[str, Any]) -> dict[str, Any]:
    """Keep the request a transport is about to send for the first time in the item's
    payload, so every retry sends the same request under the same idempotency key: a
    partner that already holds that key may refuse, or worse apply, a different body.
    Returns the request kept: an earlier one, if another attempt pinned one first."""
    payload = _payload(conn, item_id)
    kept = payload.get(SENT_REQUEST)
    if isinstance(kept, dict):
        return kept
    payload[SENT_REQUEST] = request
    _set_payload(conn, item_id, payload)
    return request


def unpin_request(conn: Connection, item_id: int) -> None:
    """Forget the kept request: the partner refused it outright, so it acted on nothing
    and the next attempt (an operator's retry) may shape it afresh."""
    payload = _payload(conn, item_id)
    if payload.pop(SENT_REQUEST, None) is not None:
        _set_payload(conn, item_id, payload)


def _payload(conn: Connection, item_id: int) -> dict[str, Any]:
    stored = conn.execute(select(outbox.c.payload).where(outbox.c.id == item_id)).scalar()
    if stored is None:
        raise LookupError(f"no outbox item {item_id}")
    payload: dict[str, Any] = json.loads(stored)
    return payload


def _set_payload(conn: Connection, item_id: int, payload: dict[str, Any]) -> None:
    conn.execute(
        update(outbox)
        .where(outbox.c.id == item_id)
        .values(payload=json.dumps(payload, default=str))
    )


def mark_delivered(conn: Connection, item_id: int, owner: str, at: datetime) -> bool:
    result = conn.execute(
        update(outbox)
        .where(outbox.c.id == item_id, outbox.c.lease_owner == owner)
        .values(
            status=DELIVERED,
            delivered_at=at,
            lease_until=None,
            attempts=outbox.c.attempts + 1,
            last_error=None,
        )
    )
    return result.rowcount == 1


def mark_failed(
    conn: Connection,
    item_id: int,
    owner: str,
    *,
    error: str,
    retry_at: datetime | None,
    count_attempt: bool = True,
) -> bool:
    """Schedule a retry, or dead-letter the item when ``retry_at`` is None. An item that only
    waited behind an earlier failure (``count_attempt=False``) keeps its attempt count.
    False when ``owner`` no longer holds the item's lease."""
    result = conn.execute(
        update(outbox)
        .where(outbox.c.id == item_id, outbox.c.lease_owner == owner)
        .values(
            status=PENDING if retry_at else DEAD,
            lease_until=None,
            attempts=outbox.c.attempts + (1 if count_attempt else 0),
            last_error=error[:2000],
            next_attempt_at=retry_at or outbox.c.next_attempt_at,
        )
    )
    return result.rowcount == 1


def list_items(
    conn: Connection,
    *,
    status: str | None = None,
    order_id: str | None = None,
    destination: str | None = None,
    limit: int = 100,
    after: int | None = None,
) -> list[OutboxItem]:
    """Items in the order they were queued, from the one after id ``after``."""
    query = select(outbox).order_by(outbox.c.id)
    if after is not None:
        query = query.where(outbox.c.id > after)
    if status:
        query = query.where(outbox.c.status == status)
    if order_id:
        query = query.where(outbox.c.order_id == order_id)
    if destination:
        query = query.where(outbox.c.destination == destination)
    return [_item(row) for row in conn.execute(query.limit(limit))]


def retry(conn: Connection, item_id: int, now: datetime) -> OutboxItem | None:
    """Put a dead-lettered (or pending) item back in line at once; the item, or None when
    there is no such undelivered item."""
    row = conn.execute(
        update(outbox)
        .where(outbox.c.id == item_id, outbox.c.status != DELIVERED)
        .values(status=PENDING, next_attempt_at=now, lease_until=None)
        .returning(*outbox.c)
    ).first()
    return _item(row) if row is not None else None


def dead_letter(conn: Connection, item_id: int, reason: str) -> OutboxItem | None:
    """Stop retrying a pending item; the item, or None when there is no such pending item."""
    row = conn.execute(
        update(outbox)
        .where(outbox.c.id == item_id, outbox.c.status == PENDING)
        .values(status=DEAD, last_error=reason, lease_until=None)
        .returning(*outbox.c)
    ).first()
    return _item(row) if row is not None else None
