"""Indexes for a million orders: identifier lookups without a namespace, orders of a patient,
and state-filtered pages ordered exactly as the keyset cursor walks them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # UNIQUE(kind, namespace, value) cannot serve kind+value (a scanned unit, a CoI) or a bare
    # value (FHIR identifier=value): both would read every identifier of that kind.
    op.create_index("ix_order_identifiers_value", "order_identifiers", ["value", "kind"])
    op.create_index("ix_orders_patient_id", "orders", ["patient_id"])
    # With id in the index, ``state = ? ORDER BY updated_at DESC, id DESC LIMIT n`` reads n
    # index entries and sorts nothing.
    op.drop_index("ix_orders_state_updated", table_name="orders")
    op.create_index("ix_orders_state_updated", "orders", ["state", "updated_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_orders_state_updated", table_name="orders")
    op.create_index("ix_orders_state_updated", "orders", ["state", "updated_at"])
    op.drop_index("ix_orders_patient_id", table_name="orders")
    op.drop_index("ix_order_identifiers_value", table_name="order_identifiers")
