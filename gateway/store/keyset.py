"""Keyset cursors over orders, newest first: ``<updated_at ISO>|<order id>``.

Deep pages cost the same as the first because the cursor names the last row seen rather
than an offset. Every order listing (the API, the control tower) pages with these.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, or_

from gateway.store.tables import orders


class InvalidCursor(ValueError):
    """A cursor this gateway did not issue."""


def encode(updated_at: datetime, order_id: str) -> str:
    return f"{updated_at.isoformat()}|{order_id}"


def decode(cursor: str) -> tuple[datetime, str]:
    stamp, separator, last_id = cursor.partition("|")
    try:
        at = datetime.fromisoformat(stamp)
    except ValueError:
        at = None
    if at is None or at.tzinfo is None or not separator or not last_id:
        raise InvalidCursor("The cursor is not one this API issued; follow the 'next' link.")
    return at, last_id


def older_than(cursor: str) -> ColumnElement[bool]:
    """Orders after the cursor's row in newest-first order."""
    at, last_id = decode(cursor)
    return or_(orders.c.updated_at < at, and_(orders.c.updated_at == at, orders.c.id < last_id))
