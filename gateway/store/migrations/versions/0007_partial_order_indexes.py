"""Partial indexes for the order searches whose matches are not among the newest orders.

``Task?status=on-hold`` (and the tower's on-hold filter) walked every order newest-first on
both databases when fewer orders than a page were held: a full scan, 0.4 s at 1M orders on
PostgreSQL. ``Task?status=completed`` on PostgreSQL walked ``ix_orders_updated_at`` past
every newer active order (thousands once a day's work is newer than the last infusion),
as that index follows the table's physical order and so looked cheaper than the state one.
Each new index holds only its orders.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_orders_held_updated", "orders", ["on_hold", "updated_at", "id"],
        sqlite_where=sa.text("on_hold IS 1"), postgresql_where=sa.text("on_hold IS TRUE"),
    )
    op.create_index(
        "ix_orders_infused_updated", "orders", ["updated_at", "id"],
        sqlite_where=sa.text("state = 'INFUSED'"), postgresql_where=sa.text("state = 'INFUSED'"),
    )


def downgrade() -> None:
    op.drop_index("ix_orders_infused_updated", table_name="orders")
    op.drop_index("ix_orders_held_updated", table_name="orders")
