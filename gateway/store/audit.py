"""The custody and audit log: append-only and hash-chained.

Each entry's hash commits to the previous entry's hash and to its own content, so editing,
deleting or reordering any row breaks every link after it. :func:`verify_chain` walks the
chain and names the first broken link.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from gateway.store import driver_sql
from gateway.store.tables import audit_head, audit_log

GENESIS = "0" * 64
_DEFERRED = "v2v_audit_deferred"

# What json.dumps builds on every call, built once: every audited change encodes twice.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
_PAYLOAD = json.JSONEncoder(sort_keys=True, default=str)


def _canonical(
    seq: int, at: datetime, actor: str, action: str, order_id: str | None, payload: str
) -> bytes:
    body = {
        "seq": seq,
        "at": at.isoformat(),
        "actor": actor,
        "action": action,
        "order_id": order_id,
        "payload": payload,
    }
    return _CANONICAL.encode(body).encode()


def entry_hash(
    prev_hash: str,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    order_id: str | None,
    payload: str,
) -> str:
    digest = hashlib.sha256(prev_hash.encode())
    digest.update(_canonical(seq, at, actor, action, order_id, payload))
    return digest.hexdigest()


def append(
    conn: Connection,
    *,
    at: datetime,
    actor: str,
    action: str,
    order_id: str | None,
    payload: dict[str, Any],
) -> int:
    """Append one entry inside the caller's transaction; returns its sequence number.

    Inside :func:`deferred` the entry is only queued and 0 is returned: its sequence
    number is assigned when the chain is written at the end of the block."""
    pending: PendingEntries | None = conn.info.get(_DEFERRED)
    if pending is not None:
        pending.entries.append((at, actor, action, order_id, _PAYLOAD.encode(payload)))
        return 0
    head = conn.execute(
        select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1).with_for_update()
    ).first()
    if head is None:
        raise RuntimeError("audit_head is missing: run `v2v db upgrade`")
    prev_seq, prev_hash = head.seq, head.hash
    seq = prev_seq + 1
    text = _PAYLOAD.encode(payload)
    digest = entry_hash(prev_hash, seq, at, actor, action, order_id, text)
    conn.execute(
        insert(audit_log).values(
            seq=seq,
            at=at,
            actor=actor,
            action=action,
            order_id=order_id,
            payload=text,
            prev_hash=prev_hash,
            hash=digest,
        )
    )
    conn.execute(update(audit_head).where(audit_head.c.id == 1).values(seq=seq, hash=digest))
    return int(seq)


class PendingEntries:
    """Entries queued by :func:`deferred`, written to the chain in order at its end."""

    def __init__(self) -> None:
        self.entries: list[tuple[datetime, str, str, str | None, str]] = []

    def mark(self) -> int:
        return len(self.entries)

    def reset(self, mark: int) -> None:
        """Forget entries queued since ``mark`` (their savepoint was rolled back)."""
        del self.entries[mark:]


@contextmanager
def deferred(conn: Connection) -> Iterator[PendingEntries]:
    """Queue this transaction's appends and write them all when the block ends.

    The head row is then locked once, last, after every row lock the block took (the same
    order a single append takes them, so batches and single appends cannot deadlock on
    PostgreSQL), and the entries go in with one multi-row insert. A caller that rolls back
    a savepoint inside the block must :meth:`PendingEntries.reset` to its mark. Nothing is
    written when the block raises."""
    if _DEFERRED in conn.info:
        raise RuntimeError("audit appends are already deferred on this connection")
    pending = PendingEntries()
    conn.info[_DEFERRED] = pending
    try:
        yield pending
    finally:
        del conn.info[_DEFERRED]
    if pending.entries:
        _write(conn, pending.entries)


@contextmanager
def discard_on_error(conn: Connection) -> Iterator[None]:
    """Wrap a savepoint inside :func:`deferred`: when the block raises (and its savepoint
    is rolled back), the entries it queued are forgotten with the rows they describe."""
    pending: PendingEntries | None = conn.info.get(_DEFERRED)
    mark = pending.mark() if pending is not None else 0
    try:
        yield
    except BaseException:
        if pending is not None:
            pending.reset(mark)
        raise


def _write(conn: Connection, queued: list[tuple[datetime, str, str, str | None, str]]) -> None:
    # Once per group commit, inside the write lock: the statements go straight to the
    # driver (see driver_sql), which took a third of the Core version's time.
    head = driver_sql.rows(conn, _HEAD, (1,))
    if not head:
        raise RuntimeError("audit_head is missing: run `v2v db upgrade`")
    seq, digest = head[0]
    rows: list[tuple[object, ...]] = []
    for at, actor, action, order_id, text in queued:
        prev_hash, seq = digest, seq + 1
        digest = entry_hash(prev_hash, seq, at, actor, action, order_id, text)
        rows.append((seq, at, actor, action, order_id, text, prev_hash, digest))
    driver_sql.execute_many(conn, _INSERT_ENTRY, rows)
    driver_sql.run(conn, _MOVE_HEAD, (seq, digest, 1))


_HEAD = driver_sql.Statement(
    "SELECT seq, hash FROM audit_head WHERE id = ?", audit_head, ("id",), for_update=True
)
_INSERT_ENTRY = driver_sql.insert(
    audit_log, ("seq", "at", "actor", "action", "order_id", "payload", "prev_hash", "hash")
)
_MOVE_HEAD = driver_sql.Statement(
    "UPDATE audit_head SET seq = ?, hash = ? WHERE id = ?", audit_head, ("seq", "hash", "id")
)


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: datetime
    actor: str
    action: str
    order_id: str | None
    payload: dict[str, Any]
    hash: str


def entries(conn: Connection, order_id: str | None = None) -> Iterator[AuditEntry]:
    query = select(audit_log).order_by(audit_log.c.seq)
    if order_id is not None:
        query = query.where(audit_log.c.order_id == order_id)
    for row in conn.execute(query):
        yield AuditEntry(
            row.seq, row.at, row.actor, row.action, row.order_id, json.loads(row.payload), row.hash
        )


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    entries: int
    broken_at: int | None = None
    reason: str | None = None


def verify_chain(conn: Connection) -> ChainReport:
    prev_hash, expected_seq, count = GENESIS, 1, 0
    for row in conn.execute(select(audit_log).order_by(audit_log.c.seq)).yield_per(1000):
        if row.seq != expected_seq:
            return ChainReport(
                False,
                count,
                expected_seq,
                f"entry {expected_seq} is missing (next entry is {row.seq})",
            )
        if row.prev_hash != prev_hash:
            return ChainReport(
                False, count, row.seq, f"entry {row.seq} does not link to entry {row.seq - 1}"
            )
        recomputed = entry_hash(
            prev_hash, row.seq, row.at, row.actor, row.action, row.order_id, row.payload
        )
        if recomputed != row.hash:
            return ChainReport(
                False,
                count,
                row.seq,
                f"entry {row.seq} was altered: its content no longer matches its hash",
            )
        prev_hash, expected_seq, count = row.hash, expected_seq + 1, count + 1
    head = conn.execute(select(audit_head).where(audit_head.c.id == 1)).first()
    if head is not None and (head.seq != count or head.hash != prev_hash):
        return ChainReport(
            False,
            count,
            count + 1,
            f"the chain ends at entry {count} but its head records entry "
            f"{head.seq}: entries were removed from the end",
        )
    return ChainReport(True, count)
