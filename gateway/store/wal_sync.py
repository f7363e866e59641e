"""The child process behind :class:`gateway.store.wal_flush.WalFlusher`.

    python -m gateway.store.wal_sync DATABASE-wal

Each byte read from stdin asks for one sync of the log; each sync is answered with ``d``
on stdout, or ``e`` and the reason, after which the process ends (a failed sync is never
retried: see ``wal_flush``). End of input ends the process.

The process also checkpoints the database (copies the log into it) in a thread of its own.
A writer that leaves the sync to this process leaves it the checkpoints too: SQLite's
automatic checkpoint runs inside the COMMIT that crosses its threshold, so one commit in a
hundred took 5-170 ms on the writer's event loop, half of all commit time and every long
ACK wait. Here it costs the gateway nothing. It is a PASSIVE checkpoint, which never waits
for and never blocks readers or writers, on a connection with SQLite's FULL sync: the log
is synced before its pages are copied and the database after, as SQLite's own does.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
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
    """Copies the log into the database after commits, at most every ``interval`` seconds."""

    def __init__(self, database: Path, interval: float = CHECKPOINT_INTERVAL) -> None:
        self.database = database
        self.interval = interval
        self.checkpoints = 0
        self._due = threading.Event()
        self._thread = threading.Thread(target=self._run, name="checkpoint", daemon=True)
        self._thread.start()

    def nudge(self) -> None:
        """Something was committed: checkpoint soon."""
        self._due.set()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        while True:
            self._due.wait()
            self._due.clear()
            try:
                if conn is None:
                    conn = sqlite3.connect(self.database, isolation_level=None)
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                self.checkpoints += 1
            except sqlite3.Error as exc:
                # Nothing acknowledged depends on it (the log is synced); the writers'
                # own automatic checkpoint remains as the backstop.
                print(f"wal_sync: checkpoint of {self.database} failed: {exc}", file=sys.stderr)
            time.sleep(self.interval)


def serve(
    syncer: LogSyncer, requests: int, answers: int, checkpointer: Checkpointer | None = None
) -> int:
    while True:
        asked = os.read(requests, 4096)
        if not asked:
            return 0
        try:
            syncer.sync()
        except OSError as exc:
            os.write(answers, f"e{exc}\n".encode())
            return 1
        os.write(answers, b"d")
        if checkpointer is not None:
            checkpointer.nudge()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m gateway.store.wal_sync DATABASE-wal", file=sys.stderr)
        return 2
    wal = Path(argv[1])
    checkpointer = Checkpointer(wal.with_name(wal.name.removesuffix("-wal")))
    return serve(LogSyncer(wal), sys.stdin.fileno(), sys.stdout.fileno(), checkpointer)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
