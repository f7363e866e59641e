"""Stored responses for ``Idempotency-Key`` requests (Stripe's semantics).

The first response to a key is kept with a hash of its request. Replaying the key with the
same request returns that response; the same key with a different request is an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, insert, select

from gateway.store.tables import idempotency_keys


@dataclass(frozen=True)
class StoredResponse:
    request_hash: str
    status_code: int
    body: str
    headers: dict[str, str]


def find(conn: Connection, scope: str, key: str) -> StoredResponse | None:
    row = conn.execute(
        select(idempotency_keys).where(
            idempotency_keys.c.scope == scope, idempotency_keys.c.key == key
        )
    ).first()
    if row is None:
        return None
    return StoredResponse(
        row.request_hash, row.status_code, row.response_body, json.loads(row.response_headers)
    )


def store(
    conn: Connection,
    *,
    scope: str,
    key: str,
    request_hash: str,
    status_code: int,
    body: str,
    headers: dict[str, str],
    at: datetime,
) -> None:
    conn.execute(
        insert(idempotency_keys).values(
            scope=scope,
            key=key,
            request_hash=request_hash,
            status_code=status_code,
            response_body=body,
            response_headers=json.dumps(headers),
            created_at=at,
        )
    )
