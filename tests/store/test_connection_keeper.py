"""A writer on one thread keeps one connection across its transactions, and a kept
connection is never handed to a second thread."""

from __future__ import annotations

import threading

from sqlalchemy import Engine, text

from gateway.service.unit_of_work import ConnectionKeeper, UnitOfWork


def _write(engine: Engine, keeper: ConnectionKeeper, value: int) -> object:
    with UnitOfWork(engine, keeper=keeper) as uow:
        uow.conn.execute(text("CREATE TABLE IF NOT EXISTS kept (n INTEGER)"))
        uow.conn.execute(text("INSERT INTO kept VALUES (:n)"), {"n": value})
        uow.commit()
        return uow.conn.connection.dbapi_connection


def test_one_thread_keeps_one_connection_and_its_work_commits(sqlite_engine: Engine) -> None:
    keeper = ConnectionKeeper(sqlite_engine)
    first = _write(sqlite_engine, keeper, 1)
    second = _write(sqlite_engine, keeper, 2)
    assert first is second
    assert sqlite_engine.pool.checkedout() == 1  # kept, not given back between batches
    with sqlite_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM kept")).scalar_one() == 2
    keeper.close()
    assert sqlite_engine.pool.checkedout() == 0


def test_a_second_thread_uses_the_pool_instead(sqlite_engine: Engine) -> None:
    keeper = ConnectionKeeper(sqlite_engine)
    assert keeper.connection() is not None
    elsewhere: list[object] = []
    thread = threading.Thread(target=lambda: elsewhere.append(keeper.connection()))
    thread.start()
    thread.join()
    assert elsewhere == [None]
    keeper.close()


def test_a_failed_transaction_leaves_the_kept_connection_usable(sqlite_engine: Engine) -> None:
    keeper = ConnectionKeeper(sqlite_engine)
    try:
        with UnitOfWork(sqlite_engine, keeper=keeper) as uow:
            uow.conn.execute(text("SELECT * FROM no_such_table"))
    except Exception:
        pass
    assert _write(sqlite_engine, keeper, 3) is not None
    keeper.close()


def test_an_invalidated_connection_is_replaced(sqlite_engine: Engine) -> None:
    keeper = ConnectionKeeper(sqlite_engine)
    lost = keeper.connection()
    assert lost is not None
    lost.invalidate()
    replacement = keeper.connection()
    assert replacement is not None and replacement is not lost
    assert not replacement.invalidated
    keeper.close()
