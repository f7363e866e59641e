"""One database transaction around one use case: state, inbox, audit and outbox together."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy import Connection, Engine, RootTransaction

from gateway.store.repository import OrderRepository


class UnitOfWork:
    conn: Connection
    orders: OrderRepository

    def __init__(self, engine: Engine, *, readonly: bool = False) -> None:
        self.engine = engine
        self.readonly = readonly
        self._tx: RootTransaction | None = None

    def __enter__(self) -> Self:
        self.conn = self.engine.connect()
        if self.readonly:
            self.conn = self.conn.execution_options(v2v_readonly=True)
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
