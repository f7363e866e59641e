"""Orders get an integer key, and business identifiers point at it.

A lookup by CoI, placer number or unit id read the identifier's tree, then the orders' text
``id`` index for the row, then the row: three trees, and at 1M orders the id index alone is
a tree as large as the table's key, one more disk read per lookup when it is not cached.
``orders.seq`` becomes the primary key (on SQLite exactly ``INTEGER PRIMARY KEY``: the rowid
itself), ``id`` stays UNIQUE for reads by id, and ``order_identifiers.order_seq`` replaces
``order_identifiers.order_id``, so the identifier's tree leads straight into the table's.

SQLite rebuilds both tables, copying every row; PostgreSQL adds the column (rewriting
``orders``), swaps the constraints, and copies the identifiers into a new table.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from gateway.store.tables import UTCDateTime

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: As orders.seq: BIGINT, except on SQLite, where exactly INTEGER makes the key the rowid.
SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

ORDER_COLUMNS = (
    "id, coi, pseudonym, patient_id, therapy_code, manufacturer, site_id, state, on_hold,"
    " version, created_at, updated_at, document"
)


def _orders_table(name: str, by_seq: bool) -> None:
    seq = [sa.Column("seq", SEQ, autoincrement=True, nullable=False)] if by_seq else []
    key = (
        [sa.PrimaryKeyConstraint("seq", name="pk_orders"),
         sa.UniqueConstraint("id", name="uq_orders_id")]
        if by_seq
        else [sa.PrimaryKeyConstraint("id", name="pk_orders")]
    )  # fmt: skip
    op.create_table(
        name,
        *seq,
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("coi", sa.String(32)),
        sa.Column("pseudonym", sa.String(32), nullable=False),
        sa.Column("patient_id", sa.String(40), nullable=False),
        sa.Column("therapy_code", sa.String(64), nullable=False),
        sa.Column("manufacturer", sa.String(64), nullable=False),
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("on_hold", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"],
                                name="fk_orders_patient_id_patients"),
        *key,
        sa.UniqueConstraint("coi", name="uq_orders_coi"),
        sa.UniqueConstraint("pseudonym", name="uq_orders_pseudonym"),
    )  # fmt: skip


def _identifiers_table(name: str, orders_table: str, by_seq: bool) -> None:
    pointer = (
        sa.Column("order_seq", SEQ, nullable=False)
        if by_seq
        else sa.Column("order_id", sa.String(40), nullable=False)
    )
    op.create_table(
        name,
        pointer,
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("namespace", sa.String(64), nullable=False),
        sa.Column("value", sa.String(128), nullable=False),
        sa.ForeignKeyConstraint([pointer.name], [f"{orders_table}.{'seq' if by_seq else 'id'}"],
                                name=f"fk_order_identifiers_{pointer.name}_orders"),
        sa.PrimaryKeyConstraint("kind", "namespace", "value", name="pk_order_identifiers"),
        sqlite_with_rowid=False,
    )  # fmt: skip


def _indexes(by_seq: bool) -> None:
    pointer = "order_seq" if by_seq else "order_id"
    op.create_index(f"ix_order_identifiers_{pointer}", "order_identifiers", [pointer])
    op.create_index(
        "ix_order_identifiers_value", "order_identifiers", ["value", "kind", "namespace", pointer]
    )


def _order_indexes() -> None:
    op.create_index("ix_orders_state_updated", "orders", ["state", "updated_at", "id"])
    op.create_index("ix_orders_site_updated", "orders", ["site_id", "updated_at"])
    op.create_index("ix_orders_updated_at", "orders", ["updated_at", "id"])
    op.create_index("ix_orders_patient_id", "orders", ["patient_id"])
    op.create_index(
        "ix_orders_held_updated", "orders", ["on_hold", "updated_at", "id"],
        sqlite_where=sa.text("on_hold IS 1"),
    )  # fmt: skip
    op.create_index(
        "ix_orders_infused_updated", "orders", ["updated_at", "id"],
        sqlite_where=sa.text("state = 'INFUSED'"),
    )  # fmt: skip


def _copy_identifiers(by_seq: bool, *, referenced: str, source: str) -> None:
    """Rebuild ``order_identifiers`` pointing at the orders' ``seq`` (or back at their
    ``id``), its key referencing ``referenced``; ``source`` is whichever orders table holds
    both keys at this point. A copy rather than an UPDATE in place: no dead row versions
    left behind in the table and its key, and the rows go in key order, appending to it."""
    if op.get_bind().dialect.name != "sqlite":
        # Index names are per schema on PostgreSQL: the new table's key takes the old name.
        op.execute(
            "ALTER TABLE order_identifiers"
            " RENAME CONSTRAINT pk_order_identifiers TO pk_order_identifiers_old"
        )
    _identifiers_table("order_identifiers_new", referenced, by_seq)
    pointer, key, old_pointer, old_key = (
        ("order_seq", "seq", "order_id", "id") if by_seq else ("order_id", "id", "order_seq", "seq")
    )
    op.execute(
        f"INSERT INTO order_identifiers_new ({pointer}, kind, namespace, value)"
        f" SELECT o.{key}, i.kind, i.namespace, i.value FROM order_identifiers i"
        f" JOIN {source} o ON o.{old_key} = i.{old_pointer}"
        " ORDER BY i.kind, i.namespace, i.value"
    )
    op.drop_table("order_identifiers")
    op.rename_table("order_identifiers_new", "order_identifiers")
    _indexes(by_seq)


def _rebuild_sqlite(by_seq: bool) -> None:
    # SQLite's documented way to change a table's structure: new tables, copy, drop the old,
    # rename the new (which also renames the identifiers' reference to the new orders).
    # Orders in their rowid order, so seq follows the order they were stored in.
    _orders_table("orders_new", by_seq)
    op.execute(
        f"INSERT INTO orders_new ({ORDER_COLUMNS}) SELECT {ORDER_COLUMNS} FROM orders"
        f" ORDER BY {'rowid' if by_seq else 'seq'}"
    )
    _copy_identifiers(by_seq, referenced="orders_new", source="orders_new" if by_seq else "orders")
    op.drop_table("orders")
    op.rename_table("orders_new", "orders")
    _order_indexes()


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite(by_seq=True)
        return
    # A column with a sequence default: PostgreSQL rewrites the table, numbering every row.
    op.execute("ALTER TABLE orders ADD COLUMN seq BIGSERIAL NOT NULL")
    op.drop_constraint("fk_order_identifiers_order_id_orders", "order_identifiers",
                       type_="foreignkey")  # fmt: skip
    op.drop_constraint("pk_orders", "orders", type_="primary")
    op.create_unique_constraint("uq_orders_id", "orders", ["id"])
    op.create_primary_key("pk_orders", "orders", ["seq"])
    _copy_identifiers(True, referenced="orders", source="orders")
    op.execute("ANALYZE orders")
    op.execute("ANALYZE order_identifiers")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite(by_seq=False)
        return
    op.drop_constraint("fk_order_identifiers_order_seq_orders", "order_identifiers",
                       type_="foreignkey")  # fmt: skip
    op.drop_constraint("pk_orders", "orders", type_="primary")
    op.drop_constraint("uq_orders_id", "orders", type_="unique")
    op.create_primary_key("pk_orders", "orders", ["id"])
    _copy_identifiers(False, referenced="orders", source="orders")
    op.drop_column("orders", "seq")
    op.execute("ANALYZE order_identifiers")
