"""Durability for SQLite group commits, off the writer's critical path.

With ``synchronous=FULL`` SQLite syncs the write-ahead log inside every COMMIT, while it
still holds the write lock: the next batch cannot start until the disk has answered, and
the thread that committed (for the MLLP listener, its event loop) waits idle meanwhile.

A :class:`WalFlusher` lets a writer commit with ``synchronous=NORMAL`` (the frames are
written to the log, not yet synced, and the lock is released at once) and then ask for the
log to be synced. Acknowledgements wait for that, so an ACK still means "on disk"; what
changes is that the next batch is parsed, mapped and committed while the disk works. One
sync is in flight at a time, and it covers every commit made before it was asked for, so
the batches that commit meanwhile share the next one.

The sync runs in a small child process (``python -m gateway.store.wal_sync``), not a
thread: a thread would need this interpreter's lock after every sync, and while the event
loop is busy it waits up to the switch interval (5 ms) for it, which is longer than the
sync itself. The loop talks to the child through pipes, one byte each way per sync.

Why another process's sync covers SQLite's writes: ``fdatasync`` flushes the file's
(inode's) dirty pages, whichever descriptor or process wrote them. The child opens the log
by path on every sync, so a log that SQLite deleted and created again is the one synced.
Checkpoints under NORMAL sync the log before copying it into the database and sync the
database afterwards, so nothing acknowledged depends on a page that was never synced.
Readers may see a commit a moment before its sync; the outbox relay is still safe, because
claiming work is itself a commit with the connection's own FULL sync, which syncs the
whole log before anything claimed is sent.

A failed sync is not retried: after an I/O error the kernel may have dropped the dirty
pages, and a later sync that succeeds proves nothing. Every waiter then fails, present and
future, so nothing more is acknowledged until the gateway is restarted (the stance
PostgreSQL takes on fsync failure); senders resend. A child that dies is replaced and the
sync asked for again.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from gateway.store.piped_child import PipedChild

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Called with None once the log is synced, or with the failure.
Waiter = Callable[["FlushFailed | None"], None]


class FlushFailed(OSError):
    """The log could not be synced: nothing may be acknowledged."""


class WalFlusher:
    """Syncs one SQLite database's write-ahead log for waiters on one event loop."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self.wal = Path(f"{database}-wal")
        self.syncs = 0
        self._child = PipedChild("log sync", self.command, self._answered, self._lost)
        self._asked: list[Waiter] = []  # covered by the sync in flight
        self._next: list[Waiter] = []  # committed after it was asked for
        self._failure: str | None = None

    def when_flushed(self, waiter: Waiter) -> None:
        """Call ``waiter`` with None once every commit made before this call is on disk,
        or with the :class:`FlushFailed`. It is called from the loop callback that learns
        of the sync, not through a future: each future callback waits a loop iteration,
        and an iteration may be a whole group commit, which ACKs must not wait behind."""
        self._child.bind()
        if self._failure is not None:
            waiter(FlushFailed(self._failure))
            return
        self._next.append(waiter)
        if not self._asked:
            self._ask()

    def poll(self) -> None:
        """Call the waiters of a sync that has finished, now. The loop would call them only
        once its current callback returns, and a group commit's callback is a whole batch:
        its senders' next messages would miss the batch after it too, so batches stay a
        third of the senders, where answering mid-batch lets them reach half. Call it from
        the loop's thread, between two pieces of work that hold it; elsewhere it does
        nothing. It never raises: the caller's work must not fail for it, and whatever went
        wrong is met again when the loop reads the answer itself."""
        if not self._asked:
            return
        try:
            self._child.poll()
        except Exception:
            log.exception("taking the log sync's answer early failed; the loop will take it")

    def close(self) -> None:
        """Stop the child; call once nothing waits any more (or from the loop's thread)."""
        self._child.stop(grace=5)
        waiting, self._asked, self._next = self._asked + self._next, [], []
        _call(waiting, FlushFailed("the flusher was closed before the log was synced"))

    def command(self) -> list[str]:
        """The child's command line (tests replace it to make a sync fail)."""
        return [sys.executable, "-m", "gateway.store.wal_sync", str(self.wal)]

    def _ask(self) -> None:
        self._asked, self._next = self._next, []
        try:
            self._child.ask(b"s")
        except OSError as exc:
            self._fail(f"could not ask for a sync of {self.wal}: {exc}")

    def _answered(self, data: bytes) -> None:
        if data.startswith(b"e"):
            self._fail(data[1:].decode(errors="replace").strip())
            return
        self.syncs += 1
        done, self._asked = self._asked, []
        if self._next:
            self._ask()  # before the waiters run: the next sync starts at once
        _call(done, None)

    def _lost(self) -> None:
        # The child died with a sync asked for: ask the next one for it.
        if self._asked:
            self._next = self._asked + self._next
            self._ask()

    def _fail(self, reason: str) -> None:
        if self._failure is None:
            log.critical(
                "syncing %s failed (%s); nothing more will be acknowledged until the "
                "gateway is restarted",
                self.wal,
                reason,
            )
            self._failure = reason
        waiting, self._asked, self._next = self._asked + self._next, [], []
        _call(waiting, FlushFailed(reason))


def _call(waiters: list[Waiter], error: FlushFailed | None) -> None:
    for waiter in waiters:
        try:
            waiter(error)
        except Exception:
            log.exception("a log sync waiter failed")


def answer_when_synced(
    flusher: WalFlusher | None,
    futures: Sequence[asyncio.Future[T]],
    answers: Sequence[T],
    then: Callable[[], None] | None = None,
) -> None:
    """Resolve each future with its answer once everything committed so far is on disk
    (at once without a flusher), then call ``then``. If the sync fails they fail with
    :class:`FlushFailed`: not known to be stored, so not acknowledged; the senders resend,
    and a message that was stored after all gets its stored answer then."""

    def settle(error: BaseException | None) -> None:
        for future, answer in zip(futures, answers, strict=True):
            if future.done():
                continue
            if error is None:
                future.set_result(answer)
            else:
                future.set_exception(error)
        if then is not None:
            then()

    if flusher is None:
        settle(None)
    else:
        flusher.when_flushed(settle)
