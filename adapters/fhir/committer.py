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

On a SQLite file, the worker processes take turns through a lock file beside the database
(:class:`WriteTurn`), because SQLite's own busy handler polls with sleeps of up to 100 ms.
Waiting for that turn blocks, so it is done by a helper thread, which holds no Python
while it waits: meanwhile the loop keeps reading and parsing requests, which then join the
batch that runs once the turn has come.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import weakref
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from gateway.service.inbound_batch import InboundWork, process_inbound_batch
from gateway.service.orders import OrderService, Reply
from gateway.store.database import is_sqlite

log = logging.getLogger(__name__)

MAX_BATCH = 64

_Item = tuple[InboundWork, "asyncio.Future[Reply]"]


class _Lane:
    """The queue of one event loop (an application normally runs on one)."""

    def __init__(self) -> None:
        self.queue: deque[_Item] = deque()
        self.busy = False  # a batch is waiting for its turn or running


class GroupCommitter:
    """One per application (the API keeps it in ``app.state``) and so per process."""

    def __init__(self, service: OrderService, *, max_batch: int = MAX_BATCH) -> None:
        self.service = service
        self.turn = WriteTurn.for_service(service)
        self.max_batch = max_batch
        self._lanes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Lane] = (
            weakref.WeakKeyDictionary()
        )
        self._waiter: ThreadPoolExecutor | None = None
        self.batches = 0
        self.messages = 0

    def submit(self, work: InboundWork) -> asyncio.Future[Reply]:
        """The message's reply (a future of the running loop), resolved once the message
        and its effects are committed."""
        loop = asyncio.get_running_loop()
        lane = self._lanes.get(loop)
        if lane is None:
            lane = self._lanes[loop] = _Lane()
        future: asyncio.Future[Reply] = loop.create_future()
        lane.queue.append((work, future))
        if not lane.busy:
            lane.busy = True
            # After the callbacks already due, i.e. after every request that was ready has
            # been read: that is what lets concurrent requests share a commit.
            loop.call_soon(self._take_turn, loop, lane)
        return future

    def _take_turn(self, loop: asyncio.AbstractEventLoop, lane: _Lane) -> None:
        if self.turn.path is None:
            self._write(loop, lane, None)
            return
        held = self.turn.try_take()
        if held is not None:
            self._write(loop, lane, held)
            return
        if self._waiter is None:
            self._waiter = ThreadPoolExecutor(1, thread_name_prefix="fhir-write-turn")
        waiting = loop.run_in_executor(self._waiter, self.turn.take)
        waiting.add_done_callback(lambda taken: self._taken(loop, lane, taken))

    def _taken(
        self, loop: asyncio.AbstractEventLoop, lane: _Lane, taken: asyncio.Future[int | None]
    ) -> None:
        error = taken.exception()
        if error is not None:
            log.error("could not take the write turn: %s", error)
            lane.busy = False
            self._fail(lane, error)
            return
        self._write(loop, lane, taken.result())

    def _write(self, loop: asyncio.AbstractEventLoop, lane: _Lane, held: int | None) -> None:
        count = min(len(lane.queue), self.max_batch)
        batch = [lane.queue.popleft() for _ in range(count)]
        try:
            replies = process_inbound_batch(self.service, [work for work, _ in batch])
        except Exception as exc:
            # process_inbound_batch answers every message itself, even unstorable ones;
            # reaching here is a bug, and the waiting requests must hear of it.
            log.exception("group commit of %d FHIR messages failed", len(batch))
            self.turn.give_back(held)
            self._next(loop, lane)
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        self.turn.give_back(held)
        self.batches += 1
        self.messages += len(batch)
        self._next(loop, lane)
        for (_, future), reply in zip(batch, replies, strict=True):
            if not future.done():
                future.set_result(reply)

    def _next(self, loop: asyncio.AbstractEventLoop, lane: _Lane) -> None:
        if lane.queue:
            loop.call_soon(self._take_turn, loop, lane)
        else:
            lane.busy = False

    @staticmethod
    def _fail(lane: _Lane, error: BaseException) -> None:
        while lane.queue:
            _, future = lane.queue.popleft()
            if not future.done():
                future.set_exception(error)


class WriteTurn:
    """Whose turn it is to write, among the processes sharing one SQLite file: a blocking
    ``flock`` wakes the next writer the moment the last one is done. It only orders writers
    that use it; SQLite's own locking still keeps every writer correct.

    A taken turn is an open descriptor of the lock file (None when there is no file to
    lock); closing it gives the turn back."""

    def __init__(self, path: str | None) -> None:
        self.path = path

    @classmethod
    def for_service(cls, service: OrderService) -> WriteTurn:
        database = service.engine.url.database
        if not is_sqlite(service.engine) or database in (None, "", ":memory:"):
            return cls(None)
        return cls(f"{database}-writers.lock")

    def try_take(self) -> int | None:
        """The turn if it is free now, else None (only for a turn with a lock file)."""
        assert self.path is not None
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return fd

    def take(self) -> int | None:
        """The turn, once the writer before has given it back."""
        if self.path is None:
            return None
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        return fd

    @staticmethod
    def give_back(held: int | None) -> None:
        if held is not None:
            os.close(held)  # and with it the lock
