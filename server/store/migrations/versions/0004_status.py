"""revocation services: pre-signed OCSP responses, delegated signers, dirty CRL marks

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-27 19:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ocsp_responses",
        sa.Column("ca_id", sa.String(length=32), nullable=False),
        sa.Column("serial", sa.String(length=42), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.Column("cert_status", sa.String(length=16), nullable=False),
        sa.Column("this_update", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_update", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("ca_id", "serial"),
    )
    with op.batch_alter_table("ocsp_responses", schema=None) as batch_op:
        batch_op.create_index("ix_ocsp_responses_updated_at", ["updated_at"], unique=False)
        batch_op.create_index("ix_ocsp_responses_this_update", ["this_update"], unique=False)
    op.create_table(
        "ocsp_signers",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("ca_id", sa.String(length=32), nullable=False),
        sa.Column("serial", sa.String(length=42), nullable=False),
        sa.Column("cert_der", sa.LargeBinary(), nullable=False),
        sa.Column("key_backend", sa.String(length=16), nullable=False),
        sa.Column("key_ref", sa.String(length=128), nullable=False),
        sa.Column("key_blob", sa.LargeBinary(), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ocsp_signers", schema=None) as batch_op:
        batch_op.create_index("ix_ocsp_signers_ca_created", ["ca_id", "created_at"], unique=False)
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.create_index(
            "ix_certificates_ca_revoked_at", ["ca_id", "revoked_at"], unique=False
        )
    op.create_table(
        "crl_dirty",
        sa.Column("ca_id", sa.String(length=32), nullable=False),
        sa.Column("marked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("ca_id"),
    )


def downgrade() -> None:
    op.drop_table("crl_dirty")
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.drop_index("ix_certificates_ca_revoked_at")
    with op.batch_alter_table("ocsp_signers", schema=None) as batch_op:
        batch_op.drop_index("ix_ocsp_signers_ca_created")
    op.drop_table("ocsp_signers")
    with op.batch_alter_table("ocsp_responses", schema=None) as batch_op:
        batch_op.drop_index("ix_ocsp_responses_this_update")
        batch_op.drop_index("ix_ocsp_responses_updated_at")
    op.drop_table("ocsp_responses")
