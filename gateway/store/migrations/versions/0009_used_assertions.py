"""Used client assertions, so a captured private_key_jwt assertion is refused by every
worker process and after a restart, not only by the process that saw it first.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from gateway.store.tables import UTCDateTime

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "used_assertions",
        sa.Column("client_id", sa.String(128), primary_key=True),
        sa.Column("jti", sa.String(255), primary_key=True),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_used_assertions_expires_at", "used_assertions", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_used_assertions_expires_at", table_name="used_assertions")
    op.drop_table("used_assertions")
