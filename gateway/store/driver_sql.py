"""A few hot statements run on the database driver's own cursor.

SQLAlchemy spends 50-70 µs setting up each execution, Core or ``exec_driver_sql`` alike,
about three times what SQLite needs to run a one-row upsert; on the MLLP ingest path that
overhead was most of a message's cost. The statements run once per inbound message are
therefore written out here and executed on the DBAPI connection, inside the transaction
the SQLAlchemy connection has open. Values still pass through the columns' own bind
processors, so what is stored is byte for byte what Core would store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Column, Connection, Table
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

T = TypeVar("T")

#: A process has one engine, tests a few at a time.
_DIALECTS_KEPT = 8


@dataclass(frozen=True)
class Statement:
    """SQL with ``?`` placeholders, rewritten for the dialect's paramstyle when bound."""

    sql: str
    table: Table
    columns: tuple[str, ...]  # the bound parameters, in placeholder order
    # Lock the rows read: FOR UPDATE, except on SQLite, which has no row locks (its writers
    # are serialised by BEGIN IMMEDIATE) and no FOR UPDATE clause.
    for_update: bool = False
    # Per dialect: hashing the statement for a shared cache cost more than the lookup.
    _bound: dict[Dialect, BoundStatement] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )

    def bound(self, dialect: Dialect) -> BoundStatement:
        found = self._bound.get(dialect)
        if found is None:
            if len(self._bound) >= _DIALECTS_KEPT:
                self._bound.clear()  # engines come and go in tests: keep the cache small
            found = self._bound[dialect] = _bind(self, dialect)
        return found


@dataclass(frozen=True)
class BoundStatement:
    sql: str
    count: int  # the parameters the SQL takes
    # (position, processor) of the columns that have one: most have none, and visiting
    # only these is what binding costs per row.
    converted: tuple[tuple[int, Callable[[Any], Any]], ...]

    def parameters(self, values: Sequence[Any]) -> tuple[Any, ...]:
        if len(values) != self.count:
            raise ValueError(f"{len(values)} values for {self.count} parameters")
        if not self.converted:
            return tuple(values)
        out = list(values)
        for index, process in self.converted:
            value = out[index]
            if value is not None:
                out[index] = process(value)
        return tuple(out)


def insert(table: Table, columns: Sequence[str], *, returning: str | None = None) -> Statement:
    """``INSERT INTO table (columns) VALUES (?, …) [RETURNING returning]``."""
    sql = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    )
    return Statement(sql + (f" RETURNING {returning}" if returning else ""), table, tuple(columns))


def _bind(statement: Statement, dialect: Dialect) -> BoundStatement:
    sql = statement.sql
    if statement.for_update and dialect.name != "sqlite":
        sql += " FOR UPDATE"
    if dialect.paramstyle != "qmark":
        sql = sql.replace("%", "%%").replace("?", "%s")
    processors = (_processor(statement.table.c[name], dialect) for name in statement.columns)
    converted = tuple((index, p) for index, p in enumerate(processors) if p is not None)
    return BoundStatement(sql, len(statement.columns), converted)


def _processor(column: Column[Any], dialect: Dialect) -> Callable[[Any], Any] | None:
    # The dialect's own implementation: a generic DateTime has no processor, SQLite's
    # DATETIME writes the text format the rest of the store compares and sorts.
    return column.type.dialect_impl(dialect).bind_processor(dialect)


def _run(
    conn: Connection, statement: Statement, values: Sequence[Any], read: Callable[[Any], T]
) -> T:
    """Run ``statement`` once and return what ``read`` takes from the cursor."""
    bound = statement.bound(conn.dialect)
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    parameters = bound.parameters(values)
    _announce(conn, cursor, bound.sql, parameters, many=False)
    try:
        cursor.execute(bound.sql, parameters)
        return read(cursor)
    except conn.dialect.loaded_dbapi.Error as exc:
        raise _translated(conn, cursor, bound.sql, parameters, exc) from exc
    finally:
        cursor.close()


def rows(conn: Connection, statement: Statement, values: Sequence[Any]) -> list[Any]:
    """Every row the statement returns."""
    return _run(conn, statement, values, lambda cursor: cursor.fetchall())


def scalar(conn: Connection, statement: Statement, values: Sequence[Any]) -> Any:
    """The first column of the first row, or None when there is no row."""
    row = _run(conn, statement, values, lambda cursor: cursor.fetchone())
    return None if row is None else row[0]


def run(conn: Connection, statement: Statement, values: Sequence[Any]) -> int:
    """Run a statement that returns no rows; the number of rows it changed."""
    return _run(conn, statement, values, lambda cursor: int(cursor.rowcount))


def run_fixed(conn: Connection, sql: str) -> None:
    """Run SQL that takes no parameters and returns no rows (BEGIN, a PRAGMA)."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    _announce(conn, cursor, sql, (), many=False)
    try:
        cursor.execute(sql)
    except conn.dialect.loaded_dbapi.Error as exc:
        raise _translated(conn, cursor, sql, (), exc) from exc
    finally:
        cursor.close()


def execute_many(conn: Connection, statement: Statement, rows: Sequence[Sequence[Any]]) -> None:
    bound = statement.bound(conn.dialect)
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    parameters = [bound.parameters(row) for row in rows]
    _announce(conn, cursor, bound.sql, parameters, many=True)
    try:
        cursor.executemany(bound.sql, parameters)
    except conn.dialect.loaded_dbapi.Error as exc:
        raise _translated(conn, cursor, bound.sql, parameters, exc) from exc
    finally:
        cursor.close()


def _announce(conn: Connection, cursor: Any, sql: str, parameters: Any, *, many: bool) -> None:
    """Tell ``before_cursor_execute`` listeners, as SQLAlchemy would: statement logs and the
    query-plan tests see these statements too."""
    listeners = conn.dispatch.before_cursor_execute
    if listeners:
        for listen in listeners:
            listen(conn, cursor, sql, parameters, None, many)


def _translated(conn: Connection, cursor: Any, sql: str, parameters: Any, exc: Any) -> Exception:
    """The error SQLAlchemy would have raised (IntegrityError, OperationalError, ...), so
    callers handle a deadlock or a taken key the same whichever path ran the statement; a
    lost server connection is invalidated, as SQLAlchemy does, so the pool drops it."""
    dbapi_connection = conn.connection.dbapi_connection
    lost = conn.dialect.is_disconnect(exc, dbapi_connection, cursor)
    if lost:
        conn.invalidate(exc)
    translated: Exception = DBAPIError.instance(
        sql,
        parameters,
        exc,
        conn.dialect.loaded_dbapi.Error,
        connection_invalidated=lost,
        dialect=conn.dialect,
    )
    return translated
