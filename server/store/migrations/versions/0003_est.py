"""EST labels, enrollment accounts and pending approvals

Revision ID: 0003_est
Revises: 0001
Create Date: 2026-11-27 19:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_est"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "est_labels",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("ca", sa.String(length=64), nullable=True),
        sa.Column("profile", sa.String(length=32), nullable=False),
        sa.Column("auth_modes", sa.JSON(), nullable=False),
        sa.Column("trust_anchors_pem", sa.Text(), nullable=False),
        sa.Column("approval_required", sa.Boolean(), nullable=False),
        sa.Column("allow_subject_change", sa.Boolean(), nullable=False),
        sa.Column("csrattrs", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "est_users",
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=128), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("label", "username"),
    )
    op.create_table(
        "est_pending",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("operation", sa.String(length=16), nullable=False),
        sa.Column("requester", sa.String(length=255), nullable=False),
        sa.Column("key_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("csr_der", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=255), nullable=True),
        sa.Column("ca_id", sa.String(length=32), nullable=True),
        sa.Column("serial", sa.String(length=42), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("est_pending", schema=None) as batch_op:
        batch_op.create_index(
            "ix_est_pending_lookup", ["label", "requester", "key_fingerprint"], unique=False
        )
        batch_op.create_index("ix_est_pending_status", ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("est_pending", schema=None) as batch_op:
        batch_op.drop_index("ix_est_pending_status")
        batch_op.drop_index("ix_est_pending_lookup")
    op.drop_table("est_pending")
    op.drop_table("est_users")
    op.drop_table("est_labels")
