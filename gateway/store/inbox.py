"""The inbox: every inbound message, stored raw before it is acknowledged.

The message key is unique, so a partner's retry of a message we already committed finds
the stored response and gets the very same acknowledgement back, changing nothing.

Except after a failure of the gateway's own (status :data:`FAILED`: a bug, a deadlock with
another gateway, a lost database connection): its reply asked the sender to try again, so
a resend is processed afresh. The failed attempt stays stored, renamed out of the way by
:func:`set_aside`, so nothing of it is lost.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from sqlalchemy import Connection, insert, select, update

from gateway.store import driver_sql
from gateway.store.tables import inbox

#: The status of a message stored with a reply that says the gateway failed, not the message.
FAILED = "error"


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


def body_of(conn: Connection, message_key: str) -> bytes | None:
    """The body stored under ``message_key``, or None when there is none."""
    found = conn.execute(select(inbox.c.body).where(inbox.c.message_key == message_key)).scalar()
    return None if found is None else bytes(found)


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


# The batch statements run once per group commit on the MLLP hot path: see driver_sql.
_RECORD_COLUMNS = (
    "message_key", "channel", "sender", "received_at", "content_type", "body", "status",
    "error", "order_id", "response", "response_content_type",
)  # fmt: skip
_RECORD_MANY = driver_sql.insert(inbox, _RECORD_COLUMNS)


@lru_cache(maxsize=64)
def _find_many_statement(count: int) -> driver_sql.Statement:
    return driver_sql.Statement(
        "SELECT id, message_key, channel, sender, status, order_id, response,"
        f" response_content_type FROM inbox WHERE message_key IN ({', '.join('?' * count)})",
        inbox,
        ("message_key",) * count,
    )


def find_many(conn: Connection, message_keys: Collection[str]) -> dict[str, InboxRecord]:
    """The stored records among ``message_keys`` (one query for a whole batch)."""
    if not message_keys:
        return {}
    keys = list(message_keys)
    found = driver_sql.rows(conn, _find_many_statement(len(keys)), keys)
    return {row[1]: InboxRecord(*row) for row in found}


def record_many(conn: Connection, rows: Sequence[Mapping[str, object]]) -> None:
    """Store several answered messages at once; each row has :func:`record`'s arguments
    plus ``response`` and ``response_content_type``."""
    if rows:
        driver_sql.execute_many(
            conn, _RECORD_MANY, [[row.get(name) for name in _RECORD_COLUMNS] for row in rows]
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
    key = result.inserted_primary_key
    assert key is not None  # a single-row INSERT
    return int(key[0])


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


def set_aside(conn: Connection, record: InboxRecord) -> None:
    """Keep a failed attempt under a key of its own, so the resend can be stored under the
    message's key. The record's id makes the new key unique."""
    suffix = f"|failed#{record.id}"
    renamed = record.message_key[: _KEY_LENGTH - len(suffix)] + suffix
    driver_sql.run(conn, _SET_ASIDE, (renamed, record.id))


_KEY_LENGTH: int = getattr(inbox.c.message_key.type, "length", None) or 300
_SET_ASIDE = driver_sql.Statement(
    "UPDATE inbox SET message_key = ? WHERE id = ?", inbox, ("message_key", "id")
)


def first_accepted_key(conn: Connection, order_id: str, channel: str) -> str | None:
    """The key of the first message on ``channel`` accepted for an order (its placing)."""
    return conn.execute(
        select(inbox.c.message_key)
        .where(inbox.c.order_id == order_id, inbox.c.channel == channel)
        .where(inbox.c.status == "accepted")
        .order_by(inbox.c.id)
        .limit(1)
    ).scalar()
