"""Syncing the SQLite log after the commit, off the event loop: an ACK still waits for the
disk, one sync serves every batch that committed meanwhile, a failed sync stops all ACKs,
and a writer's relaxed setting never leaks to the next user of its connection."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import text

from adapters.hl7v2.writer import BatchWriter
from gateway.store import wal_sync
from gateway.store.database import (
    FLUSH_LATER_AUTOCHECKPOINT,
    SQLITE_AUTOCHECKPOINT,
    make_engine,
    wal_flusher,
)
from gateway.store.migrate import upgrade
from gateway.store.wal_flush import FlushFailed, Waiter, WalFlusher
from gateway.store.wal_sync import LogSyncer

_LEVELS = {1: "NORMAL", 2: "FULL"}


@pytest.fixture(autouse=True)
def _full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("V2V_SQLITE_SYNCHRONOUS", raising=False)


# --- the child's side ------------------------------------------------------------------


def _record_syncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    monkeypatch.setattr(wal_sync.os, "fdatasync", lambda fd: calls.append("data"))
    monkeypatch.setattr(wal_sync.os, "fsync", lambda fd: calls.append("directory"))
    return calls


def test_the_log_is_synced_and_a_new_log_file_also_syncs_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _record_syncs(monkeypatch)
    wal = tmp_path / "v2v.db-wal"
    syncer = LogSyncer(wal)
    syncer.sync()
    assert calls == []  # no log yet: every commit is in the database file
    wal.write_bytes(b"frames")
    syncer.sync()
    syncer.sync()
    assert calls == ["data", "directory", "data"]
    wal.unlink()
    replacement = tmp_path / "other"
    replacement.write_bytes(b"a new log")
    holder = replacement.open("rb")  # keeps the old inode number from being reused
    wal.write_bytes(b"new frames")
    syncer.sync()
    holder.close()
    assert calls[3:] == ["data", "directory"]


def _serve_in_thread(
    syncer: LogSyncer, checkpointer: object = None
) -> tuple[int, int, list[int], threading.Thread]:
    requests_read, requests_write = os.pipe()
    answers_read, answers_write = os.pipe()
    result: list[int] = []
    thread = threading.Thread(
        target=lambda: result.append(
            wal_sync.serve(syncer, requests_read, answers_write, checkpointer)  # type: ignore[arg-type]
        )
    )
    thread.start()
    return requests_write, answers_read, result, thread


def test_the_child_answers_each_request_once_synced_and_ends_with_its_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _record_syncs(monkeypatch)
    (tmp_path / "v2v.db-wal").write_bytes(b"frames")
    ask, answers, result, thread = _serve_in_thread(LogSyncer(tmp_path / "v2v.db-wal"))
    os.write(ask, b"s")
    assert os.read(answers, 16) == b"d"
    os.write(ask, b"s")
    assert os.read(answers, 16) == b"d"
    os.close(ask)
    thread.join(5)
    assert result == [0]
    assert calls.count("data") == 2


def test_a_failed_sync_is_reported_and_never_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(wal_sync.os, "fdatasync", broken)
    (tmp_path / "v2v.db-wal").write_bytes(b"frames")
    ask, answers, result, thread = _serve_in_thread(LogSyncer(tmp_path / "v2v.db-wal"))
    os.write(ask, b"s")
    answer = os.read(answers, 256)
    thread.join(5)
    assert answer.startswith(b"e") and b"Input/output error" in answer
    assert result == [1]
    os.close(ask)


class _Checkpoints:
    def __init__(self, failure: str | None = None) -> None:
        self.calls = 0
        self.failure = failure

    def after_sync(self) -> None:
        self.calls += 1


def test_a_checkpoint_follows_a_sync_and_a_failed_one_fails_the_next_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _record_syncs(monkeypatch)
    (tmp_path / "v2v.db-wal").write_bytes(b"frames")
    checkpoints = _Checkpoints()
    ask, answers, result, thread = _serve_in_thread(LogSyncer(tmp_path / "v2v.db-wal"), checkpoints)
    os.write(ask, b"s")
    assert os.read(answers, 16) == b"d"
    deadline = time.monotonic() + 5
    while checkpoints.calls == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert checkpoints.calls == 1
    # The checkpoint's own sync of the log saw an I/O error (and consumed it): no later
    # sync may report the log synced.
    checkpoints.failure = "checkpoint of v2v.db failed: disk I/O error"
    os.write(ask, b"s")
    answer = os.read(answers, 256)
    thread.join(5)
    assert answer.startswith(b"e") and b"disk I/O error" in answer
    assert result == [1] and calls.count("data") == 1
    os.close(ask)


def test_the_sync_process_copies_the_log_into_the_database(tmp_path: Path) -> None:
    # The writer's own automatic checkpoint is off, as for a flush-later writer.
    path = tmp_path / "v2v.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("CREATE TABLE notes (n INTEGER, text TEXT)")
    for n in range(200):
        writer.execute("INSERT INTO notes VALUES (?, ?)", (n, "x" * 1000))
    before = path.stat().st_size
    checkpointer = wal_sync.Checkpointer(path, interval=60)
    checkpointer.after_sync()
    checkpointer.after_sync()  # within the interval: no second checkpoint
    assert checkpointer.checkpoints == 1 and checkpointer.failure is None
    assert path.stat().st_size > before + 200 * 1000  # the rows are in the database file
    writer.close()


def test_only_a_disk_error_in_a_checkpoint_stops_the_syncs(tmp_path: Path) -> None:
    class Failing:
        def __init__(self, code: int) -> None:
            self.code = code

        def execute(self, sql: str) -> None:
            error = sqlite3.OperationalError("simulated")
            error.sqlite_errorcode = self.code  # type: ignore[attr-defined]
            raise error

    busy = wal_sync.Checkpointer(tmp_path / "v2v.db")
    busy._conn = Failing(5)  # type: ignore[assignment]  # SQLITE_BUSY
    busy.after_sync()
    assert busy.failure is None
    disk = wal_sync.Checkpointer(tmp_path / "v2v.db")
    disk._conn = Failing(1034)  # type: ignore[assignment]  # SQLITE_IOERR_FSYNC
    disk.after_sync()
    assert disk.failure and "simulated" in disk.failure


# --- the gateway's side ----------------------------------------------------------------


def _database(tmp_path: Path) -> Path:
    path = tmp_path / "v2v.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE notes (n INTEGER)"))
    engine.dispose()
    return path


def flushed(flusher: WalFlusher) -> asyncio.Future[None]:
    """A future that resolves once every commit made before the call is on disk, or fails
    with :class:`FlushFailed`."""
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def settle(error: FlushFailed | None) -> None:
        if not future.done():
            future.set_result(None) if error is None else future.set_exception(error)

    flusher.when_flushed(settle)
    return future


def test_waiters_that_commit_meanwhile_share_one_sync(tmp_path: Path) -> None:
    flusher = WalFlusher(_database(tmp_path))

    async def main() -> int:
        first = flushed(flusher)
        # Asked while the first sync is in flight: all share the next one.
        later = [flushed(flusher) for _ in range(9)]
        await asyncio.gather(first, *later)
        return flusher.syncs

    try:
        assert asyncio.run(main()) == 2
    finally:
        flusher.close()


def test_a_sync_process_that_dies_is_replaced_and_the_waiter_still_answered(
    tmp_path: Path,
) -> None:
    flusher = WalFlusher(_database(tmp_path))

    async def main() -> None:
        await flushed(flusher)
        assert flusher._child.process is not None
        flusher._child.process.kill()
        flusher._child.process.wait()
        await asyncio.wait_for(flushed(flusher), 10)

    try:
        asyncio.run(main())
        assert flusher.syncs == 2
    finally:
        flusher.close()


def test_poll_answers_a_finished_sync_while_the_loop_is_held(tmp_path: Path) -> None:
    # A group commit holds the loop for a whole batch; the batch before it, already on
    # disk, is answered from inside it rather than after it.
    flusher = WalFlusher(_database(tmp_path))
    told: list[FlushFailed | None] = []

    async def main() -> None:
        flusher.poll()  # nothing asked: nothing to do
        flusher.when_flushed(told.append)
        deadline = time.monotonic() + 10
        while not told and time.monotonic() < deadline:
            flusher.poll()  # never yielding to the loop, whose reader would answer it
            time.sleep(0.001)
        assert told == [None]
        flusher.poll()  # the answer is taken once
        assert told == [None] and flusher.syncs == 1

    try:
        asyncio.run(main())
    finally:
        flusher.close()


def test_poll_off_the_loop_thread_leaves_the_answer_to_the_loop(tmp_path: Path) -> None:
    flusher = WalFlusher(_database(tmp_path))
    called_on: list[str] = []

    def poll_for_a_while() -> None:
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:
            flusher.poll()
            time.sleep(0.005)

    async def main() -> None:
        flusher.when_flushed(lambda _error: called_on.append(threading.current_thread().name))
        other = threading.Thread(target=poll_for_a_while, name="not-the-loop")
        other.start()
        other.join()  # holding the loop: only the other thread could take the answer
        assert called_on == []
        deadline = time.monotonic() + 10
        while not called_on and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert called_on == [threading.current_thread().name]

    try:
        asyncio.run(main())
    finally:
        flusher.close()


def test_poll_never_fails_the_work_that_calls_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    flusher = WalFlusher(Path("unused.db"))
    flusher.poll()  # nothing asked for: not even a look

    def broken() -> None:
        raise RuntimeError("no running event loop")

    monkeypatch.setattr(flusher._child, "poll", broken)
    flusher._asked = [lambda _error: None]
    flusher.poll()
    assert "taking the log sync's answer early failed" in caplog.text


def test_a_batch_answers_the_batch_before_it_but_never_itself(tmp_path: Path) -> None:
    flusher = WalFlusher(_database(tmp_path))
    told: list[str] = []
    seen_mid_batch: list[tuple[bool, bool]] = []
    answers: dict[bytes, asyncio.Future[list[bytes]]] = {}

    def handle(items: Sequence[tuple[bytes, str]]) -> list[list[bytes]]:
        if [payload for payload, _ in items] == [b"two"]:
            # The second batch holds the loop until the first one's sync is answered.
            deadline = time.monotonic() + 10
            while "a" not in told and time.monotonic() < deadline:
                flusher.poll()
                time.sleep(0.001)
            seen_mid_batch.append(("a" in told, answers[b"two"].done()))
        return [[b"ACK " + payload] for payload, _ in items]

    async def main() -> None:
        writer = BatchWriter(handle, flusher=flusher)
        writer.start()
        answers[b"one"] = writer.submit(b"one", "a", lambda: told.append("a"))
        await asyncio.sleep(0)  # the first batch commits and asks for its sync
        assert writer.batches == 1 and not answers[b"one"].done()
        answers[b"two"] = writer.submit(b"two", "b", lambda: told.append("b"))
        assert await asyncio.gather(answers[b"one"], answers[b"two"]) == [
            [b"ACK one"],
            [b"ACK two"],
        ]

    try:
        asyncio.run(main())
    finally:
        flusher.close()
    # Mid-batch: the first sender was answered, the second one's message not yet.
    assert seen_mid_batch == [(True, False)]
    assert told == ["a", "b"]


class _FailingFlusher(WalFlusher):
    def command(self) -> list[str]:
        script = "import os; os.read(0, 1); os.write(1, b'eInput/output error\\n')"
        return [sys.executable, "-c", script]


def test_after_a_failed_sync_nothing_more_is_acknowledged(tmp_path: Path) -> None:
    flusher = _FailingFlusher(_database(tmp_path))

    async def main() -> None:
        with pytest.raises(FlushFailed, match="Input/output error"):
            await flushed(flusher)
        later = flushed(flusher)
        assert later.done()
        with pytest.raises(FlushFailed, match="Input/output error"):
            later.result()

    try:
        asyncio.run(main())
    finally:
        flusher.close()


class _HeldFlusher(WalFlusher):
    """Syncs only when the test says so."""

    def __init__(self) -> None:
        super().__init__(Path("unused.db"))
        self.waiting: list[Waiter] = []

    def when_flushed(self, waiter: Waiter) -> None:
        self.waiting.append(waiter)


def test_the_batch_writer_answers_only_after_the_sync() -> None:
    flusher = _HeldFlusher()

    async def main() -> None:
        writer = BatchWriter(lambda items: [[b"ACK " + p] for p, _ in items], flusher=flusher)
        writer.start()
        answers = [writer.submit(b"one", "a"), writer.submit(b"two", "b")]
        await asyncio.sleep(0.05)
        assert writer.batches == 1  # committed ...
        assert not any(a.done() for a in answers)  # ... but not yet on disk
        flusher.waiting[0](None)
        assert await asyncio.gather(*answers) == [[b"ACK one"], [b"ACK two"]]
        failing = writer.submit(b"three", "c")
        await asyncio.sleep(0.05)
        flusher.waiting[1](FlushFailed("Input/output error"))
        with pytest.raises(FlushFailed):
            await failing

    asyncio.run(main())


def test_the_sender_is_told_in_the_same_callback_that_learns_of_the_sync() -> None:
    # Through a future's done callback the ACK would wait a loop iteration, i.e. behind
    # the next group commit, which is already scheduled when the sync answer arrives.
    flusher = _HeldFlusher()
    told: list[str] = []

    async def main() -> None:
        writer = BatchWriter(lambda items: [[b"ACK " + p] for p, _ in items], flusher=flusher)
        writer.start()
        first_sender = lambda: told.append("a")  # noqa: E731
        writer.submit(b"one", "a", first_sender)
        writer.submit(b"two", "a", first_sender)
        writer.submit(b"three", "b", lambda: told.append("b"))
        await asyncio.sleep(0.05)
        assert told == []
        flusher.waiting[0](None)
        assert sorted(told) == ["a", "b"]  # at once, and once per sender

    asyncio.run(main())


def test_one_connection_failing_to_write_does_not_keep_the_others_waiting() -> None:
    flusher = _HeldFlusher()
    told: list[str] = []

    def broken() -> None:
        raise RuntimeError("transport gone")

    async def main() -> None:
        writer = BatchWriter(lambda items: [[b"ACK " + p] for p, _ in items], flusher=flusher)
        writer.start()
        writer.submit(b"one", "a", broken)
        writer.submit(b"two", "b", lambda: told.append("b"))
        await asyncio.sleep(0.05)
        flusher.waiting[0](None)
        assert told == ["b"]

    asyncio.run(main())


def _autocheckpoint(conn: object) -> int:
    return int(conn.execute(text("PRAGMA wal_autocheckpoint")).scalar_one())  # type: ignore[attr-defined]


def _synchronous(conn: object) -> str:
    return _LEVELS[conn.execute(text("PRAGMA synchronous")).scalar_one()]  # type: ignore[attr-defined]


def test_a_writer_that_flushes_later_commits_normal_and_the_next_user_gets_full_again(
    tmp_path: Path,
) -> None:
    from gateway.service.unit_of_work import UnitOfWork

    engine = make_engine(f"sqlite:///{_database(tmp_path)}", pool_size=1, max_overflow=0)
    try:
        with UnitOfWork(engine, flush_later=True) as uow:
            assert _synchronous(uow.conn) == "NORMAL"
            # Its flusher's process checkpoints; its own checkpoint is only a backstop.
            assert _autocheckpoint(uow.conn) == FLUSH_LATER_AUTOCHECKPOINT
            uow.commit()
        with UnitOfWork(engine) as uow:
            assert _synchronous(uow.conn) == "FULL"
            assert _autocheckpoint(uow.conn) == SQLITE_AUTOCHECKPOINT
        with UnitOfWork(engine, readonly=True) as uow:
            assert _synchronous(uow.conn) == "FULL"
    finally:
        engine.dispose()


def test_a_flusher_only_where_commits_would_otherwise_sync_themselves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "v2v.db"
    flusher = wal_flusher(make_engine(f"sqlite:///{path}"))
    assert flusher is not None and flusher.wal == Path(f"{path.resolve()}-wal")
    assert wal_flusher(make_engine("sqlite://")) is None
    assert wal_flusher(make_engine("postgresql://v2v@127.0.0.1/none")) is None
    monkeypatch.setenv("V2V_SQLITE_SYNCHRONOUS", "NORMAL")
    assert wal_flusher(make_engine(f"sqlite:///{path}")) is None
