"""ca offline flag: serving processes never load an offline CA's key

Revision ID: 0006_ca_offline
Revises: 0004
Create Date: 2026-12-03 14:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_ca_offline"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing CAs stay online (their status is signed by every serving process).
    with op.batch_alter_table("cas", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("offline", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("cas", schema=None) as batch_op:
        batch_op.drop_column("offline")
