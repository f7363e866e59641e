"""One database transaction around one use case: state, inbox, audit and outbox together."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Self

from sqlalchemy import Connection, Engine, RootTransaction

from gateway.store.repository import OrderRepository


class UnitOfWork:
    conn: Connection
    orders: OrderRepository

    def __init__(
        self,
        engine: Engine,
        *,
        readonly: bool = False,
        flush_later: bool = False,
        keeper: ConnectionKeeper | None = None,
    ) -> None:
        """``flush_later``: commit without syncing the SQLite log; the caller must wait
        for ``gateway.store.wal_flush`` before it tells anyone the work is stored.
        ``keeper``: run on the keeper's connection where it has one for this thread."""
        self.engine = engine
        self.readonly = readonly
        self.flush_later = flush_later
        self.keeper = keeper
        self._kept: Connection | None = None
        self._tx: RootTransaction | None = None

    def __enter__(self) -> Self:
        self._kept = self.keeper.connection() if self.keeper is not None else None
        self.conn = self._kept if self._kept is not None else self.engine.connect()
        if self.readonly:
            self.conn = self.conn.execution_options(v2v_readonly=True)
        elif self.flush_later:
            self.conn = self.conn.execution_options(v2v_flush_later=True)
        self._tx = self.conn.begin()
        self.orders = OrderRepository(self.conn)
        return self

    def commit(self) -> None:
        assert self._tx is not None
        self._tx.commit()
        self._tx = None

    def rollback(self) -> None:
        if self._tx is not None:
            self._tx.rollback()
            self._tx = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.rollback()
        if self._kept is None:
            self.conn.close()


class ConnectionKeeper:
    """One connection kept open for a writer that runs on one thread (the MLLP listener's
    event loop): a batch then skips the pool's checkout and checkin, which cost about a
    tenth of a small batch's work. Only the first thread to ask gets the connection; any
    other thread is told to use the pool, so sharing a keeper can never share a connection
    between threads. A connection that was invalidated or closed is replaced."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._owner: int | None = None
        self._conn: Connection | None = None

    def connection(self) -> Connection | None:
        me = threading.get_ident()
        if self._owner is None:
            self._owner = me
        elif self._owner != me:
            return None
        conn = self._conn
        if conn is None or conn.closed or conn.invalidated:
            if conn is not None:
                conn.close()
            conn = self._conn = self.engine.connect()
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
