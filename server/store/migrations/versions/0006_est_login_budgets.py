"""EST failed-login token buckets per client address and per account, shared by every node

Revision ID: 0006_est_login_budgets
Revises: 0005_est_policy
Create Date: 2026-12-03 14:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_est_login_budgets"
down_revision = "0005_est_policy"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "est_login_budgets",
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("tokens", sa.Double(), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("rate", sa.Double(), nullable=False),
        sa.Column("burst", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("est_login_budgets")
