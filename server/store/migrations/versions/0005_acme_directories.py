"""acme directories: stored named directories, accounts bound to their directory

Revision ID: 0005_acme_directories
Revises: 0002
Create Date: 2026-12-03 13:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_acme_directories"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "acme_directories",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("ca", sa.String(length=64), nullable=False),
        sa.Column("profiles", sa.JSON(), nullable=True),
        sa.Column("dns_suffixes", sa.JSON(), nullable=False),
        sa.Column("ip_ranges", sa.JSON(), nullable=False),
        sa.Column("wildcard", sa.Boolean(), nullable=False),
        sa.Column("eab_required", sa.Boolean(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    # Existing accounts were all made at /acme/directory.
    with op.batch_alter_table("acme_accounts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("directory", sa.String(length=64), server_default="default", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("acme_accounts", schema=None) as batch_op:
        batch_op.drop_column("directory")
    op.drop_table("acme_directories")
