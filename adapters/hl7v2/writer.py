"""The single writer behind the MLLP listener: group commit.

Connections hand their messages to one writer thread. Whenever it is free it takes
everything queued (up to ``max_batch``), lets the batch handler process and commit the lot
in one transaction, and only then resolves the connections' futures, so every ACK still
leaves after its message is committed. While one batch commits the next one queues, so the
batch size follows the load: one message when idle, many under pressure, and a commit (and
its write lock and, with ``synchronous=FULL``, its fsync) is shared by all of them.

One writer also means the database sees one writer: no threads queueing on SQLite's write
lock, and the FIFO queue keeps each connection's messages in the order they arrived.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)

BatchHandler = Callable[[Sequence[tuple[bytes, str]]], list[list[bytes]]]

_Item = tuple[bytes, str, "asyncio.Future[list[bytes]]", asyncio.AbstractEventLoop]
_Waiter = tuple["asyncio.Future[list[bytes]]", int]

DEFAULT_MAX_BATCH = 200


class BatchWriter:
    """A writer thread that processes queued messages in batches."""

    def __init__(self, handle_batch: BatchHandler, *, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.handle_batch = handle_batch
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.messages = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mllp-writer", daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Finish what is queued, then end the thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def submit(self, payload: bytes, peer: str) -> asyncio.Future[list[bytes]]:
        """Queue one message; the future resolves to its reply frames once committed."""
        if self._thread is None:
            raise RuntimeError("the writer is not running")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[bytes]] = loop.create_future()
        self._queue.put((payload, peer, future, loop))
        return future

    @property
    def mean_batch(self) -> float:
        return self.messages / self.batches if self.batches else 0.0

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._process(batch)

    def _process(self, batch: list[_Item]) -> None:
        answers: list[list[bytes]] | BaseException
        try:
            replies = self.handle_batch([(payload, peer) for payload, peer, _, _ in batch])
            if len(replies) != len(batch):
                raise RuntimeError(f"{len(replies)} answers for {len(batch)} messages")
            answers = replies
        except Exception as exc:
            # The handler answers every message itself, even unstorable ones; reaching here
            # is a bug, and the connections must hear of it rather than wait forever.
            log.exception("the MLLP batch handler failed on %d messages", len(batch))
            answers = exc
        self.batches += 1
        self.messages += len(batch)
        by_loop: dict[asyncio.AbstractEventLoop, list[_Waiter]] = {}
        for index, (_, _, future, loop) in enumerate(batch):
            by_loop.setdefault(loop, []).append((future, index))
        for loop, futures in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, futures, answers)
            except RuntimeError:
                log.warning("an MLLP connection's event loop closed before its ACK was ready")


def _resolve(futures: list[_Waiter], answers: list[list[bytes]] | BaseException) -> None:
    for future, index in futures:
        if future.done():
            continue
        if isinstance(answers, BaseException):
            future.set_exception(answers)
        else:
            future.set_result(answers[index])
