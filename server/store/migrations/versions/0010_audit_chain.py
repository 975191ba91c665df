"""audit chain: seq, source, prev_hash and hash per record plus a one-row chain head

Existing records are chained in id order, so an upgraded database verifies.

Revision ID: 0010_audit_chain
Revises: 0009_ca_version
Create Date: 2026-12-03 16:40:00
"""

from __future__ import annotations

from datetime import UTC

import sqlalchemy as sa
from alembic import op

from server.ca import audit as chain
from server.ca.types import AuditEvent

revision = "0010_audit_chain"
down_revision = "0009_ca_version"
branch_labels = None
depends_on = None

_LOG = sa.table(
    "audit_log",
    sa.column("id", sa.BigInteger()),
    sa.column("at", sa.DateTime(timezone=True)),
    sa.column("actor", sa.String()),
    sa.column("action", sa.String()),
    sa.column("target", sa.String()),
    sa.column("detail", sa.JSON()),
    sa.column("seq", sa.BigInteger()),
    sa.column("source", sa.String()),
    sa.column("prev_hash", sa.String()),
    sa.column("hash", sa.String()),
)
_HEAD = sa.table(
    "audit_chain_head",
    sa.column("id", sa.Integer()),
    sa.column("seq", sa.BigInteger()),
    sa.column("hash", sa.String()),
)


def upgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seq", sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column("source", sa.String(length=255), server_default="", nullable=False)
        )
        batch_op.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("hash", sa.String(length=64), nullable=True))
    op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    bind = op.get_bind()
    head = chain.ChainHead()
    rows = bind.execute(sa.select(_LOG).order_by(_LOG.c.id)).all()
    for row in rows:
        at = row.at if row.at.tzinfo is not None else row.at.replace(tzinfo=UTC)
        event = AuditEvent(
            at=at,
            actor=row.actor,
            action=row.action,
            target=row.target,
            detail=dict(row.detail or {}),
        )
        (linked,) = chain.chain([event], head)
        bind.execute(
            sa.update(_LOG)
            .where(_LOG.c.id == row.id)
            .values(
                at=linked.at,
                detail=linked.detail,
                seq=linked.seq,
                prev_hash=linked.prev_hash,
                hash=linked.hash,
            )
        )
        head = chain.ChainHead(linked.seq or 0, linked.hash)
    bind.execute(sa.insert(_HEAD).values(id=1, seq=head.seq, hash=head.hash))
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.alter_column("seq", existing_type=sa.BigInteger(), nullable=False)
        batch_op.alter_column("prev_hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column("hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint("uq_audit_log_seq", ["seq"])


def downgrade() -> None:
    op.drop_table("audit_chain_head")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_constraint("uq_audit_log_seq", type_="unique")
        batch_op.drop_column("hash")
        batch_op.drop_column("prev_hash")
        batch_op.drop_column("source")
        batch_op.drop_column("seq")
