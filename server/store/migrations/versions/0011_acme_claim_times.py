"""acme claim times: when an authorization or order was claimed, to recover stuck claims

``acme_authzs.validating_since`` and ``acme_orders.processing_since`` are set by the
claim and cleared when the claim ends; ``acme_orders.csr_key_sha256`` names the key the
finalize's CSR carried, so a certificate issued just before a crash is found again.
Claims open at upgrade time get the upgrade time: the sweep ends them once they are
older than its bound (a node still running the old version may hold one).

Revision ID: 0011_acme_claim_times
Revises: 0010_audit_chain
Create Date: 2026-12-08 10:00:00
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0011_acme_claim_times"
down_revision = "0010_audit_chain"
branch_labels = None
depends_on = None

_AUTHZ = sa.table(
    "acme_authzs",
    sa.column("validating", sa.Boolean()),
    sa.column("validating_since", sa.DateTime(timezone=True)),
)
_ORD = sa.table(
    "acme_orders",
    sa.column("status", sa.String()),
    sa.column("processing_since", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    with op.batch_alter_table("acme_authzs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("validating_since", sa.DateTime(timezone=True)))
        batch_op.create_index("ix_acme_authzs_validating", ["validating_since"])
    with op.batch_alter_table("acme_orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("processing_since", sa.DateTime(timezone=True)))
        batch_op.add_column(sa.Column("csr_key_sha256", sa.String(64)))
        batch_op.create_index("ix_acme_orders_processing", ["processing_since"])
    # A bound parameter, not CURRENT_TIMESTAMP: stored in the format the models write.
    now = datetime.now(UTC)
    op.execute(sa.update(_AUTHZ).where(_AUTHZ.c.validating.is_(True)).values(validating_since=now))
    op.execute(sa.update(_ORD).where(_ORD.c.status == "processing").values(processing_since=now))


def downgrade() -> None:
    with op.batch_alter_table("acme_orders", schema=None) as batch_op:
        batch_op.drop_index("ix_acme_orders_processing")
        batch_op.drop_column("csr_key_sha256")
        batch_op.drop_column("processing_since")
    with op.batch_alter_table("acme_authzs", schema=None) as batch_op:
        batch_op.drop_index("ix_acme_authzs_validating")
        batch_op.drop_column("validating_since")
