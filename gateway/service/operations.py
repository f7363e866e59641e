"""Operator decisions on outbound messages, audited the same way from the CLI and the API."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

from gateway.store import audit, outbox


def retry_outbox(engine: Engine, item_id: int, *, actor: str, at: datetime) -> bool:
    """Put an undelivered message back in line now; False when there is no such item."""
    with engine.begin() as conn:
        item = outbox.retry(conn, item_id, at)
        if item is None:
            return False
        audit.append(
            conn,
            at=at,
            actor=actor,
            action="outbox.retry",
            order_id=item.order_id,
            payload=described(item),
        )
    return True


def dead_letter_outbox(
    engine: Engine, item_id: int, *, reason: str, actor: str, at: datetime
) -> bool:
    """Stop retrying a pending message; False when there is no such pending item."""
    with engine.begin() as conn:
        item = outbox.dead_letter(conn, item_id, reason)
        if item is None:
            return False
        audit.append(
            conn,
            at=at,
            actor=actor,
            action="outbox.dead_letter",
            order_id=item.order_id,
            payload={**described(item), "reason": reason},
        )
    return True


def described(item: outbox.OutboxItem) -> dict[str, object]:
    """An outbound message in the audit trail: which one and where to, never its payload
    (a hospital's copy may carry patient details; the order's partners read the trail)."""
    return {"item": item.id, "destination": item.destination, "kind": item.kind}
