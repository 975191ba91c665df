"""ca version: every update of a CA row is a compare-and-set on the version it read

Revision ID: 0009_ca_version
Revises: 0008_admin
Create Date: 2026-12-05 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_ca_version"
down_revision = "0008_admin"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing rows start at 0; the next update of each writes 1.
    with op.batch_alter_table("cas", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("version", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("cas", schema=None) as batch_op:
        batch_op.drop_column("version")
