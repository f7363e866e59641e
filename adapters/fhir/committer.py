"""Group commit for inbound FHIR messages, on the event loop that receives them.

Requests parse and check their bundle, then hand it here and await the reply. Once the
event loop has run every callback that was ready (so concurrent requests have queued), the
committer takes what is queued and commits it in one transaction
(:func:`~gateway.service.inbound_batch.process_inbound_batch`): each bundle still has its
own stored raw message and reply, and its effects commit with it or not at all; only the
transaction, its write lock and the audit chain's head are shared. A reply is handed back
only after that commit, so nothing is acknowledged before it is stored.

The batch runs on the event loop itself, not in a writer thread: with two Python threads,
every database call released the interpreter lock to the other thread and then waited up
to a switch interval to get it back, while the SQLite write lock was held. While one batch
commits, new requests wait in their sockets, so batches grow with the load.

On a SQLite file the worker processes take turns to write (:mod:`adapters.fhir.write_turn`);
while this process waits for its turn, the loop keeps reading and parsing requests, which
join the batch that runs once the turn has come. With ``flush_later`` (``v2v serve`` on
SQLite with ``synchronous=FULL``) a batch commits without syncing the log, gives the turn
back at once, and its replies wait for a :class:`~gateway.store.wal_flush.WalFlusher` to
sync the log: the disk works while the other process writes and this one parses.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque

from adapters.fhir.write_turn import WriteTurn
from gateway.service.inbound_batch import InboundWork, process_inbound_batch
from gateway.service.orders import OrderService, Reply
from gateway.service.unit_of_work import ConnectionKeeper
from gateway.store.database import is_sqlite, wal_flusher
from gateway.store.wal_flush import WalFlusher, answer_when_synced

log = logging.getLogger(__name__)

MAX_BATCH = 64

_Item = tuple[InboundWork, "asyncio.Future[Reply]"]


class _Lane:
    """The queue, write turn and log flusher of one event loop (``v2v serve`` runs one per
    process; test clients may run several)."""

    def __init__(
        self, turn: WriteTurn, flusher: WalFlusher | None, keeper: ConnectionKeeper | None
    ) -> None:
        self.queue: deque[_Item] = deque()
        self.busy = False  # a batch is waiting for its turn or running
        self.turn = turn
        self.keeper = keeper
        self.flusher = flusher
        self.looked_at = -1  # the queue's length when the committer last looked at it


class GroupCommitter:
    """One per application (the API keeps it in ``app.state``) and so per process.

    ``flush_later``: commit without syncing the SQLite log and answer once a flusher has
    synced it (only where :func:`~gateway.store.database.wal_flusher` gives one), and keep
    one database connection for the loop's batches; for a long-lived event loop, since
    each loop gets a flusher process and a connection of its own."""

    def __init__(
        self, service: OrderService, *, max_batch: int = MAX_BATCH, flush_later: bool = False
    ) -> None:
        self.service = service
        self.max_batch = max_batch
        self.flush_later = flush_later
        self._lock_path = _lock_path(service)
        self._lanes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Lane] = (
            weakref.WeakKeyDictionary()
        )
        self.batches = 0
        self.messages = 0

    def submit(self, work: InboundWork) -> asyncio.Future[Reply]:
        """The message's reply (a future of the running loop), resolved once the message
        and its effects are committed (and synced)."""
        loop = asyncio.get_running_loop()
        lane = self._lanes.get(loop)
        if lane is None:
            flusher = wal_flusher(self.service.engine) if self.flush_later else None
            # A long-lived loop keeps one connection for its batches; short-lived ones (test
            # clients) use the pool, so a lane that is dropped holds no connection.
            keeper = ConnectionKeeper(self.service.engine) if self.flush_later else None
            lane = self._lanes[loop] = _Lane(WriteTurn(self._lock_path), flusher, keeper)
        future: asyncio.Future[Reply] = loop.create_future()
        lane.queue.append((work, future))
        if not lane.busy:
            lane.busy = True
            # After the callbacks already due, i.e. after every request that was ready has
            # been read: that is what lets concurrent requests share a commit.
            loop.call_soon(self._take_turn, lane)
        return future

    def close(self) -> None:
        """Stop the helper processes (call once nothing waits any more)."""
        for lane in list(self._lanes.values()):
            lane.turn.close()
            if lane.flusher is not None:
                lane.flusher.close()
            if lane.keeper is not None:
                lane.keeper.close()
        self._lanes.clear()

    def _take_turn(self, lane: _Lane) -> None:
        queued = len(lane.queue)
        if queued != lane.looked_at and queued < self.max_batch:
            # Requests still arriving: one more pass of the loop, which reads and parses
            # what the sockets have, then look again. A batch waits for the queue to stop
            # growing because each commit costs as much as a few bundles' own writes; in
            # the benchmark, batches of 1 to 14 became mostly batches of every connection
            # the process has.
            lane.looked_at = queued
            asyncio.get_running_loop().call_soon(self._take_turn, lane)
            return
        lane.looked_at = -1
        if lane.turn.try_take():
            self._write(lane)
        else:
            lane.turn.wait(lambda: self._write(lane))

    def _write(self, lane: _Lane) -> None:
        count = min(len(lane.queue), self.max_batch)
        batch = [lane.queue.popleft() for _ in range(count)]
        try:
            replies = process_inbound_batch(
                self.service,
                [work for work, _ in batch],
                flush_later=lane.flusher is not None,
                keeper=lane.keeper,
            )
        except Exception as exc:
            # process_inbound_batch answers every message itself, even unstorable ones;
            # reaching here is a bug, and the waiting requests must hear of it.
            log.exception("group commit of %d FHIR messages failed", len(batch))
            lane.turn.give_back()
            self._next(lane)
            _fail(batch, exc)
            return
        lane.turn.give_back()
        self.batches += 1
        self.messages += len(batch)
        self._next(lane)
        answer_when_synced(lane.flusher, [future for _, future in batch], replies)

    def _next(self, lane: _Lane) -> None:
        if lane.queue:
            asyncio.get_running_loop().call_soon(self._take_turn, lane)
        else:
            lane.busy = False


def _fail(batch: list[_Item], error: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(error)


def _lock_path(service: OrderService) -> str | None:
    database = service.engine.url.database
    if not is_sqlite(service.engine) or database in (None, "", ":memory:"):
        return None
    return f"{database}-writers.lock"
