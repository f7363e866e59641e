"""Identifier lookups answered from the index alone, and order documents kept in the row.

A lookup by CoI, placer or unit id reads one identifier index entry and then the order by
primary key: one index probe and one heap fetch per table, nothing else.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # namespace and order_id in the index: the identifier row itself is never read (an
    # index-only scan on PostgreSQL once VACUUM has marked the pages all-visible).
    op.drop_index("ix_order_identifiers_value", table_name="order_identifiers")
    op.create_index(
        "ix_order_identifiers_value",
        "order_identifiers",
        ["value", "kind", "namespace", "order_id"],
    )
    if op.get_bind().dialect.name == "postgresql":
        # A typical document (4-6 kB of JSON) compresses to under 2 kB and stays in its row.
        # One with many readings and scans would, by default, move to the TOAST table, and
        # reading it would cost a TOAST index probe and more pages besides the heap page.
        # MAIN still compresses but moves a value out of the row only if it cannot fit a page.
        op.execute("ALTER TABLE orders ALTER COLUMN document SET STORAGE MAIN")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE orders ALTER COLUMN document SET STORAGE EXTENDED")
    op.drop_index("ix_order_identifiers_value", table_name="order_identifiers")
    op.create_index("ix_order_identifiers_value", "order_identifiers", ["value", "kind"])
