"""Whose turn it is to write, among the worker processes sharing one SQLite file.

SQLite lets one writer in at a time, and its busy handler polls with sleeps of up to
100 ms, which left a core idle while requests queued behind it. The group committers of
the worker processes therefore take turns through an ``flock`` on a file beside the
database: giving the turn back wakes the next writer at once. It only orders writers that
use it; SQLite's own locking still keeps every writer correct.

Waiting for the lock blocks, and the committer runs on the event loop. A thread could
wait, but once it has the lock it needs this interpreter's lock to say so, and while the
loop is busy parsing it waits up to the switch interval (5 ms) for it, with the database
turn it was given going unused. The wait is therefore left to a small child process
(``python -m adapters.fhir.write_turn FD``) that shares the lock file's open file
description: an ``flock`` belongs to the description, not to the process, so the lock the
child takes is ours, and the loop hears of it through a pipe it watches. The loop gives
the turn back itself.

If this process dies, the child reads the end of its input and exits, and with the last
descriptor gone the lock is released. If the child dies, another is started and asked
again (should the dead one have taken the lock first, taking it again on the same
description succeeds at once).
"""

from __future__ import annotations

import fcntl
import logging
import os
import sys
from collections.abc import Callable

from gateway.store.piped_child import PipedChild

log = logging.getLogger(__name__)


class WriteTurn:
    """The turn of the writers on one event loop; ``path`` None (PostgreSQL, an in-memory
    database) means there is nobody to take turns with."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._fd: int | None = None
        self._child = PipedChild(
            "write-turn",
            lambda: [sys.executable, "-m", "adapters.fhir.write_turn", str(self._descriptor())],
            lambda _answer: self._taken(),
            self._lost,
            pass_fds=lambda: (self._descriptor(),),
        )
        self._then: Callable[[], None] | None = None

    def try_take(self) -> bool:
        """Take the turn if it is free now."""
        if self.path is None:
            return True
        try:
            fcntl.flock(self._descriptor(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def wait(self, then: Callable[[], None]) -> None:
        """Call ``then`` on the running loop once the turn is ours (one wait at a time)."""
        self._then = then
        try:
            self._child.ask(b"w")
        except OSError as exc:
            # Correct, only slower: the loop waits for the lock itself.
            log.warning("no write-turn process (%s); waiting on the event loop", exc)
            fcntl.flock(self._descriptor(), fcntl.LOCK_EX)
            self._taken()

    def give_back(self) -> None:
        if self.path is not None and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        # Killed, not asked to finish: it may be blocked waiting for the lock.
        self._child.stop()
        if self._fd is not None:
            os.close(self._fd)  # and with it the lock, if it was held
            self._fd = None

    def _descriptor(self) -> int:
        if self._fd is None:
            assert self.path is not None
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return self._fd

    def _taken(self) -> None:
        then, self._then = self._then, None
        if then is not None:
            then()

    def _lost(self) -> None:
        # The child died waiting: ask a new one (if the dead one had taken the lock,
        # taking it again on the same description succeeds at once).
        if self._then is not None:
            self.wait(self._then)


def serve(descriptor: int, requests: int, answers: int) -> int:
    """The child: each byte read asks for the lock; ``t`` answers once it is taken."""
    while True:
        if not os.read(requests, 64):
            return 0
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        try:
            os.write(answers, b"t")
        except BrokenPipeError:
            return 0  # the gateway process is gone; exiting gives the turn back


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].isdigit():
        print("usage: python -m adapters.fhir.write_turn FD", file=sys.stderr)
        return 2
    return serve(int(argv[1]), sys.stdin.fileno(), sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main(sys.argv))
