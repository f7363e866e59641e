"""One database transaction around one use case: state, inbox, audit and outbox together."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy import Connection, Engine, RootTransaction

from gateway.store.repository import OrderRepository


class UnitOfWork:
    conn: Connection
    orders: OrderRepository

    def __init__(
        self, engine: Engine, *, readonly: bool = False, flush_later: bool = False
    ) -> None:
        """``flush_later``: commit without syncing the SQLite log; the caller must wait
        for ``gateway.store.wal_flush`` before it tells anyone the work is stored."""
        self.engine = engine
        self.readonly = readonly
        self.flush_later = flush_later
        self._tx: RootTransaction | None = None

    def __enter__(self) -> Self:
        self.conn = self.engine.connect()
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
        self.conn.close()
