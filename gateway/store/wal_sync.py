"""The child process behind :class:`gateway.store.wal_flush.WalFlusher`.

    python -m gateway.store.wal_sync DATABASE-wal

Each byte read from stdin asks for one sync of the log; each sync is answered with ``d``
on stdout, or ``e`` and the reason, after which the process ends (a failed sync is never
retried: see ``wal_flush``). End of input ends the process.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


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


def serve(syncer: LogSyncer, requests: int, answers: int) -> int:
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


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m gateway.store.wal_sync DATABASE-wal", file=sys.stderr)
        return 2
    return serve(LogSyncer(Path(argv[1])), sys.stdin.fileno(), sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main(sys.argv))
