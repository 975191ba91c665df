"""EST label name policy (DNS, wildcards, IP, URI, e-mail, subject, max days); account narrowing

Existing labels get the secure default: device identities only (no subjectAltName),
until an operator grants more.

Revision ID: 0005_est_policy
Revises: 0003_est
Create Date: 2026-12-03 13:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_est_policy"
down_revision = "0003_est"
branch_labels = None
depends_on = None

_LISTS = ("dns_suffixes", "ip_ranges", "uri_patterns", "email_domains", "subject_patterns")


def upgrade() -> None:
    with op.batch_alter_table("est_labels", schema=None) as batch_op:
        for name in _LISTS:
            batch_op.add_column(
                sa.Column(name, sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
            )
        batch_op.add_column(
            sa.Column("allow_wildcard", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("max_days", sa.Integer(), nullable=True))
    with op.batch_alter_table("est_users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dns_suffixes", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("subject_patterns", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("max_days", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("est_users", schema=None) as batch_op:
        batch_op.drop_column("max_days")
        batch_op.drop_column("subject_patterns")
        batch_op.drop_column("dns_suffixes")
    with op.batch_alter_table("est_labels", schema=None) as batch_op:
        batch_op.drop_column("max_days")
        batch_op.drop_column("allow_wildcard")
        for name in reversed(_LISTS):
            batch_op.drop_column(name)
