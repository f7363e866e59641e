"""The inbox: every inbound message, stored raw before it is acknowledged.

The message key is unique, so a partner's retry of a message we already committed finds
the stored response and gets the very same acknowledgement back, changing nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, insert, select, update

from gateway.store.tables import inbox


@dataclass(frozen=True)
class InboxRecord:
    id: int
    message_key: str
    channel: str
    sender: str
    status: str
    order_id: str | None
    response: bytes | None
    response_content_type: str | None


def find(conn: Connection, message_key: str) -> InboxRecord | None:
    row = conn.execute(select(inbox).where(inbox.c.message_key == message_key)).first()
    if row is None:
        return None
    return InboxRecord(
        row.id,
        row.message_key,
        row.channel,
        row.sender,
        row.status,
        row.order_id,
        row.response,
        row.response_content_type,
    )


def record(
    conn: Connection,
    *,
    message_key: str,
    channel: str,
    sender: str,
    received_at: datetime,
    content_type: str,
    body: bytes,
    status: str,
    error: str | None = None,
    order_id: str | None = None,
) -> int:
    result = conn.execute(
        insert(inbox).values(
            message_key=message_key,
            channel=channel,
            sender=sender,
            received_at=received_at,
            content_type=content_type,
            body=body,
            status=status,
            error=error,
            order_id=order_id,
        )
    )
    return int(result.inserted_primary_key[0])


def set_response(
    conn: Connection,
    inbox_id: int,
    *,
    status: str,
    response: bytes,
    content_type: str,
    error: str | None = None,
    order_id: str | None = None,
) -> None:
    values: dict[str, object] = {
        "status": status,
        "response": response,
        "response_content_type": content_type,
        "error": error,
    }
    if order_id is not None:
        values["order_id"] = order_id
    conn.execute(update(inbox).where(inbox.c.id == inbox_id).values(**values))
