"""Group commit for inbound FHIR messages: one writer thread per service and process.

Request threads parse and check their bundle, then hand it here and wait. Whenever the
writer is free it takes everything queued and commits it in one transaction
(:func:`~gateway.service.inbound_batch.process_inbound_batch`): each bundle still has its
own savepoint, its own stored raw message and reply, and its effects commit with it or not
at all; only the transaction, its write lock and the audit chain's head are shared. A reply
is handed back only after that commit, so nothing is acknowledged before it is stored.

While one batch commits the next one queues, so batches grow with the load: one bundle
when idle, many under pressure. One writer per process also means SQLite sees one writer
per process instead of request threads polling for its write lock; and on a SQLite file the
writers of several worker processes take turns through a lock file beside the database
(:class:`WriteTurn`), because SQLite's own busy handler polls with sleeps of up to 100 ms,
which left a core idle while requests queued behind it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future

from gateway.service.inbound_batch import InboundWork, process_inbound_batch
from gateway.service.orders import OrderService, Reply
from gateway.store.database import is_sqlite

log = logging.getLogger(__name__)

MAX_BATCH = 64
#: How long an idle writer thread waits for work before it ends (the next submit starts it).
IDLE_SECONDS = 2.0

_Item = tuple[InboundWork, "Future[Reply]"]


class GroupCommitter:
    """One per application (the API keeps it in ``app.state``) and so per process."""

    def __init__(
        self, service: OrderService, *, max_batch: int = MAX_BATCH, idle: float = IDLE_SECONDS
    ) -> None:
        self.service = service
        self.turn = WriteTurn.for_service(service)
        self.max_batch = max_batch
        self.idle = idle
        self._queue: deque[_Item] = deque()
        self._wake = threading.Condition()
        self._running = False
        self.batches = 0
        self.messages = 0

    def submit(self, work: InboundWork) -> Future[Reply]:
        """The message's reply, resolved once it and its effects are committed."""
        future: Future[Reply] = Future()
        with self._wake:
            self._queue.append((work, future))
            if self._running:
                self._wake.notify()
            else:
                self._running = True
                threading.Thread(target=self._run, name="fhir-writer", daemon=True).start()
        return future

    def _run(self) -> None:
        while True:
            with self._wake:
                if not self._queue:
                    self._wake.wait(self.idle)
                if not self._queue:
                    self._running = False
                    return
                count = min(len(self._queue), self.max_batch)
                batch = [self._queue.popleft() for _ in range(count)]
            self._commit(batch)

    def _commit(self, batch: list[_Item]) -> None:
        try:
            with self.turn.taken():
                replies = process_inbound_batch(self.service, [work for work, _ in batch])
        except BaseException as exc:
            # process_inbound_batch answers every message itself, even unstorable ones;
            # reaching here is a bug, and the waiting requests must hear of it.
            log.exception("group commit of %d FHIR messages failed", len(batch))
            for _, future in batch:
                future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        self.batches += 1
        self.messages += len(batch)
        for (_, future), reply in zip(batch, replies, strict=True):
            future.set_result(reply)


class WriteTurn:
    """Whose turn it is to write, among the processes sharing one SQLite file: a blocking
    ``flock`` wakes the next writer the moment the last one is done. It only orders writers
    that use it; SQLite's own locking still keeps every writer correct."""

    def __init__(self, path: str | None) -> None:
        self.path = path

    @classmethod
    def for_service(cls, service: OrderService) -> WriteTurn:
        database = service.engine.url.database
        if not is_sqlite(service.engine) or database in (None, "", ":memory:"):
            return cls(None)
        return cls(f"{database}-writers.lock")

    @contextlib.contextmanager
    def taken(self) -> Iterator[None]:
        if self.path is None:
            yield
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # and with it the lock
