"""Control tower: acknowledgements and resolutions of derived alerts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from gateway.store.tables import UTCDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alert_states",
        sa.Column("alert_key", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("order_id", sa.String(40)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("acknowledged_by", sa.String(200)),
        sa.Column("acknowledged_at", UTCDateTime()),
        sa.Column("resolved_by", sa.String(200)),
        sa.Column("resolved_at", UTCDateTime()),
        sa.Column("note", sa.Text()),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("alert_key", name="pk_alert_states"),
    )
    op.create_index("ix_alert_states_order_id", "alert_states", ["order_id"])


def downgrade() -> None:
    op.drop_index("ix_alert_states_order_id", table_name="alert_states")
    op.drop_table("alert_states")
