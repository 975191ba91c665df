"""merge the ACME limits, EST login budgets and CA offline branches into one head

Revision ID: 0007_merge
Revises: 0006_acme_limits, 0006_est_login_budgets, 0006_ca_offline
Create Date: 2026-12-03 16:20:00
"""

from __future__ import annotations

revision = "0007_merge"
down_revision = ("0006_acme_limits", "0006_est_login_budgets", "0006_ca_offline")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
