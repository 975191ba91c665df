"""SQLAlchemy models of the EST front end's state: labels, enrollment accounts, approvals.

Rows never leave ``server/store``: ``est_repository.py`` converts them to engine types.
The schema is owned by migrations 0003_est, 0005_est_policy and 0006_est_login_budgets.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Double, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from server.store.models import Base

__all__ = ["EstLabelRow", "EstLoginBudgetRow", "EstPendingRow", "EstUserRow"]


class EstLabelRow(Base):
    """An EST label made with ``privca est label add`` (config-file labels are not stored)."""

    __tablename__ = "est_labels"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    ca: Mapped[str | None] = mapped_column(String(64))
    profile: Mapped[str] = mapped_column(String(32))
    auth_modes: Mapped[list[str]] = mapped_column(JSON)
    trust_anchors_pem: Mapped[str] = mapped_column(Text)
    approval_required: Mapped[bool] = mapped_column(Boolean)
    allow_subject_change: Mapped[bool] = mapped_column(Boolean)
    # None: derive from the profile; otherwise a list of {"oid": ..., "values": [...]}.
    csrattrs: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Name policy (migration 0005_est_policy): empty lists grant nothing of their kind.
    dns_suffixes: Mapped[list[str]] = mapped_column(JSON)
    allow_wildcard: Mapped[bool] = mapped_column(Boolean)
    ip_ranges: Mapped[list[str]] = mapped_column(JSON)
    uri_patterns: Mapped[list[str]] = mapped_column(JSON)
    email_domains: Mapped[list[str]] = mapped_column(JSON)
    subject_patterns: Mapped[list[str]] = mapped_column(JSON)
    max_days: Mapped[int | None] = mapped_column(Integer)


class EstUserRow(Base):
    """An HTTP Basic enrollment account (salted password hash only)."""

    __tablename__ = "est_users"

    label: Mapped[str] = mapped_column(String(64), primary_key=True)
    username: Mapped[str] = mapped_column(String(128), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Narrowing of the label's grant (migration 0005_est_policy); NULL keeps the label's.
    dns_suffixes: Mapped[list[str] | None] = mapped_column(JSON)
    subject_patterns: Mapped[list[str] | None] = mapped_column(JSON)
    max_days: Mapped[int | None] = mapped_column(Integer)


class EstPendingRow(Base):
    """An enrollment held for manual approval (RFC 7030 §4.2.3)."""

    __tablename__ = "est_pending"
    __table_args__ = (
        Index("ix_est_pending_lookup", "label", "requester", "key_fingerprint"),
        Index("ix_est_pending_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    label: Mapped[str] = mapped_column(String(64))
    operation: Mapped[str] = mapped_column(String(16))
    requester: Mapped[str] = mapped_column(String(255))
    key_fingerprint: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(Text)
    csr_der: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decided_by: Mapped[str | None] = mapped_column(String(255))
    ca_id: Mapped[str | None] = mapped_column(String(32))
    serial: Mapped[str | None] = mapped_column(String(42))


class EstLoginBudgetRow(Base):
    """A failed-login token bucket of one client address or one account (``ports.LoginBudget``).

    ``key`` is a digest (``a:``/``u:`` plus SHA-256 hex), so a hostile username or
    forwarded address never sizes a row. Times are Unix seconds, so the refill is
    plain arithmetic on SQLite and PostgreSQL alike.
    """

    __tablename__ = "est_login_budgets"

    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    tokens: Mapped[float] = mapped_column(Double)
    at: Mapped[float] = mapped_column(Double)
    rate: Mapped[float] = mapped_column(Double)
    burst: Mapped[int] = mapped_column(Integer)
