"""Group commit for inbound messages: many messages, one transaction, one commit.

:func:`process_inbound_batch` gives every message the semantics of
``OrderService.process_inbound``: it is stored raw with its reply, its effects commit with
it or not at all, a retry of a stored message (same key) gets the stored reply and changes
nothing, and a message whose commands fail is still stored, with its negative reply. What
changes is the cost: the messages share one transaction that commits once, the dedup
lookup is one query for the batch, the inbox rows go in with one multi-row insert and the
audit chain is extended once, at the end.

A message that fails must leave no trace but its negative reply, so each message could run
in its own SAVEPOINT; almost none fail, though, and two savepoint statements per message
cost more than an ADT message's own work. The batch is therefore first run without them;
if any message fails, that attempt is rolled back whole and the batch is run again with a
savepoint around each message.

Callers must release a message's reply only after this function returns it: until then
nothing is committed. When the batch as a whole cannot commit (a concurrent gateway stored
one of the keys first, a deadlock, a full disk), every message is retried alone, so one bad
message never costs the others more than a retry; a message that cannot be stored even
alone gets its ``on_unstored`` reply (e.g. "resend") and nothing of it is kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError, IntegrityError

from gateway.service.orders import (
    InboundMessage,
    OrderService,
    Reply,
    answer_failure,
    audit_rejection,
    rejection_text,
    replayed,
)
from gateway.service.unit_of_work import ConnectionKeeper, UnitOfWork
from gateway.store import audit, inbox

log = logging.getLogger(__name__)

#: How often one message alone is retried when a concurrent copy races it into the inbox.
_ATTEMPTS = 3

# Each message's savepoint is plain SQL: SQLAlchemy's begin_nested() compiles a fresh
# SAVEPOINT clause every time, which cost more than the message's own statements. The
# handlers' own begin_nested() savepoints nest inside it and are always closed before it.
_SAVEPOINT = "SAVEPOINT v2v_inbound"
_ROLLBACK_TO = "ROLLBACK TO SAVEPOINT v2v_inbound"
_RELEASE = "RELEASE SAVEPOINT v2v_inbound"


@dataclass(frozen=True)
class InboundWork:
    """One message with what to do with it, as ``OrderService.process_inbound`` takes it.

    ``handle`` must be safe to run again: a batch that cannot commit is retried per message.
    """

    message: InboundMessage
    handle: Callable[[UnitOfWork], Reply]
    on_error: Callable[[Exception], Reply]
    on_unstored: Callable[[Exception], Reply]


def process_inbound_batch(
    service: OrderService,
    work: Sequence[InboundWork],
    *,
    flush_later: bool = False,
    keeper: ConnectionKeeper | None = None,
    between: Callable[[], None] | None = None,
) -> list[Reply]:
    """The reply for each message, in order, once all of them are committed.

    ``flush_later``: commit without syncing the SQLite log; the caller must not send the
    replies before ``gateway.store.wal_flush`` says the log is on disk. ``keeper``: the
    caller's kept connection (see :class:`ConnectionKeeper`). ``between``: called before
    each message, outside any savepoint (the caller's chance to answer earlier batches);
    it must not touch the database."""
    if not work:
        return []

    def opened() -> UnitOfWork:
        return service.uow(flush_later=flush_later, keeper=keeper)

    try:
        try:
            replies, changed = _commit(service, opened, work, savepoints=False, between=between)
        except _MessageFailed:
            replies, changed = _commit(service, opened, work, savepoints=True, between=between)
    except Exception as exc:
        if len(work) > 1:
            log.warning(
                "a batch of %d inbound messages could not commit (%s); retrying one by one",
                len(work),
                exc,
            )
            return [_alone(service, opened, item) for item in work]
        return [_alone(service, opened, work[0], first_failure=exc)]
    _publish(service, changed)
    return replies


def _alone(
    service: OrderService,
    opened: Callable[[], UnitOfWork],
    item: InboundWork,
    first_failure: Exception | None = None,
) -> Reply:
    failure = first_failure
    for _attempt in range(_ATTEMPTS):
        if failure is None:
            try:
                replies, changed = _commit(service, opened, [item], savepoints=True)
            except Exception as exc:
                failure = exc
            else:
                _publish(service, changed)
                return replies[0]
        if not isinstance(failure, IntegrityError):
            break
        # A concurrent copy of the same message may have committed first; answer as it did.
        stored = service.stored_reply(item.message.key)
        if stored is not None:
            return stored
        failure = None
    log.error(
        "could not store inbound message %s; the sender must resend",
        item.message.key,
        exc_info=failure,
    )
    return item.on_unstored(failure or RuntimeError("could not store the message"))


class _MessageFailed(Exception):
    """A message failed in a batch run without savepoints: run the batch again with them."""


def _commit(
    service: OrderService,
    opened: Callable[[], UnitOfWork],
    work: Sequence[InboundWork],
    *,
    savepoints: bool,
    between: Callable[[], None] | None = None,
) -> tuple[list[Reply], list[str]]:
    replies: list[Reply] = []
    changed: list[str] = []
    rows: list[dict[str, object]] = []
    with opened() as uow:
        conn = uow.conn
        stored = inbox.find_many(conn, {item.message.key for item in work})
        answered: dict[str, Reply] = {}
        with audit.deferred(conn) as chain:
            for item in work:
                if between is not None:
                    between()
                message = item.message
                earlier = answered.get(message.key)
                if earlier is not None:
                    replies.append(_as_duplicate(earlier))
                    continue
                record = stored.get(message.key)
                replay = replayed(record) if record is not None else None
                if replay is not None:
                    replies.append(replay)
                    continue
                if record is not None and record.status == inbox.FAILED:
                    # Before the savepoint: a resend that fails again is stored again.
                    inbox.set_aside(conn, record)
                now = service.clock()
                mark = chain.mark()
                refusals: list[str] = []
                if savepoints:
                    conn.exec_driver_sql(_SAVEPOINT)
                try:
                    reply = item.handle(uow)
                except Exception as exc:
                    if len(work) > 1 and isinstance(exc, DBAPIError):
                        # A deadlock or lock timeout with another gateway is the batch's
                        # problem, not this message's: retry them one by one.
                        raise
                    if not savepoints:
                        raise _MessageFailed from exc
                    conn.exec_driver_sql(_ROLLBACK_TO)
                    conn.exec_driver_sql(_RELEASE)
                    chain.reset(mark)
                    reply = answer_failure(message, exc, item.on_error, refusals)
                else:
                    if savepoints:
                        conn.exec_driver_sql(_RELEASE)
                rows.append(
                    {
                        "message_key": message.key,
                        "channel": message.channel,
                        "sender": message.sender,
                        "received_at": now,
                        "content_type": message.content_type,
                        "body": message.body,
                        "status": reply.status,
                        "error": rejection_text(reply),
                        "order_id": reply.order_id,
                        "response": reply.body,
                        "response_content_type": reply.content_type,
                    }
                )
                if reply.status != "accepted":
                    audit_rejection(conn, message, reply, refusals, at=now)
                elif reply.order_id:
                    changed.append(reply.order_id)
                answered[message.key] = reply
                replies.append(reply)
            # The inbox rows go in before the chain is written, so the audit head stays the
            # last lock this transaction takes.
            inbox.record_many(conn, rows)
        uow.commit()
    return replies, changed


def _as_duplicate(reply: Reply) -> Reply:
    return Reply(reply.status, reply.body, reply.content_type, reply.order_id, duplicate=True)


def _publish(service: OrderService, changed: list[str]) -> None:
    """Tell live listeners, after the commit, as ``process_inbound`` does."""
    if service.listeners:
        for order_id in dict.fromkeys(changed):
            service._notify_id(order_id)
