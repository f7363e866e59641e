"""Business identifiers keyed by what they are, and on SQLite stored in that key's B-tree.

``order_identifiers`` loses its surrogate ``id``: (kind, namespace, value), the key that was
already UNIQUE, becomes the primary key. On SQLite the table becomes ``WITHOUT ROWID``: as a
rowid table, a lookup by placer number read the unique index, then the identifier's row for
its order id (a second tree), and every save read each of the order's identifier rows again
the same way. Now the key's tree holds the order id and every index on the table is covering.
SQLite rebuilds the table, copying every row; PostgreSQL swaps the constraint only.

``orders`` keeps its rowid: see ``gateway.store.tables``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

IDENTIFIER_INDEXES = [
    ("ix_order_identifiers_order_id", ["order_id"]),
    ("ix_order_identifiers_value", ["value", "kind", "namespace", "order_id"]),
]


def _identifiers_table(name: str, rowid: bool) -> None:
    if rowid:
        key = [
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.PrimaryKeyConstraint("id", name="pk_order_identifiers"),
            sa.UniqueConstraint("kind", "namespace", "value",
                                name="uq_order_identifiers_kind_namespace_value"),
        ]
    else:
        key = [sa.PrimaryKeyConstraint("kind", "namespace", "value", name="pk_order_identifiers")]
    op.create_table(
        name,
        sa.Column("order_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("namespace", sa.String(64), nullable=False),
        sa.Column("value", sa.String(128), nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"],
                                name="fk_order_identifiers_order_id_orders"),
        *key,
        sqlite_with_rowid=rowid,
    )


def _rebuild_sqlite(rowid: bool) -> None:
    # SQLite's documented way to change a table's structure: new table, copy, drop the old,
    # rename the new. In key order, so the copy appends to the new B-tree.
    columns = "order_id, kind, namespace, value"
    _identifiers_table("order_identifiers_new", rowid)
    op.execute(
        f"INSERT INTO order_identifiers_new ({columns}) SELECT {columns}"
        " FROM order_identifiers ORDER BY kind, namespace, value"
    )
    op.drop_table("order_identifiers")
    op.rename_table("order_identifiers_new", "order_identifiers")
    for name, index_columns in IDENTIFIER_INDEXES:
        op.create_index(name, "order_identifiers", index_columns)


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite(rowid=False)
        return
    op.drop_constraint("pk_order_identifiers", "order_identifiers", type_="primary")
    op.drop_column("order_identifiers", "id")
    op.create_primary_key("pk_order_identifiers", "order_identifiers",
                          ["kind", "namespace", "value"])
    op.drop_constraint("uq_order_identifiers_kind_namespace_value", "order_identifiers",
                       type_="unique")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite(rowid=True)
        return
    op.create_unique_constraint("uq_order_identifiers_kind_namespace_value", "order_identifiers",
                                ["kind", "namespace", "value"])
    op.drop_constraint("pk_order_identifiers", "order_identifiers", type_="primary")
    op.execute("ALTER TABLE order_identifiers ADD COLUMN id SERIAL")
    op.create_primary_key("pk_order_identifiers", "order_identifiers", ["id"])
