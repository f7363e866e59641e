"""The inbox: every inbound message, stored raw before it is acknowledged.

The message key is unique, so a partner's retry of a message we already committed finds
the stored response and gets the very same acknowledgement back, changing nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
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


def find_many(conn: Connection, message_keys: Collection[str]) -> dict[str, InboxRecord]:
    """The stored records among ``message_keys`` (one query for a whole batch)."""
    if not message_keys:
        return {}
    query = select(
        inbox.c.id,
        inbox.c.message_key,
        inbox.c.channel,
        inbox.c.sender,
        inbox.c.status,
        inbox.c.order_id,
        inbox.c.response,
        inbox.c.response_content_type,
    ).where(inbox.c.message_key.in_(list(message_keys)))
    return {row.message_key: InboxRecord(*row) for row in conn.execute(query)}


def record_many(conn: Connection, rows: Sequence[Mapping[str, object]]) -> None:
    """Store several answered messages at once; each row has :func:`record`'s arguments
    plus ``response`` and ``response_content_type``."""
    if rows:
        conn.execute(insert(inbox), list(rows))


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
