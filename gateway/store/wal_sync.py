"""The child process behind :class:`gateway.store.wal_flush.WalFlusher`.

    python -m gateway.store.wal_sync DATABASE-wal

Each byte read from stdin asks for one sync of the log; each sync is answered with ``d``
on stdout, or ``e`` and the reason, after which the process ends (a failed sync is never
retried: see ``wal_flush``). End of input ends the process.

The process also checkpoints the database (copies the log into it), after a sync is
answered and at most every ``CHECKPOINT_INTERVAL``. A writer that leaves the sync to this
process leaves it the checkpoints too: SQLite's automatic checkpoint runs inside the COMMIT
that crosses its threshold, so one commit in a hundred took 5-170 ms on the writer's event
loop, half of all commit time and every long ACK wait. Here it costs the gateway nothing.
It is a PASSIVE checkpoint, which never waits for and never blocks readers or writers, on a
connection with SQLite's FULL sync: the log is synced before its pages are copied and the
database after, as SQLite's own does.

Checkpoints and syncs take turns in this one thread. The checkpoint syncs the log through
its own descriptor, and Linux reports a failed write-back once: a checkpoint that saw the
error while a sync reopened the log afterwards would let that sync succeed over pages that
never reached the disk. So an I/O error in a checkpoint fails the next sync, as a failed
sync does, and nothing more is acknowledged.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from pathlib import Path

#: Seconds between checkpoints while commits go on (each copies what committed meanwhile).
CHECKPOINT_INTERVAL = 0.2


class LogSyncer:
    """Syncs a SQLite log file, and its directory whenever the file is a new one."""

    def __init__(self, wal: Path) -> None:
        self.wal = wal
        self._synced_inode: int | None = None

    def sync(self) -> None:
        try:
            descriptor = os.open(self.wal, os.O_RDONLY)
        except FileNotFoundError:
            # No log: every commit is in the database file, which the checkpoint that
            # removed the log synced.
            return
        try:
            inode = os.fstat(descriptor).st_ino
            os.fdatasync(descriptor)
        finally:
            os.close(descriptor)
        if inode != self._synced_inode:
            # A new log file: its directory entry must survive a power cut too.
            directory = os.open(self.wal.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
            self._synced_inode = inode


class Checkpointer:
    """Copies the log into the database, at most every ``interval`` seconds."""

    def __init__(self, database: Path, interval: float = CHECKPOINT_INTERVAL) -> None:
        self.database = database
        self.interval = interval
        self.checkpoints = 0
        self.failure: str | None = None  # an I/O error: no sync may succeed after it
        self._conn: sqlite3.Connection | None = None
        self._last = float("-inf")

    def after_sync(self) -> None:
        """Checkpoint if the last one is ``interval`` old."""
        now = time.monotonic()
        if now - self._last < self.interval:
            return
        self._last = now
        try:
            if self._conn is None:
                self._conn = sqlite3.connect(self.database, isolation_level=None)
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.checkpoints += 1
        except sqlite3.Error as exc:
            code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
            if code in _FATAL:
                self.failure = f"checkpoint of {self.database} failed: {exc}"
            # Anything else (the database busy, say) costs only this checkpoint; the
            # writers' own automatic checkpoint remains as the backstop.
            print(f"wal_sync: checkpoint of {self.database} failed: {exc}", file=sys.stderr)


#: SQLite primary result codes that mean the disk failed us: IOERR, CORRUPT, FULL.
_FATAL = {10, 11, 13}


def serve(
    syncer: LogSyncer, requests: int, answers: int, checkpointer: Checkpointer | None = None
) -> int:
    while True:
        asked = os.read(requests, 4096)
        if not asked:
            return 0
        try:
            if checkpointer is not None and checkpointer.failure:
                raise OSError(checkpointer.failure)
            syncer.sync()
        except OSError as exc:
            os.write(answers, f"e{exc}\n".encode())
            return 1
        os.write(answers, b"d")
        if checkpointer is not None:
            checkpointer.after_sync()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m gateway.store.wal_sync DATABASE-wal", file=sys.stderr)
        return 2
    wal = Path(argv[1])
    checkpointer = Checkpointer(wal.with_name(wal.name.removesuffix("-wal")))
    return serve(LogSyncer(wal), sys.stdin.fileno(), sys.stdout.fileno(), checkpointer)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
