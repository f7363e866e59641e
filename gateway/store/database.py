"""Engines: SQLite (WAL, one file, zero set-up) by default, PostgreSQL by one URL."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event

from gateway.store import driver_sql
from gateway.store.wal_flush import WalFlusher

DEFAULT_SQLITE_FILE = "vein2vein.db"

#: SQLite's default: a commit that leaves this many pages in the log checkpoints it.
SQLITE_AUTOCHECKPOINT = 1000
#: The backstop for writers whose flusher process checkpoints (about 40 MB of log).
FLUSH_LATER_AUTOCHECKPOINT = 10_000


def database_url() -> str:
    """``V2V_DATABASE_URL``, or a SQLite file in the working directory."""
    url = os.environ.get("V2V_DATABASE_URL")
    if url:
        return normalise_url(url)
    return f"sqlite:///{Path.cwd() / DEFAULT_SQLITE_FILE}"


def normalise_url(url: str) -> str:
    """Accept the plain ``postgresql://`` form operators paste, and use psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str | None = None, **kwargs: Any) -> Engine:
    url = normalise_url(url) if url else database_url()
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )
        _configure_sqlite(engine, sqlite_synchronous())
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def sqlite_synchronous() -> str:
    """``V2V_SQLITE_SYNCHRONOUS``: FULL (default) or NORMAL.

    An acknowledgement promises the message is stored. With FULL every commit reaches the
    disk before it returns, so a power cut cannot take back what was acknowledged; NORMAL
    (in WAL mode) survives a crash of the gateway but may lose the last commits to a power
    cut or kernel crash, for about twice the ingest rate. Choose NORMAL only for test
    rigs or where the disk cache is battery-backed."""
    value = os.environ.get("V2V_SQLITE_SYNCHRONOUS", "FULL").strip().upper()
    if value not in ("FULL", "NORMAL"):
        raise ValueError(f"V2V_SQLITE_SYNCHRONOUS must be FULL or NORMAL, not {value!r}")
    return value


def _configure_sqlite(engine: Engine, synchronous: str) -> None:
    # pysqlite's own transaction handling defers BEGIN and never takes the write lock up
    # front, so two writers can deadlock on upgrade. Take over: BEGIN IMMEDIATE serialises
    # writers cleanly, which is also what keeps the audit chain linear.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        options = connection.get_execution_options()
        # A writer whose caller syncs the log itself (wal_flush) commits without the sync,
        # and its flusher process checkpoints too (see wal_sync): its own automatic
        # checkpoint stays only as a backstop should that fall far behind. The settings
        # belong to the DBAPI connection, so they are put back for the next user.
        flush_later = bool(options.get("v2v_flush_later", False))
        if connection.info.get("v2v_flush_later", False) != flush_later:
            wanted = "NORMAL" if flush_later else synchronous
            pages = FLUSH_LATER_AUTOCHECKPOINT if flush_later else SQLITE_AUTOCHECKPOINT
            driver_sql.run_fixed(connection, f"PRAGMA synchronous={wanted}")
            driver_sql.run_fixed(connection, f"PRAGMA wal_autocheckpoint={pages}")
            connection.info["v2v_flush_later"] = flush_later
        # Readers take no write lock, so reads never queue behind writers (WAL). On the
        # driver's cursor: SQLAlchemy's execution set-up cost more than the BEGIN itself.
        readonly = options.get("v2v_readonly", False)
        driver_sql.run_fixed(connection, "BEGIN" if readonly else "BEGIN IMMEDIATE")


def wal_flusher(engine: Engine) -> WalFlusher | None:
    """A flusher for writers that sync the log after committing (see ``wal_flush``), or
    None where commits are already as durable as they will be: PostgreSQL (its own
    ``synchronous_commit``), an in-memory SQLite database, or SQLite set to NORMAL."""
    database = engine.url.database
    if not is_sqlite(engine) or database in (None, "", ":memory:"):
        return None
    if sqlite_synchronous() != "FULL":
        return None
    return WalFlusher(Path(database).resolve())
