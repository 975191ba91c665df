"""acme limits: single-use EAB keys (binding count), one replacement order per certificate

Revision ID: 0006_acme_limits
Revises: 0005_acme_directories
Create Date: 2026-12-03 14:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_acme_limits"
down_revision = "0005_acme_directories"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("acme_eab_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("bindings", sa.Integer(), server_default="0", nullable=False))
    # Keys already used count as used: a single-use key admits no further account.
    op.execute(
        "UPDATE acme_eab_keys SET bindings ="
        " (SELECT count(*) FROM acme_accounts WHERE acme_accounts.eab_kid = acme_eab_keys.kid)"
    )
    op.create_table(
        "acme_replacements",
        sa.Column("cert_id", sa.String(length=200), nullable=False),
        sa.Column("order_id", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("cert_id"),
    )
    # One holder per certificate already replaced; the engine still checks every
    # order naming it, so which one is recorded does not matter.
    op.execute(
        "INSERT INTO acme_replacements (cert_id, order_id)"
        " SELECT replaces, max(id) FROM acme_orders WHERE replaces IS NOT NULL GROUP BY replaces"
    )


def downgrade() -> None:
    op.drop_table("acme_replacements")
    with op.batch_alter_table("acme_eab_keys", schema=None) as batch_op:
        batch_op.drop_column("bindings")
