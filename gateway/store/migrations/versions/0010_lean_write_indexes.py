"""Fewer index pages written by every inbound message.

Each stored message adds an inbox row and at least one audit entry. Three of the indexes
those rows fed cost a commit more pages than they were worth (measured on an ADT^A08
batch of three: 16.7 log pages per commit, 11.0 after this revision, and a commit's cost
follows its pages):

- ``uq_audit_log_hash``: a unique index over random hashes, so every entry dirtied another
  leaf page of it. Nothing looks an entry up by its hash; the chain's integrity comes from
  each entry hashing its predecessor's hash, which :func:`audit.verify_chain` checks.
- ``ix_audit_log_order_id`` and ``ix_inbox_order_id`` held every row without an order too
  (patient registrations, refused messages), though they are only ever searched for an
  order. They become partial: ``WHERE order_id IS NOT NULL``, which ``order_id = ?`` implies
  on both databases, so the same searches use them.

SQLite cannot drop a table's unique constraint, so ``audit_log`` is rebuilt there (a copy
of every entry in chain order; its append-only triggers are made again for the new table).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from gateway.store.tables import UTCDateTime

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AUDIT_COLUMNS = "seq, at, actor, action, order_id, payload, prev_hash, hash"


def _order_indexes(partial: bool) -> None:
    where = sa.text("order_id IS NOT NULL") if partial else None
    for table in ("audit_log", "inbox"):
        op.create_index(
            f"ix_{table}_order_id", table, ["order_id"], sqlite_where=where, postgresql_where=where
        )


def _rebuild_sqlite_audit_log(unique_hash: bool) -> None:
    # SQLite's documented way to change a table's constraints: a new table, a copy, drop the
    # old one (its triggers go with it), rename the new one and give it the triggers again.
    unique = [sa.UniqueConstraint("hash", name="uq_audit_log_hash")] if unique_hash else []
    op.create_table(
        "audit_log_new",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(40)),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_log"),
        *unique,
    )
    op.execute(
        f"INSERT INTO audit_log_new ({_AUDIT_COLUMNS})"
        f" SELECT {_AUDIT_COLUMNS} FROM audit_log ORDER BY seq"
    )
    op.drop_table("audit_log")
    op.rename_table("audit_log_new", "audit_log")
    for verb in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
            "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
        )


def upgrade() -> None:
    op.drop_index("ix_inbox_order_id", table_name="inbox")
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite_audit_log(unique_hash=False)
    else:
        op.drop_index("ix_audit_log_order_id", table_name="audit_log")
        op.drop_constraint("uq_audit_log_hash", "audit_log", type_="unique")
    _order_indexes(partial=True)


def downgrade() -> None:
    op.drop_index("ix_inbox_order_id", table_name="inbox")
    op.drop_index("ix_audit_log_order_id", table_name="audit_log")
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite_audit_log(unique_hash=True)
    else:
        op.create_unique_constraint("uq_audit_log_hash", "audit_log", ["hash"])
    _order_indexes(partial=False)
