"""Operator decisions on outbound messages, audited the same way from the CLI and the API."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

from gateway.store import audit, outbox


def retry_outbox(engine: Engine, item_id: int, *, actor: str, at: datetime) -> bool:
    """Put an undelivered message back in line now; False when there is no such item."""
    with engine.begin() as conn:
        if not outbox.retry(conn, item_id, at):
            return False
        audit.append(
            conn,
            at=at,
            actor=actor,
            action="outbox.retry",
            order_id=None,
            payload={"item": item_id},
        )
    return True


def dead_letter_outbox(
    engine: Engine, item_id: int, *, reason: str, actor: str, at: datetime
) -> bool:
    """Stop retrying a pending message; False when there is no such pending item."""
    with engine.begin() as conn:
        if not outbox.dead_letter(conn, item_id, reason):
            return False
        audit.append(
            conn,
            at=at,
            actor=actor,
            action="outbox.dead_letter",
            order_id=None,
            payload={"item": item_id, "reason": reason},
        )
    return True
